"""The Windows installers, built on Linux from this tree and run under Wine (tests/wine.py).

Once per session both installers are built (packaging/windows/build all) plus a second MSI with a
higher version (upgrade). Then two ordered scenarios, each in its own throwaway WINEPREFIX:

NSIS: ``setup.exe /S /PORT=… /WATCH=… /PRINTER=… /TRUSTED_FORWARDERS=… /RETENTION_DAYS=…`` → files, HKLM
keys, Start-menu entry, machine config; the logon command line read from the Run key is started
(pythonw.exe under Wine), health and search answered from Linux over loopback for a certificate dropped
into the configured folder, then printed for real (pywin32/pypdfium2 → Wine's GDI → the CUPS cups-pdf
queue); the Start-menu status script; uninstall keeps user data, a re-install
without parameters keeps the machine config, ``/REMOVEDATA`` deletes everything.

MSI: a bad property rolls the installation back with a French reason; ``msiexec /i … /qn`` with every
property; the higher-version MSI over it (one product remains, configuration and data kept);
``msiexec /x`` keeps user data, ``REMOVEDATA=1`` removes it.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mailgen
import pytest
from conftest import BUILD_LOCK, ROOT, free_port, recent_spec
from cups import ensure_cups_pdf
from syslock import file_lock

sys.path.insert(0, str(ROOT))
from helper.service.nativehosts import HOST_NAME, WINDOWS_KEYS  # noqa: E402

try:
    import wine
    from wine import Prefix, WineSetupError

    wine.ensure_wine()
except WineSetupError as exc:  # only when not root / no apt-get: ensure_wine installs the rest
    if os.geteuid() == 0 and os.path.exists("/usr/bin/apt-get"):
        raise
    pytest.skip(f"Wine et les outils de construction Windows sont absents : {exc}", allow_module_level=True)

INSTDIR = r"C:\Program Files\sidep-helper"
SHORTCUT = "ProgramData/Microsoft/Windows/Start Menu/Programs/Certificats SI-DEP — état du service.lnk"
RUN_KEY = r"software\microsoft\windows\currentversion\run"
UNINSTALL = "software\\microsoft\\windows\\currentversion\\uninstall\\"
WATCH = r"C:\Dépôt SI-DEP"  # a space and accents, through both installers' parameters
PORT = free_port()
PARAMS = {"PORT": str(PORT), "WATCH": WATCH, "PRINTER": "sidep-test-pdf",
          "TRUSTED_FORWARDERS": "Secretariat@Labo.fr, accueil@labo.fr", "RETENTION_DAYS": "30"}
EXPECTED_CONFIG = {"port": PORT, "watch": [WATCH], "printers": ["sidep-test-pdf"], "printer": "sidep-test-pdf",
                   "trusted_forwarders": ["secretariat@labo.fr", "accueil@labo.fr"], "retention_days": 30}


@dataclass
class Installers:
    setup_exe: Path
    msi: Path
    msi_next: Path
    version: str
    next_version: str


@pytest.fixture(scope="session")
def own_tmp() -> Path:
    """Not pytest's tmp_path: other pytest sessions on this machine rotate /tmp/pytest-of-<user>
    (three kept) and removed our installers and prefixes while these tests ran."""
    with tempfile.TemporaryDirectory(prefix="sidep-windows-tests-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def installers(own_tmp: Path) -> Installers:
    out = own_tmp / "dist"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    major, minor, patch = (int(x) for x in version.split("."))
    next_version = f"{major}.{minor}.{patch + 1}"
    build = [sys.executable, str(ROOT / "packaging/windows/build")]
    env = {k: v for k, v in os.environ.items() if k != "SIDEP_VERSION"}
    with file_lock(BUILD_LOCK):  # test_deb builds from this tree too
        subprocess.run([*build, "all", "--out", str(out)], check=True, env=env, timeout=900)
        subprocess.run([*build, "msi", "--out", str(out), "--reuse-stage"], check=True, timeout=600,
                       env={**env, "SIDEP_VERSION": next_version})
    return Installers(out / f"sidep-helper-{version}-setup.exe", out / f"sidep-helper-{version}-x64.msi",
                      out / f"sidep-helper-{next_version}-x64.msi", version, next_version)


@pytest.fixture(scope="module")
def nsis_prefix(own_tmp: Path) -> Prefix:
    prefix = Prefix(own_tmp / "wine-nsis")
    yield prefix
    prefix.kill()


@pytest.fixture(scope="module")
def msi_prefix(own_tmp: Path) -> Prefix:
    prefix = Prefix(own_tmp / "wine-msi")
    yield prefix
    prefix.kill()


def check_installed(prefix: Prefix, config: dict[str, object]) -> None:
    inst = prefix.unix(INSTDIR)
    site = inst / "python" / "Lib" / "site-packages"
    for rel in ("python/python.exe", "python/pythonw.exe", "python/python311.dll", "python/python311.zip",
                "sidep-helper.cmd", "sidep-helper-pairing.cmd", "tools/setup_actions.py", "tools/etat.pyw"):
        assert (inst / rel).is_file(), f"{rel} missing"
    for rel in ("helper/__init__.py", "helper/service/nativehosts.py", "helper/service/pairing.py",
                "aiohttp/__init__.py", "win32/win32print.pyd", "win32/win32gui.pyd", "pywin32.pth",
                "pypdfium2_raw/pdfium.dll"):
        assert (site / rel).is_file(), f"site-packages/{rel} missing"
    assert list((site / "helper" / "__pycache__").glob("*.cpython-311.pyc")), "modules not precompiled"
    pth = (inst / "python" / "python311._pth").read_text().splitlines()
    assert "Lib\\site-packages" in pth and "import site" in pth
    assert "-m helper.service.pairing %*" in (inst / "sidep-helper-pairing.cmd").read_text()

    hklm = prefix.hklm()
    run = hklm[RUN_KEY]["sidep-helper"]
    assert run == f'"{INSTDIR}\\python\\pythonw.exe" -m helper serve'
    for key, kind in WINDOWS_KEYS:
        manifest_path = hklm[key.lower()][""]
        assert manifest_path == f"{INSTDIR}\\native-messaging\\{HOST_NAME}.{kind}.json"
        manifest = json.loads(prefix.unix(str(manifest_path)).read_text())
        assert manifest["name"] == HOST_NAME and manifest["type"] == "stdio"
        assert manifest["path"] == f"{INSTDIR}\\sidep-helper-pairing.cmd"
        allowed = manifest["allowed_origins" if kind == "chromium" else "allowed_extensions"]
        assert allowed and all(isinstance(a, str) for a in allowed)
    assert (prefix.drive_c / SHORTCUT).is_file(), "Start-menu entry missing"
    machine = prefix.drive_c / "ProgramData" / "sidep-helper" / "config.toml"
    assert tomllib.loads(machine.read_text(encoding="utf-8")) == config


def check_removed(prefix: Prefix) -> None:
    assert not prefix.unix(INSTDIR).exists(), sorted(p.name for p in prefix.unix(INSTDIR).iterdir())
    hklm = prefix.hklm()
    assert "sidep-helper" not in hklm.get(RUN_KEY, {})
    for key, _ in WINDOWS_KEYS:
        assert not hklm.get(key.lower()), f"{key} left behind"
    assert not hklm.get(r"software\sidep-helper\install"), "installation parameters left behind"
    assert not [k for k, v in hklm.items() if k.startswith(UNINSTALL) and v.get("DisplayName") == "sidep-helper"]
    assert not (prefix.drive_c / SHORTCUT).exists()


def products(prefix: Prefix) -> list[dict[str, object]]:
    return [v for k, v in prefix.hklm().items() if k.startswith(UNINSTALL) and v.get("DisplayName") == "sidep-helper"]


def user_data(prefix: Prefix) -> Path:
    return prefix.local_appdata / "sidep-helper"


def make_user_data(prefix: Prefix) -> str:
    """A user's token, created by the installed helper itself (sidep-helper token)."""
    rc, out = prefix.output(f"{INSTDIR}\\python\\python.exe", "-m", "helper", "token")
    token = (user_data(prefix) / "token").read_text().strip()
    assert rc == 0 and token in out
    return token


def get(port: int, path: str, token: str | None = None, body: bytes | None = None) -> dict[str, object]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


# --- NSIS ----------------------------------------------------------------------------------------------

def test_nsis_silent_install_with_parameters(installers: Installers, nsis_prefix: Prefix) -> None:
    # a bad value first: exit code 2, the reason in French, no logon entry
    assert nsis_prefix.run(str(installers.setup_exe), "/S", "/RETENTION_DAYS=0") == 2
    nsis_prefix.wait()
    log = (nsis_prefix.drive_c / "ProgramData" / "sidep-helper" / "installation.log").read_text(encoding="utf-8")
    assert "RETENTION_DAYS doit être un nombre entier de jours, au moins 1 (reçu : « 0 »)" in log
    assert "sidep-helper" not in nsis_prefix.hklm().get(RUN_KEY, {})

    args = [f"/{k}={v}" for k, v in PARAMS.items()]
    nsis_prefix.run(str(installers.setup_exe), "/S", *args)
    nsis_prefix.wait()
    check_installed(nsis_prefix, EXPECTED_CONFIG)
    (entry,) = products(nsis_prefix)
    assert entry["DisplayVersion"] == installers.version
    assert entry["QuietUninstallString"] == f'"{INSTDIR}\\uninstall.exe" /S'


def test_installed_helper_starts_from_run_key_and_serves(nsis_prefix: Prefix) -> None:
    """The logon command line, run as the user; health, search and a real print (Wine's GDI → CUPS)."""
    cups = ensure_cups_pdf()  # Wine lists the CUPS queues as Windows printers
    config = user_data(nsis_prefix) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # the same port and folder as the machine config, so the test holds whichever config wins
    config.write_text(f'port = {PORT}\nwatch = ["{WATCH.replace(chr(92), "/")}"]\nwatch_downloads = false\n'
                      f'watch_thunderbird = false\nprinter = "{cups.queue}"\n', encoding="utf-8")
    drop = nsis_prefix.unix(WATCH)
    drop.mkdir(parents=True, exist_ok=True)
    command = str(nsis_prefix.hklm()[RUN_KEY]["sidep-helper"])
    exe, rest = re.fullmatch(r'"([^"]+)"\s+(.*)', command).groups()
    started = time.monotonic()
    proc = nsis_prefix.spawn(exe, *rest.split())
    try:
        while True:
            try:
                health = get(PORT, "/api/v1/health")
                break
            except OSError:
                assert time.monotonic() - started < 120, "the installed helper did not answer /health"
                assert proc.poll() is None or proc.returncode == 0
                time.sleep(0.3)
        assert health["service"] == "sidep-helper"
        token = (user_data(nsis_prefix) / "token").read_text().strip()

        spec = recent_spec(random.Random(8), last_name="WINEMONT", first_name="Hélène")
        (drop / "certificat.eml").write_bytes(mailgen.make_message(spec))
        deadline = time.monotonic() + 60
        while True:
            found = get(PORT, "/api/v1/certificates?" + urllib.parse.urlencode({"q": "winemont helene"}), token)
            if found["total"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        log = user_data(nsis_prefix) / "logs" / "sidep-helper.log"
        assert found["total"] == 1, ("the certificate dropped into the configured folder was not indexed; the "
                                     "helper's log ends with:\n" + ("".join(
                                         line for line in log.read_text(errors="replace").splitlines(True)
                                         if "sidep_helper.access" not in line)[-4000:] if log.exists() else "(no log)"))
        assert found["results"][0]["last_name"] == "WINEMONT"

        rc, text = nsis_prefix.output(f"{INSTDIR}\\python\\python.exe", f"{INSTDIR}\\tools\\etat.pyw", "--print")
        assert rc == 0, text
        assert "Service : en marche" in text and f"port {PORT}" in text
        assert "Appairage automatique : installé pour Chrome, Edge, Chromium, Firefox/Thunderbird." in text
        assert "Certificats indexés : 1" in text and "Jeton d'accès : créé" in text

        cert = found["results"][0]
        since = time.time()
        printed = get(PORT, f"/api/v1/certificates/{cert['id']}/print", token, body=b"{}")
        assert printed["printer"] == cups.queue
        deadline = time.monotonic() + 60
        while True:  # cups-pdf creates the file first, then writes it: wait for a complete PDF
            out = [p.read_bytes() for p in cups.out_dir.glob(f"certificat-{cert['id']}*.pdf") if p.stat().st_mtime >= since]
            if out and out[0].startswith(b"%PDF-") and b"%%EOF" in out[0][-64:]:
                break
            assert time.monotonic() < deadline, "no complete PDF from cups-pdf: the GDI print did not reach CUPS"
            time.sleep(0.5)
    finally:
        nsis_prefix.kill()
        proc.wait(30)
    with pytest.raises(OSError):
        get(PORT, "/api/v1/health")
    rc, text = nsis_prefix.output(f"{INSTDIR}\\python\\python.exe", f"{INSTDIR}\\tools\\etat.pyw", "--print")
    assert rc == 1 and "Service : ARRÊTÉ" in text, text


def test_nsis_uninstall_keeps_data_unless_removedata(installers: Installers, nsis_prefix: Prefix) -> None:
    token = make_user_data(nsis_prefix)
    nsis_prefix.run(f"{INSTDIR}\\uninstall.exe", "/S")
    nsis_prefix.wait()
    check_removed(nsis_prefix)
    assert (user_data(nsis_prefix) / "token").read_text().strip() == token, "user data must be kept"
    machine = nsis_prefix.drive_c / "ProgramData" / "sidep-helper" / "config.toml"
    assert machine.is_file()

    nsis_prefix.run(str(installers.setup_exe), "/S")  # no parameter: the machine config is kept
    nsis_prefix.wait()
    check_installed(nsis_prefix, EXPECTED_CONFIG)
    nsis_prefix.run(f"{INSTDIR}\\uninstall.exe", "/S", "/REMOVEDATA")
    nsis_prefix.wait()
    check_removed(nsis_prefix)
    assert not user_data(nsis_prefix).exists(), "REMOVEDATA must delete the users' data"
    assert not machine.parent.exists()


# --- MSI -----------------------------------------------------------------------------------------------

def msiexec(prefix: Prefix, *args: str) -> int:
    rc = prefix.run("msiexec", *args, timeout=600)
    prefix.wait()
    return rc


def test_msi_bad_property_rolls_back(installers: Installers, msi_prefix: Prefix) -> None:
    rc = msiexec(msi_prefix, "/i", str(installers.msi), "/qn", "PORT=80")
    assert rc != 0
    assert not (msi_prefix.unix(INSTDIR) / "python" / "python.exe").exists(), "files left by a failed install"
    assert "sidep-helper" not in msi_prefix.hklm().get(RUN_KEY, {})
    log = (msi_prefix.drive_c / "ProgramData" / "sidep-helper" / "installation.log").read_text(encoding="utf-8")
    assert "PORT doit être un numéro de port entre 1024 et 65535 (reçu : « 80 »)" in log


def test_msi_silent_install_with_properties(installers: Installers, msi_prefix: Prefix) -> None:
    assert msiexec(msi_prefix, "/i", str(installers.msi), "/qn", *[f"{k}={v}" for k, v in PARAMS.items()]) == 0
    check_installed(msi_prefix, EXPECTED_CONFIG)
    (entry,) = products(msi_prefix)
    assert entry["DisplayVersion"] == installers.version


def test_msi_major_upgrade_keeps_one_product_config_and_data(installers: Installers, msi_prefix: Prefix) -> None:
    token = make_user_data(msi_prefix)
    assert msiexec(msi_prefix, "/i", str(installers.msi_next), "/qn") == 0
    (entry,) = products(msi_prefix)
    assert entry["DisplayVersion"] == installers.next_version
    check_installed(msi_prefix, EXPECTED_CONFIG)
    assert (user_data(msi_prefix) / "token").read_text().strip() == token


def test_msi_uninstall_keeps_data_unless_removedata(installers: Installers, msi_prefix: Prefix) -> None:
    make_user_data(msi_prefix)
    assert msiexec(msi_prefix, "/x", str(installers.msi_next), "/qn") == 0
    check_removed(msi_prefix)
    assert (user_data(msi_prefix) / "token").is_file(), "user data must be kept"

    assert msiexec(msi_prefix, "/i", str(installers.msi_next), "/qn") == 0
    assert msiexec(msi_prefix, "/x", str(installers.msi_next), "/qn", "REMOVEDATA=1") == 0
    check_removed(msi_prefix)
    assert not user_data(msi_prefix).exists(), "REMOVEDATA=1 must delete the users' data"
    assert not (msi_prefix.drive_c / "ProgramData" / "sidep-helper").exists()
