"""The pairing host as the browser runs it: a real process on stdio, a real ``serve`` it starts.

Also the fixed ids (derived from the committed manifest key) and the manifests' table
(``python -m helper.service.nativehosts``), since the host refuses whoever those manifests do not list.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, Cli, free_port, start, wait_healthy

from helper.extension_ids import CHROMIUM_ID, CHROMIUM_IDS, GECKO_IDS, chromium_id
from helper.service import nativehosts

CHROME_CALLER = [f"chrome-extension://{CHROMIUM_ID}/"]
MOZ_CALLER = ["/usr/lib/mozilla/native-messaging-hosts/fr.sidep_helper.pairing.json", GECKO_IDS[0]]


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack("=I", len(body)) + body


def read_answer(stream) -> dict:  # noqa: ANN001
    prefix = stream.read(4)
    assert len(prefix) == 4, "no answer"
    (length,) = struct.unpack("=I", prefix)
    return json.loads(stream.read(length))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"port = {free_port()}\nwatch_downloads = false\nwatch_thunderbird = false\n",
                                      encoding="utf-8")
    yield home
    for proc in _serves(home):  # a helper the host started
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except psutil.TimeoutExpired:
            proc.kill()


def _serves(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if cmd[-3:] == ["-m", "helper", "serve"] and proc.environ().get("SIDEP_HELPER_HOME") == str(home):
                found.append(proc)
        except (psutil.Error, IndexError):
            continue
    return found


def host(home: Path, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "helper.service.pairing", *args], env=Cli(home).env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def port_of(home: Path) -> int:
    text = (home / "config.toml").read_text(encoding="utf-8")
    return int(text.split("port = ")[1].split()[0])


# --- ids ------------------------------------------------------------------------------------------------------

def test_fixed_ids_are_the_ones_of_the_committed_manifests() -> None:
    webmail = json.loads((ROOT / "extension/src/manifest.webmail.json").read_text(encoding="utf-8"))
    thunderbird = json.loads((ROOT / "extension/src/manifest.thunderbird.json").read_text(encoding="utf-8"))
    assert CHROMIUM_IDS == (chromium_id(webmail["key"]),)
    assert len(CHROMIUM_ID) == 32 and set(CHROMIUM_ID) <= set("abcdefghijklmnop")
    assert set(GECKO_IDS) == {webmail["browser_specific_settings"]["gecko"]["id"],
                              thunderbird["browser_specific_settings"]["gecko"]["id"]}
    for manifest in (webmail, thunderbird):
        assert "nativeMessaging" in manifest["permissions"]
    # the id of a known key (Chrome's documented algorithm: sha256 of the DER, a-p for 0-f)
    assert chromium_id("AAAA") == "".join(chr(ord("a") + int(c, 16)) for c in
                                          "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"[:32])


# --- the host ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["chrome-extension://abcdefghijklmnopabcdefghijklmnop/"],
    ["/tmp/manifest.json", "autre@exemple.fr"],
    [],
    [f"chrome-extension://{CHROMIUM_ID}evil/"],
])
def test_a_caller_not_in_the_manifest_is_refused(home: Path, args: list[str]) -> None:
    proc = host(home, args)
    out, err = proc.communicate(frame({"type": "pair"}), timeout=20)
    assert proc.returncode == 2
    assert json.loads(out[4:]) == {"error": "caller_refused"}
    assert "refusé" in err.decode()
    assert not (home / "token").exists(), "nothing done for a refused caller"
    assert _serves(home) == []


@pytest.mark.parametrize("prefix", [b"\x05\x00", struct.pack("=I", 2**31), struct.pack("=I", 0xFFFFFFFF),
                                    struct.pack("=I", 0)])
def test_a_malformed_or_absurd_length_is_refused_without_reading(home: Path, prefix: bytes) -> None:
    proc = host(home, CHROME_CALLER)
    assert proc.stdin is not None
    proc.stdin.write(prefix + b"{}")  # stdin stays open: a host reading 2 GB would wait here forever
    proc.stdin.flush()
    if len(prefix) < 4:
        proc.stdin.close()  # a truncated prefix is only known at end of input
    try:
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    assert code == 3
    assert proc.stdout is not None and proc.stdout.read() == b""
    assert proc.stderr is not None and "refusée" in proc.stderr.read().decode()


def test_the_host_starts_the_helper_and_never_logs_the_token(home: Path) -> None:
    port = port_of(home)
    proc = host(home, CHROME_CALLER)
    assert proc.stdin is not None and proc.stdout is not None
    started = time.monotonic()
    proc.stdin.write(frame({"type": "pair"}))
    proc.stdin.flush()
    answer = read_answer(proc.stdout)
    assert time.monotonic() - started < 1.5, "answers within a second (plus the interpreter's start-up)"
    token = (home / "token").read_text(encoding="ascii").strip()
    assert answer["token"] == token and len(token) >= 40
    assert answer["helper_url"] == f"http://127.0.0.1:{port}"
    assert answer["version"]
    assert (home / "token").stat().st_mode & 0o777 == 0o600
    # the helper it started answers with that token
    deadline = time.monotonic() + 30
    while not _healthy(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _healthy(port), "the helper was started"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    # a second request on the same port: the helper runs now, it is not started twice
    proc.stdin.write(frame({"type": "pair"}))
    proc.stdin.flush()
    assert read_answer(proc.stdout) == {**answer, "running": True}
    assert len(_serves(home)) == 1
    proc.stdin.close()  # the browser closes the port: the host ends
    assert proc.wait(timeout=5) == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "démarrage du service" in err
    assert token not in err
    logs = list((home / "logs").glob("*.log*"))
    assert logs and all(token not in p.read_text(encoding="utf-8", errors="replace") for p in logs)


def test_firefox_and_thunderbird_callers_pair_with_a_running_helper(home: Path) -> None:
    port = port_of(home)
    serve = start(home, port)
    try:
        wait_healthy(port, serve)
        token = Cli(home).run("token").stdout.strip()
        proc = host(home, MOZ_CALLER)
        out, err = proc.communicate(frame({"type": "pair"}), timeout=20)
        assert proc.returncode == 0
        answer = json.loads(out[4:])
        assert answer["token"] == token and answer["running"] is True
        assert [p.pid for p in _serves(home)] == [serve.pid], "no second helper started"
        assert token.encode() not in err
    finally:
        serve.terminate()
        serve.wait(timeout=20)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


# --- the manifests' table and its command line ---------------------------------------------------------------

def run_nativehosts(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([sys.executable, "-m", "helper.service.nativehosts", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_manifests_command_writes_both_families(tmp_path: Path) -> None:
    proc = run_nativehosts("manifests", "--output", str(tmp_path / "out"), "--host-path", "/opt/x/pairing",
                           home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    chromium = json.loads((tmp_path / "out/fr.sidep_helper.pairing.chromium.json").read_text(encoding="utf-8"))
    mozilla = json.loads((tmp_path / "out/fr.sidep_helper.pairing.mozilla.json").read_text(encoding="utf-8"))
    assert chromium == {"name": "fr.sidep_helper.pairing", "description": chromium["description"],
                        "path": "/opt/x/pairing", "type": "stdio",
                        "allowed_origins": [f"chrome-extension://{i}/" for i in CHROMIUM_IDS]}
    assert mozilla["allowed_extensions"] == list(GECKO_IDS) and mozilla["type"] == "stdio"
    assert "allowed_origins" not in mozilla and "*" not in json.dumps(chromium)


def test_install_and_uninstall_for_the_user(tmp_path: Path) -> None:
    proc = run_nativehosts("install", "--user", "--host-path", "/opt/x/pairing", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = [tmp_path / ".config/google-chrome/NativeMessagingHosts", tmp_path / ".config/chromium/NativeMessagingHosts",
                tmp_path / ".config/microsoft-edge/NativeMessagingHosts", tmp_path / ".mozilla/native-messaging-hosts"]
    for folder in expected:
        data = json.loads((folder / "fr.sidep_helper.pairing.json").read_text(encoding="utf-8"))
        assert data["path"] == "/opt/x/pairing"
        assert ("allowed_extensions" in data) == (folder.name == "native-messaging-hosts")
    proc = run_nativehosts("uninstall", "--user", home=tmp_path)
    assert proc.returncode == 0 and proc.stdout.count("retiré") == 4
    assert not any((f / "fr.sidep_helper.pairing.json").exists() for f in expected)


def test_install_from_a_venv_finds_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "sidep-helper-pairing"
    assert script.is_file(), "pip install -e . puts the console script beside the interpreter"
    proc = run_nativehosts("install", "--user", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / ".mozilla/native-messaging-hosts/fr.sidep_helper.pairing.json").read_text("utf-8"))
    assert data["path"] == str(script.absolute())


def test_system_folders_and_windows_keys_are_the_contracts() -> None:
    assert [str(p) for _b, p in nativehosts.linux_folders("system")] == [
        "/etc/opt/chrome/native-messaging-hosts", "/etc/chromium/native-messaging-hosts",
        "/etc/opt/edge/native-messaging-hosts", "/usr/lib/mozilla/native-messaging-hosts"]
    assert nativehosts.WINDOWS_KEYS == [
        (r"Software\Google\Chrome\NativeMessagingHosts\fr.sidep_helper.pairing", "chromium"),
        (r"Software\Chromium\NativeMessagingHosts\fr.sidep_helper.pairing", "chromium"),
        (r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts\fr.sidep_helper.pairing", "chromium"),
        (r"SOFTWARE\Mozilla\NativeMessagingHosts\fr.sidep_helper.pairing", "mozilla"),
    ]
