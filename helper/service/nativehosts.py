"""Where each browser looks for the pairing host's manifest, in ONE place, and the command that writes them.

1. ``BROWSERS`` lists, for Chrome, Chromium, Edge and the Mozilla family (Firefox and Thunderbird read
   the same folders and registry key), the Linux system folder, the Linux per-user folder and the
   Windows registry key (KeePassXC's NativeMessageInstaller keeps the same table).
2. ``manifest(kind, host_path)`` builds the JSON the browser reads: Chromium-family manifests list
   ``allowed_origins`` (every id we ship, no wildcard: Edge reads only the first manifest it finds),
   Mozilla manifests ``allowed_extensions`` (the gecko ids). Ids come from ``helper.extension_ids``.
3. The command line (for the installers, and for a lab that installed from a venv)::

       python -m helper.service.nativehosts manifests --output DIR --host-path PATH
       python -m helper.service.nativehosts install --system|--user [--host-path PATH]
       python -m helper.service.nativehosts uninstall --system|--user

   ``manifests`` writes ``DIR/fr.sidep_helper.pairing.chromium.json`` and ``….mozilla.json`` (the
   Windows installers ship them and point ``WINDOWS_KEYS`` at them); ``install`` writes the manifest in
   every browser's folder on Linux (``--system``: /etc, /usr/lib; ``--user``: the folders under the
   home directory), or the files plus the registry keys (HKLM or HKCU) on Windows; ``uninstall`` removes
   exactly what ``install`` writes. Without ``--host-path``, the host is the ``sidep-helper-pairing``
   script installed beside the running Python (the venv's ``bin/`` or ``Scripts/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from helper.extension_ids import CHROMIUM_IDS, GECKO_IDS

HOST_NAME = "fr.sidep_helper.pairing"
DESCRIPTION = "sidep-helper : appairage automatique de l'extension avec le service local"
SCRIPT_NAME = "sidep-helper-pairing"


@dataclass(frozen=True)
class Browser:
    name: str
    kind: str  # "chromium" (allowed_origins) or "mozilla" (allowed_extensions)
    linux_system: str
    linux_user: str  # "~" is the home directory, "$XDG_CONFIG_HOME" defaults to ~/.config
    windows_key: str  # under HKLM (installers) or HKCU (per-user install)


BROWSERS: tuple[Browser, ...] = (
    Browser("Google Chrome", "chromium", "/etc/opt/chrome/native-messaging-hosts",
            "$XDG_CONFIG_HOME/google-chrome/NativeMessagingHosts",
            r"Software\Google\Chrome\NativeMessagingHosts"),
    Browser("Chromium", "chromium", "/etc/chromium/native-messaging-hosts",
            "$XDG_CONFIG_HOME/chromium/NativeMessagingHosts",
            r"Software\Chromium\NativeMessagingHosts"),
    Browser("Microsoft Edge", "chromium", "/etc/opt/edge/native-messaging-hosts",
            "$XDG_CONFIG_HOME/microsoft-edge/NativeMessagingHosts",
            r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts"),
    Browser("Firefox et Thunderbird", "mozilla", "/usr/lib/mozilla/native-messaging-hosts",
            "~/.mozilla/native-messaging-hosts",
            r"SOFTWARE\Mozilla\NativeMessagingHosts"),
)

#: (registry subkey, "chromium" | "mozilla"): default value = full path of that manifest file.
WINDOWS_KEYS: list[tuple[str, str]] = [(f"{b.windows_key}\\{HOST_NAME}", b.kind) for b in BROWSERS]


def manifest_name(kind: str) -> str:
    return f"{HOST_NAME}.{kind}.json"


def manifest(kind: str, host_path: str | Path) -> dict[str, object]:
    """The native-messaging manifest for one browser family."""
    data: dict[str, object] = {"name": HOST_NAME, "description": DESCRIPTION, "path": str(host_path),
                               "type": "stdio"}
    if kind == "chromium":
        data["allowed_origins"] = [f"chrome-extension://{i}/" for i in CHROMIUM_IDS]
    elif kind == "mozilla":
        data["allowed_extensions"] = list(GECKO_IDS)
    else:
        raise ValueError(kind)
    return data


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)  # browsers of every user read the system ones
    os.replace(tmp, path)


def write_manifests(output: Path, host_path: str | Path) -> list[Path]:
    """``output/fr.sidep_helper.pairing.{chromium,mozilla}.json`` (what the Windows installers ship)."""
    written = []
    for kind in ("chromium", "mozilla"):
        path = output / manifest_name(kind)
        _write_json(path, manifest(kind, host_path))
        written.append(path)
    return written


def linux_folders(scope: str, home: Path | None = None) -> list[tuple[Browser, Path]]:
    """Every browser's manifest folder for ``scope`` ("system" or "user")."""
    home = home or Path.home()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    out = []
    for browser in BROWSERS:
        if scope == "system":
            out.append((browser, Path(browser.linux_system)))
        else:
            raw = browser.linux_user.replace("$XDG_CONFIG_HOME", str(config))
            out.append((browser, Path(raw.replace("~", str(home), 1) if raw.startswith("~") else raw)))
    return out


def default_host_path() -> Path:
    """The ``sidep-helper-pairing`` script installed beside the running interpreter (venv or package)."""
    folder = Path(sys.executable).parent
    for name in (SCRIPT_NAME, f"{SCRIPT_NAME}.exe", f"{SCRIPT_NAME}.cmd"):
        if (folder / name).is_file():
            return (folder / name).absolute()
    raise FileNotFoundError(
        f"programme {SCRIPT_NAME} introuvable à côté de {sys.executable} : installez sidep-helper avec pip "
        "dans cet environnement, ou indiquez le chemin avec --host-path")


def install(scope: str, host_path: str | Path, home: Path | None = None) -> list[Path]:
    if os.name == "nt":
        return _windows_install(scope, host_path)
    written = []
    for browser, folder in linux_folders(scope, home):
        path = folder / f"{HOST_NAME}.json"
        _write_json(path, manifest(browser.kind, host_path))
        written.append(path)
    return written


def uninstall(scope: str, home: Path | None = None) -> list[Path]:
    if os.name == "nt":
        return _windows_uninstall(scope)
    removed = []
    for _browser, folder in linux_folders(scope, home):
        path = folder / f"{HOST_NAME}.json"
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


# --- Windows (per-user here; the installers write the HKLM keys themselves from WINDOWS_KEYS) -----------

def _windows_folder(scope: str) -> Path:
    base = os.environ.get("PROGRAMDATA" if scope == "system" else "LOCALAPPDATA", "")
    return Path(base) / "sidep-helper" / "native-messaging"


def _windows_install(scope: str, host_path: str | Path) -> list[Path]:
    import winreg  # type: ignore[import-not-found]

    root = winreg.HKEY_LOCAL_MACHINE if scope == "system" else winreg.HKEY_CURRENT_USER
    files = write_manifests(_windows_folder(scope), host_path)
    by_kind = {"chromium": files[0], "mozilla": files[1]}
    for subkey, kind in WINDOWS_KEYS:
        with winreg.CreateKeyEx(root, subkey, 0, winreg.KEY_WRITE | winreg.KEY_WOW64_64KEY) as key:
            winreg.SetValueEx(key, "", 0, winreg.REG_SZ, str(by_kind[kind]))
    return files


def _windows_uninstall(scope: str) -> list[Path]:
    import winreg  # type: ignore[import-not-found]

    root = winreg.HKEY_LOCAL_MACHINE if scope == "system" else winreg.HKEY_CURRENT_USER
    for subkey, _kind in WINDOWS_KEYS:
        try:
            winreg.DeleteKeyEx(root, subkey, winreg.KEY_WOW64_64KEY, 0)
        except OSError:
            pass
    removed = []
    for kind in ("chromium", "mozilla"):
        path = _windows_folder(scope) / manifest_name(kind)
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


# --- command line ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helper.service.nativehosts",
        description="Déclare aux navigateurs (Chrome, Edge, Chromium, Firefox, Thunderbird) le programme "
                    f"d'appairage automatique {HOST_NAME}.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("manifests", help="écrire les deux fichiers de déclaration dans un dossier")
    p.add_argument("--output", required=True, type=Path, help="dossier de destination")
    p.add_argument("--host-path", required=True, help="chemin complet du programme d'appairage")
    for name, text in (("install", "déclarer le programme à tous les navigateurs"),
                       ("uninstall", "retirer ces déclarations")):
        p = sub.add_parser(name, help=text)
        scope = p.add_mutually_exclusive_group(required=True)
        scope.add_argument("--system", action="store_const", const="system", dest="scope",
                           help="pour tous les utilisateurs du poste (administrateur)")
        scope.add_argument("--user", action="store_const", const="user", dest="scope",
                           help="pour l'utilisateur courant seulement")
        if name == "install":
            p.add_argument("--host-path", help=f"chemin du programme (défaut : {SCRIPT_NAME} à côté de Python)")
    args = parser.parse_args(argv)
    try:
        if args.command == "manifests":
            for path in write_manifests(args.output, args.host_path):
                print(f"écrit : {path}")
        elif args.command == "install":
            host = Path(args.host_path).absolute() if args.host_path else default_host_path()
            for path in install(args.scope, host):
                print(f"déclaré : {path}")
            print(f"programme d'appairage : {host}")
        else:
            removed = uninstall(args.scope)
            for path in removed:
                print(f"retiré : {path}")
            if not removed:
                print("aucune déclaration à retirer")
    except (OSError, FileNotFoundError) as exc:
        print(f"sidep-helper : {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
