"""What the Windows installers (NSIS and MSI) do with Python, run elevated by the embedded pythonw.exe.

Installed as ``<INSTDIR>\\tools\\setup_actions.py``; both installers call it the same way:

``configure`` (after the files and registry values are in place):
1. read what IT asked, from ``HKLM\\Software\\sidep-helper\\Install`` (values Port, Watch, Printer,
   TrustedForwarders, RetentionDays, written by the MSI from its public properties; setup.exe writes
   its raw command line instead, parsed here into the same values; empty or absent = "not asked");
2. check every value; a bad one stops the installation with a French message (exit 1), nothing written;
3. make ``%ProgramData%\\sidep-helper`` owned by Administrators, read-only for Users (icacls), and
   merge the values into the machine-wide ``%ProgramData%\\sidep-helper\\config.toml`` (keys port, watch,
   printers and printer, trusted_forwarders, retention_days): values asked replace the file's, other
   keys are kept, so an upgrade run without parameters keeps the configuration IT gave before;
4. write the native-messaging manifests into ``<INSTDIR>\\native-messaging\\`` with the contract's
   command (``python -m helper.service.nativehosts manifests``), pointing at
   ``<INSTDIR>\\sidep-helper-pairing.cmd``; the installer writes the HKLM keys that name them.

``remove [--remove-data]`` (before the files are removed, at uninstall and upgrade):
1. stop every process running the embedded Python of ``<INSTDIR>`` (the helper of each logged-on user),
   so that no file stays locked;
2. delete ``<INSTDIR>\\native-messaging\\`` (files the installer database does not list);
3. with ``--remove-data`` only: delete every user's ``%LOCALAPPDATA%\\sidep-helper`` (profiles listed in
   the registry's ProfileList, and the folders under the Users directory) and
   ``%ProgramData%\\sidep-helper``.

Every step is written to ``%ProgramData%\\sidep-helper\\installation.log`` (no patient data exists here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

APP = "sidep-helper"
INSTALL_KEY = r"Software\sidep-helper\Install"
HEADER = """\
# Configuration de sidep-helper pour tout le poste, écrite par l'installeur (paramètres PORT, WATCH,
# PRINTER, TRUSTED_FORWARDERS, RETENTION_DAYS). Elle est lue avant celle de chaque utilisateur
# (%LOCALAPPDATA%\\sidep-helper\\config.toml), qui ne peut pas l'affaiblir.
# Une réinstallation ou une mise à jour sans paramètre garde les valeurs ci-dessous.
"""
# registry values under INSTALL_KEY, one per installer parameter
PARAMETERS = ("Port", "Watch", "Printer", "TrustedForwarders", "RetentionDays")


class SetupError(Exception):
    """A value IT gave that cannot be used; the message is in French."""


def instdir() -> Path:
    return Path(__file__).resolve().parent.parent


def machine_dir() -> Path:
    return Path(os.environ.get("ProgramData", r"C:\ProgramData")) / APP


def log(message: str) -> None:
    folder = machine_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    with open(folder / "installation.log", "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} {message}\n")


def read_parameters() -> dict[str, str]:
    """The values the installer stored under HKLM (64-bit view); empty ones are left out.

    The MSI writes one value per property. setup.exe writes its raw parameters (value CommandLine):
    they are parsed here (NSIS's own option parser splits ``"/PRINTER=Accueil HP"`` wrongly), then
    stored as the same values as the MSI's, and CommandLine is deleted.
    """
    import winreg

    found: dict[str, str] = {}
    access = winreg.KEY_READ | winreg.KEY_WRITE | winreg.KEY_WOW64_64KEY
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY, 0, access)
    except OSError:
        return found
    with key:
        try:
            command_line, _ = winreg.QueryValueEx(key, "CommandLine")
        except OSError:
            command_line = None
        if command_line is not None:
            options = parse_setup_options(str(command_line))
            for name in PARAMETERS:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, options.get(name, ""))
            winreg.DeleteValue(key, "CommandLine")
        for name in PARAMETERS:
            try:
                value, _ = winreg.QueryValueEx(key, name)
            except OSError:
                continue
            text = str(value).strip()
            if text:
                found[name] = text
    return found


OPTIONS = {"PORT": "Port", "WATCH": "Watch", "PRINTER": "Printer", "TRUSTED_FORWARDERS": "TrustedForwarders",
           "RETENTION_DAYS": "RetentionDays"}


def split_command_line(text: str) -> list[str]:
    """Words of a Windows command line: spaces split outside double quotes, quotes are dropped (so
    ``/PRINTER="Accueil HP"`` and ``"/PRINTER=Accueil HP"`` give the same word; a backslash before a
    closing quote stays a backslash, for ``/WATCH="D:\\Certificats\\"``)."""
    words: list[str] = []
    current: list[str] = []
    quoted = started = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            started = True
        elif ch in " \t" and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        words.append("".join(current))
    return words


def parse_setup_options(command_line: str) -> dict[str, str]:
    """setup.exe's ``/NAME=value`` options (names in OPTIONS, any case) as registry value names."""
    found: dict[str, str] = {}
    for word in split_command_line(command_line):
        name, sep, value = word.partition("=")
        key = OPTIONS.get(name.lstrip("/").upper()) if name.startswith("/") and sep else None
        if key and value.strip():
            found[key] = value.strip()
    return found


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", ";").split(";") if part.strip()]


def to_config(params: dict[str, str]) -> dict[str, Any]:
    """Turn the installer's parameters into config keys, or raise SetupError (French)."""
    values: dict[str, Any] = {}
    if "Port" in params:
        port = params["Port"]
        if not port.isdigit() or not 1024 <= int(port) <= 65535:
            raise SetupError(f"PORT doit être un numéro de port entre 1024 et 65535 (reçu : « {port} »).")
        values["port"] = int(port)
    if "Watch" in params:
        folders = [f.rstrip("\\/") or f for f in params["Watch"].split(";") if f.strip()]
        values["watch"] = [f.strip() for f in folders]
    if "Printer" in params:
        values["printers"] = [params["Printer"]]
        values["printer"] = params["Printer"]
    if "TrustedForwarders" in params:
        addresses = _split(params["TrustedForwarders"])
        bad = [a for a in addresses if a.count("@") != 1 or " " in a]
        if bad or not addresses:
            raise SetupError(
                "TRUSTED_FORWARDERS doit être une liste d'adresses e-mail séparées par des virgules "
                f"(reçu : « {params['TrustedForwarders']} »)."
            )
        values["trusted_forwarders"] = [a.lower() for a in addresses]
    if "RetentionDays" in params:
        days = params["RetentionDays"]
        if not days.isdigit() or int(days) < 1:
            raise SetupError(f"RETENTION_DAYS doit être un nombre entier de jours, au moins 1 (reçu : « {days} »).")
        values["retention_days"] = int(days)
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise SetupError(f"valeur inattendue dans la configuration : {value!r}")


def merge_config(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Write ``values`` over what ``path`` holds (kept when not asked again); atomic replace."""
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log(f"configuration existante illisible, remplacée : {path} ({exc})")
    current.update(values)
    lines = [HEADER]
    for key, value in current.items():
        lines.append(f"{key} = {_toml_value(value)}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return current


def write_manifests(root: Path) -> None:
    python = root / "python" / "python.exe"
    cmd = [str(python), "-B", "-m", "helper.service.nativehosts", "manifests",
           "--output", str(root / "native-messaging"), "--host-path", str(root / "sidep-helper-pairing.cmd")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    if proc.returncode != 0:
        raise SetupError(f"écriture des manifestes d'appairage impossible : {proc.stderr.strip()}")


def protect(folder: Path) -> None:
    """Administrators own the folder; SYSTEM and Administrators full control, Users read only.

    ProgramData lets any user create a folder there: one made in advance by a user would stay theirs
    (and so would the machine configuration) without this. Best effort: the outcome is logged.
    """
    icacls = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "icacls.exe"
    steps = [[str(folder), "/setowner", "*S-1-5-32-544", "/T", "/C", "/Q"],
             [str(folder), "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F",
              "*S-1-5-32-545:(OI)(CI)RX", "/T", "/C", "/Q"]]
    for args in steps:
        try:
            proc = subprocess.run([str(icacls), *args], capture_output=True, text=True, timeout=60,
                                  creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
            outcome = f"code {proc.returncode}"
        except OSError as exc:
            outcome = f"impossible ({exc})"
        log(f"droits de {folder} ({args[1]}) : {outcome}")


def configure() -> int:
    root = instdir()
    params = read_parameters()
    values = to_config(params)
    machine_dir().mkdir(parents=True, exist_ok=True)
    protect(machine_dir())
    config = merge_config(machine_dir() / "config.toml", values)
    log(f"configuration du poste : {sorted(values)} demandés ; en vigueur : {sorted(config)}")
    write_manifests(root)
    log(f"manifestes d'appairage écrits dans {root / 'native-messaging'}")
    return 0


def stop_processes(root: Path) -> list[int]:
    """Terminate every process whose image lies under ``root`` (but this one)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    psapi = ctypes.WinDLL("psapi", use_last_error=True)
    pids = (wintypes.DWORD * 4096)()
    needed = wintypes.DWORD()
    if not psapi.EnumProcesses(pids, ctypes.sizeof(pids), ctypes.byref(needed)):
        return []
    prefix = str(root).lower().rstrip("\\") + "\\"
    stopped = []
    kernel32.OpenProcess.restype = wintypes.HANDLE
    for pid in list(pids)[: needed.value // ctypes.sizeof(wintypes.DWORD)]:
        if pid in (0, os.getpid()):
            continue
        handle = kernel32.OpenProcess(0x1000 | 0x0001 | 0x00100000, False, pid)  # query, terminate, sync
        if not handle:
            continue
        try:
            buf = ctypes.create_unicode_buffer(1024)
            size = wintypes.DWORD(len(buf))
            if kernel32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
                if buf.value.lower().startswith(prefix):
                    kernel32.TerminateProcess(handle, 1)
                    kernel32.WaitForSingleObject(handle, 5000)
                    stopped.append(pid)
        finally:
            kernel32.CloseHandle(handle)
    return stopped


def profile_dirs() -> set[Path]:
    """Every user profile folder: the registry's ProfileList, and the folders beside Public."""
    found: set[Path] = set()
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList",
                            0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:
            for i in range(winreg.QueryInfoKey(key)[0]):
                with winreg.OpenKey(key, winreg.EnumKey(key, i)) as sub:
                    try:
                        path, _ = winreg.QueryValueEx(sub, "ProfileImagePath")
                    except OSError:
                        continue
                    found.add(Path(os.path.expandvars(path)))
    except OSError:
        pass
    users = Path(os.environ.get("PUBLIC", r"C:\Users\Public")).parent
    if users.is_dir():
        found.update(p for p in users.iterdir() if p.is_dir())
    return found


def remove(remove_data: bool) -> int:
    root = instdir()
    stopped = stop_processes(root)
    log(f"désinstallation : {len(stopped)} processus arrêté(s)")
    shutil.rmtree(root / "native-messaging", ignore_errors=True)
    if remove_data:
        for profile in sorted(profile_dirs()):
            data = profile / "AppData" / "Local" / APP
            if data.is_dir():
                shutil.rmtree(data, ignore_errors=True)
        local = os.environ.get("LOCALAPPDATA")
        if local:
            shutil.rmtree(Path(local) / APP, ignore_errors=True)
        shutil.rmtree(machine_dir(), ignore_errors=True)  # the log goes with it
    else:
        log("données des utilisateurs conservées (REMOVEDATA non demandé)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="setup_actions.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("configure")
    p = sub.add_parser("remove")
    p.add_argument("--remove-data", action="store_true")
    args = parser.parse_args(argv)
    try:
        return configure() if args.command == "configure" else remove(args.remove_data)
    except SetupError as exc:
        log(f"ERREUR : {exc}")
        print(f"sidep-helper : {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
