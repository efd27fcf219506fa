"""The Debian package, built from this tree and installed on this machine (root, dpkg, apt-get).

1. ``packaging/build deb`` once for the module; ``apt-get install ./…deb`` installs it;
2. files, conffile, user unit enabled for every user, pairing host registered;
3. a throwaway unprivileged user runs the unit's own ExecStart command line; a generated certificate
   dropped in that user's Downloads is found over HTTP;
4. ``dpkg -i`` again keeps the IT-edited conffile, whose keys the installed helper enforces;
5. lintian reports no error or warning beyond ``packaging/debian/lintian-overrides``;
6. ``dpkg --purge`` leaves nothing under /opt, /usr, /etc (the user's own data stays in their home).
"""

from __future__ import annotations

import json
import os
import pwd
import random
import shlex
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mailgen
import pytest
from conftest import BUILD_LOCK, ROOT, SYSTEM_PACKAGE_LOCK, free_port, recent_spec
from syslock import file_lock

PACKAGE = "sidep-helper"
UNIT = Path("/usr/lib/systemd/user/sidep-helper.service")
MACHINE_CONFIG = Path("/etc/sidep-helper/config.toml")
NATIVE_DIRS = [Path("/etc/opt/chrome/native-messaging-hosts"), Path("/etc/chromium/native-messaging-hosts"),
               Path("/etc/opt/edge/native-messaging-hosts"), Path("/usr/lib/mozilla/native-messaging-hosts")]
DPKG_WAIT = ["-o", "DPkg::Lock::Timeout=600"]  # other test runs on this machine may hold the dpkg lock


def _run(*cmd: str | Path, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _sidep_paths() -> set[str]:
    found = set()
    for top in ("/opt", "/usr", "/etc", "/var/lib"):
        proc = subprocess.run(["find", top, "-xdev", "-name", "*sidep*"], capture_output=True, text=True)
        found |= {line for line in proc.stdout.splitlines() if line}
    return found


@pytest.fixture(scope="module")
def deb() -> Path:
    if os.geteuid() != 0 or not shutil.which("dpkg-deb") or not shutil.which("apt-get"):
        pytest.fail("the .deb tests need root, dpkg-deb and apt-get (run them through bash tests/run as root)")
    started = time.monotonic()
    with file_lock(BUILD_LOCK):  # test_installer_windows builds from this tree too
        proc = _run(ROOT / "packaging" / "build", "deb", cwd=ROOT)
    out = ROOT / proc.stdout.strip().splitlines()[-1]
    print(f"deb built in {time.monotonic() - started:.1f} s: {out.name}, {out.stat().st_size / 1e6:.2f} MB")
    assert out.name.startswith(f"{PACKAGE}_") and out.name.endswith("_amd64.deb")
    return out


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[dict[str, object]]:
    # The package's pairing hosts and /etc/sidep-helper are seen by every browser and helper on the
    # machine: installed only while no module that would see them runs (conftest.SYSTEM_PACKAGE_LOCK).
    with file_lock(SYSTEM_PACKAGE_LOCK):
        yield from _installed(deb)


def _installed(deb: Path) -> Iterator[dict[str, object]]:
    if subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode == 0:
        _run("dpkg", "--purge", PACKAGE)  # a leftover from an interrupted run
    before = {"sidep": _sidep_paths(), "native": {d: d.exists() for d in NATIVE_DIRS + [d.parent for d in NATIVE_DIRS]}}
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run("apt-get", "install", "-y", "-q", *DPKG_WAIT, f"./{deb.relative_to(ROOT)}", cwd=ROOT, env=env)
    yield before
    if subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode == 0:
        subprocess.run(["dpkg", "--purge", PACKAGE], capture_output=True)


@pytest.fixture(scope="module")
def user() -> Iterator[pwd.struct_passwd]:
    name = f"sidept{os.getpid() % 100000}"
    _run("useradd", "--create-home", "--shell", "/bin/sh", name)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_files_unit_and_conffile(installed: dict[str, object]) -> None:
    assert Path("/usr/bin/sidep-helper").resolve() == Path("/opt/sidep-helper/bin/sidep-helper")
    version = _run("/usr/bin/sidep-helper", "--version").stdout
    assert version.startswith("sidep-helper ")
    # Its own environment on Debian's interpreter, no build path written anywhere.
    assert os.readlink("/opt/sidep-helper/bin/python").startswith("/usr/bin/python3.")
    assert Path("/opt/sidep-helper/bin/sidep-helper").read_text().startswith("#!/opt/sidep-helper/bin/python\n")
    leaked = subprocess.run(["grep", "-rl", "/tmp/sidep-deb.", "/opt/sidep-helper"], capture_output=True, text=True)
    assert leaked.stdout == "", f"build paths left in: {leaked.stdout[:500]}"
    # The user unit, enabled for every user.
    unit = UNIT.read_text()
    assert "ExecStart=/opt/sidep-helper/bin/sidep-helper serve" in unit and "WantedBy=default.target" in unit
    assert _run("systemctl", "--global", "is-enabled", "sidep-helper.service").stdout.strip() == "enabled"
    assert Path("/etc/systemd/user/default.target.wants/sidep-helper.service").resolve() == UNIT
    # The machine-wide configuration: a conffile, every setting commented.
    conffiles = _run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    assert str(MACHINE_CONFIG) in conffiles
    text = MACHINE_CONFIG.read_text(encoding="utf-8")
    assert "IMPOSÉ" in text and "# port = 51789" in text
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())
    # The pairing host, registered for every browser, pointing at the installed executable.
    for folder in NATIVE_DIRS:
        manifest = json.loads((folder / "fr.sidep_helper.pairing.json").read_text())
        assert manifest["name"] == "fr.sidep_helper.pairing"
        assert manifest["path"] == "/opt/sidep-helper/bin/sidep-helper-pairing"
    assert os.access("/opt/sidep-helper/bin/sidep-helper-pairing", os.X_OK)
    # Byte-compiled by postinst (users cannot write there), not shipped in the package.
    assert list(Path("/opt/sidep-helper/lib").rglob("__pycache__"))
    assert "__pycache__" not in _run("dpkg", "-L", PACKAGE).stdout


def test_lintian_reports_nothing_beyond_the_declared_overrides(deb: Path) -> None:
    if not shutil.which("lintian"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run("apt-get", "install", "-y", "-q", "--no-install-recommends", *DPKG_WAIT, "lintian", env=env)
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True,
                          timeout=600)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and tags == [], proc.stdout[-3000:] + proc.stderr[-1000:]


def _exec_start() -> list[str]:
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_installed_unit_runs_as_a_user_and_finds_a_dropped_certificate(installed: dict[str, object],
                                                                       user: pwd.struct_passwd) -> None:
    home = Path(user.pw_dir)
    port = free_port()

    def as_user(path: Path) -> None:
        os.chown(path, user.pw_uid, user.pw_gid)

    config = home / ".config" / "sidep-helper"
    downloads = home / "Downloads"
    for folder in (home / ".config", config, downloads):
        folder.mkdir(exist_ok=True)
        as_user(folder)
    (config / "config.toml").write_text(f"port = {port}\n")
    as_user(config / "config.toml")
    env = {"HOME": str(home), "USER": user.pw_name, "LOGNAME": user.pw_name, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(_exec_start(), user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=env, cwd=home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                status, health = _get(port, "/api/v1/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "the installed helper did not answer /health"
                time.sleep(0.2)
        assert status == 200
        data = home / ".local" / "share" / "sidep-helper"
        assert data.stat().st_uid == user.pw_uid and data.stat().st_mode & 0o777 == 0o700
        token = (data / "token").read_text().strip()
        spec = recent_spec(random.Random(81), last_name="PAQUETDEBIAN", first_name="Léonie")
        eml = downloads / "certificat.eml"
        eml.write_bytes(mailgen.make_message(spec))
        as_user(eml)
        deadline = time.monotonic() + 20
        while True:
            _, found = _get(port, "/api/v1/certificates?" + urllib.parse.urlencode({"q": "paquetdebian leonie"}), token)
            if found["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert found["total"] == 1
        cert = found["results"][0]  # type: ignore[index]
        assert (cert["last_name"], cert["dossier"]) == ("PAQUETDEBIAN", spec.dossier)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0  # a clean stop on SIGTERM, as systemd sends it


def test_reinstall_keeps_the_edited_conffile_and_enforces_it(installed: dict[str, object], deb: Path,
                                                             user: pwd.struct_passwd) -> None:
    original = MACHINE_CONFIG.read_text(encoding="utf-8")
    MACHINE_CONFIG.write_text(original + "\nretention_days = 30\n", encoding="utf-8")
    _run("dpkg", "--force-confold", "-i", deb)
    assert MACHINE_CONFIG.read_text(encoding="utf-8").endswith("retention_days = 30\n")
    home = Path(user.pw_dir)
    user_config = home / ".config" / "sidep-helper" / "config.toml"
    user_config.parent.mkdir(parents=True, exist_ok=True)
    user_config.write_text("retention_days = 3650\n")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.run(["/usr/bin/sidep-helper", "config", "--json"], user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[], env=env, cwd=home, capture_output=True, text=True, timeout=60)
    values = json.loads(proc.stdout)
    assert values["retention_days"] == 30 and values["sources"]["retention_days"] == str(MACHINE_CONFIG)
    assert any("retention_days" in w for w in values["warnings"])


def test_purge_leaves_nothing_but_the_users_data(installed: dict[str, object], user: pwd.struct_passwd) -> None:
    _run("dpkg", "--purge", PACKAGE)
    assert subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode != 0
    left = _sidep_paths() - installed["sidep"]  # type: ignore[operator]
    assert left == set(), f"left behind: {sorted(left)}"
    assert not Path("/etc/systemd/user/default.target.wants/sidep-helper.service").is_symlink()
    for folder, existed in installed["native"].items():  # type: ignore[attr-defined]
        assert not (folder / "fr.sidep_helper.pairing.json").exists()
        assert folder.exists() == existed, f"{folder}: created by the package and left behind"
    # Debian policy: a purge never touches users' homes; their index stays theirs to delete.
    assert (Path(user.pw_dir) / ".local" / "share" / "sidep-helper" / "token").exists()
