"""Wine and the Windows build tools, for the installer tests (tests/test_installer_windows.py).

``ensure_wine()`` brings the machine to this state, doing only what is missing (cheap to call again,
from every test session and from ``tests/run``):

1. the Debian packages ``wine wine64 nsis msitools wixl osslsigncode`` are installed (``apt-get``, only
   as root on a machine that has it; elsewhere ``WineSetupError`` says what is missing);
2. nothing else: no display is used (``DISPLAY`` empty, ``WINEDEBUG=-all``), prefixes are throwaway.

````Prefix`` is one throwaway ``WINEPREFIX`` (64-bit, ``wineboot -i``): run Windows programs with the
standard streams on /dev/null (pythonw.exe cannot start under Wine with a pipe or a file as stream) or,
for console programs whose output is read, on pipes (python.exe cannot start with a file as stdout),
wait for every program of the prefix to end (``wineserver -w``, which also writes the registry files),
read the HKLM and HKCU hives from ``system.reg``/``user.reg`` and map ``C:\\`` paths to Linux paths.
Standard library only, so that ``python3 tests/wine.py`` works before any virtual environment exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from syslock import file_lock

PACKAGES = ("wine", "wine64", "nsis", "msitools", "wixl", "osslsigncode")
TOOLS = {"wine": "wine", "wineserver": "wine", "/usr/lib/wine/wine64": "wine64", "makensis": "nsis", "wixl": "wixl", "msiinfo": "msitools",
         "osslsigncode": "osslsigncode"}
LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-wine.lock"


class WineSetupError(RuntimeError):
    """Wine or a build tool is missing and cannot be installed here; the message says what."""


def missing_tools() -> list[str]:
    return sorted({pkg for tool, pkg in TOOLS.items() if not (Path(tool).is_file() if "/" in tool else shutil.which(tool))})


def ensure_wine() -> None:
    if not missing_tools():
        return
    with file_lock(LOCK_FILE):
        missing = missing_tools()
        if not missing:
            return
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise WineSetupError(
                f"paquets Debian absents : {' '.join(missing)} ; il faut être root avec apt-get pour les installer "
                f"(apt-get install {' '.join(PACKAGES)})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *PACKAGES]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:  # stale package lists: update once and retry
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or missing_tools():
            raise WineSetupError(f"apt-get install {' '.join(PACKAGES)} a échoué :\n{proc.stderr[-2000:]}")


def _unescape(value: str) -> str:
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            n = value[i + 1]
            if n == "x":
                m = re.match(r"[0-9a-fA-F]{1,4}", value[i + 2:])
                if m:
                    out.append(chr(int(m.group(0), 16)))
                    i += 2 + len(m.group(0))
                    continue
            out.append({"n": "\n", "r": "\r", "t": "\t", "0": "\0"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_reg(text: str) -> dict[str, dict[str, object]]:
    """Wine's registry file: {key path (lower case, single backslashes): {value name ("" = default): value}}."""
    keys: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    for line in text.splitlines():
        if line.startswith("["):
            name = _unescape(line[1:line.rindex("]")])
            current = keys.setdefault(name.lower(), {})
            continue
        if current is None or not line or line.startswith(("#", ";")):
            continue
        m = re.match(r'^(@|"((?:[^"\\]|\\.)*)")=(.*)$', line)
        if not m:
            continue
        name = "" if m.group(1) == "@" else _unescape(m.group(2))
        raw = m.group(3)
        if raw.startswith('"') and raw.endswith('"'):
            current[name] = _unescape(raw[1:-1])
        elif raw.startswith("str(2):\""):
            current[name] = _unescape(raw[8:-1])
        elif raw.startswith("dword:"):
            current[name] = int(raw[6:], 16)
        else:
            current[name] = raw
    return keys


class Prefix:
    """A throwaway 64-bit WINEPREFIX, booted once."""

    def __init__(self, path: Path) -> None:
        ensure_wine()
        self.path = path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("WINE", "DISPLAY"))}
        self.env.update(WINEPREFIX=str(path), WINEDEBUG="-all", DISPLAY="", WINEARCH="win64",
                        WINEDLLOVERRIDES="mscoree,mshtml=")
        proc = subprocess.run(["wineboot", "-i"], env=self.env, capture_output=True, text=True, timeout=300)
        self.wait()
        if not (path / "drive_c" / "windows" / "system32").is_dir():
            raise WineSetupError(f"wineboot n'a pas créé le préfixe {path} :\n{proc.stderr[-2000:]}")

    @property
    def drive_c(self) -> Path:
        return self.path / "drive_c"

    def unix(self, windows_path: str) -> Path:
        """C:\\x\\y → <prefix>/drive_c/x/y (case as Wine created it)."""
        m = re.match(r"^[cC]:[\\/]*(.*)$", windows_path)
        if not m:
            raise ValueError(f"not a C: path: {windows_path}")
        return self.drive_c.joinpath(*[p for p in re.split(r"[\\/]+", m.group(1)) if p])

    @property
    def user(self) -> str:
        users = [p.name for p in (self.drive_c / "users").iterdir() if p.name.lower() != "public"]
        return users[0]

    @property
    def local_appdata(self) -> Path:
        return self.drive_c / "users" / self.user / "AppData" / "Local"

    def run(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> int:
        """Run a Windows program to its end; streams on /dev/null; its exit code."""
        proc = subprocess.run(["wine", *args], env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        return proc.returncode

    def output(self, *args: str, timeout: float = 120) -> tuple[int, str]:
        """Run a console program; its stdout and stderr (through a pipe: python.exe under Wine cannot
        start with a regular file as stdout)."""
        proc = subprocess.run(["wine", *args], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["wine", *args], env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, timeout: float = 300) -> None:
        """Wait until every program of the prefix has ended and the registry is on disk."""
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=timeout, check=False)

    def kill(self) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env, timeout=60, check=False)
        self.wait(60)

    def hklm(self) -> dict[str, dict[str, object]]:
        self.wait()
        return parse_reg((self.path / "system.reg").read_text(encoding="utf-8", errors="replace"))


if __name__ == "__main__":
    try:
        ensure_wine()
    except WineSetupError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    print("wine, nsis, wixl, msitools, osslsigncode : prêts")
