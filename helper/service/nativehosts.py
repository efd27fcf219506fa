"""STAND-IN for the pairing helper's module (CONTRACT-packaging.md): the merge takes PAIRING's version.

Where the native-messaging host ``fr.sidep_helper.pairing`` is registered, in ONE place, with the CLI
the installers call:
1. ``manifests --output DIR --host-path PATH`` writes the Chromium and Mozilla manifests into DIR;
2. ``install --system|--user --host-path PATH`` writes them into every browser's folder (Linux);
3. ``uninstall --system|--user`` removes them again.
Extension ids here are placeholders until pairing fixes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HOST_NAME = "fr.sidep_helper.pairing"
CHROME_IDS = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
GECKO_IDS = ["sidep-helper@sidep-helper.fr", "sidep-helper-thunderbird@sidep-helper.fr"]
DESCRIPTION = "sidep-helper : appairage de l'extension"

SYSTEM_DIRS = {
    "chromium": [Path("/etc/opt/chrome/native-messaging-hosts"), Path("/etc/chromium/native-messaging-hosts"),
                 Path("/etc/opt/edge/native-messaging-hosts")],
    "mozilla": [Path("/usr/lib/mozilla/native-messaging-hosts")],
}
USER_DIRS = {
    "chromium": [Path("~/.config/google-chrome/NativeMessagingHosts"), Path("~/.config/chromium/NativeMessagingHosts"),
                 Path("~/.config/microsoft-edge/NativeMessagingHosts")],
    "mozilla": [Path("~/.mozilla/native-messaging-hosts"), Path("~/.thunderbird/native-messaging-hosts")],
}
WINDOWS_KEYS = [
    (r"Software\Google\Chrome\NativeMessagingHosts" + "\\" + HOST_NAME, "chromium"),
    (r"Software\Chromium\NativeMessagingHosts" + "\\" + HOST_NAME, "chromium"),
    (r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts" + "\\" + HOST_NAME, "chromium"),
    (r"SOFTWARE\Mozilla\NativeMessagingHosts" + "\\" + HOST_NAME, "mozilla"),
]


def manifest(kind: str, host_path: str) -> dict[str, object]:
    base: dict[str, object] = {"name": HOST_NAME, "description": DESCRIPTION, "path": host_path, "type": "stdio"}
    if kind == "chromium":
        base["allowed_origins"] = [f"chrome-extension://{i}/" for i in CHROME_IDS]
    else:
        base["allowed_extensions"] = list(GECKO_IDS)
    return base


def file_name(kind: str) -> str:
    return f"{HOST_NAME}.{kind}.json"


def write_manifests(output: Path, host_path: str) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("chromium", "mozilla"):
        path = output / file_name(kind)
        path.write_text(json.dumps(manifest(kind, host_path), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _dirs(system: bool) -> dict[str, list[Path]]:
    table = SYSTEM_DIRS if system else USER_DIRS
    return {kind: [d.expanduser() for d in dirs] for kind, dirs in table.items()}


def install(system: bool, host_path: str) -> list[Path]:
    written = []
    for kind, dirs in _dirs(system).items():
        for folder in dirs:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{HOST_NAME}.json"
            path.write_text(json.dumps(manifest(kind, host_path), indent=2) + "\n", encoding="utf-8")
            path.chmod(0o644)
            written.append(path)
    return written


def uninstall(system: bool) -> list[Path]:
    removed = []
    for dirs in _dirs(system).values():
        for folder in dirs:
            path = folder / f"{HOST_NAME}.json"
            if path.exists():
                path.unlink()
                removed.append(path)
            try:
                folder.rmdir()  # only if we left it empty
            except OSError:
                pass
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helper.service.nativehosts",
                                     description="Enregistrement de l'hôte d'appairage (native messaging).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("manifests")
    p.add_argument("--output", required=True)
    p.add_argument("--host-path", required=True)
    for name in ("install", "uninstall"):
        p = sub.add_parser(name)
        scope = p.add_mutually_exclusive_group(required=True)
        scope.add_argument("--system", action="store_true")
        scope.add_argument("--user", action="store_true")
        if name == "install":
            p.add_argument("--host-path", required=True)
    args = parser.parse_args(argv)
    if args.command == "manifests":
        paths = write_manifests(Path(args.output), args.host_path)
    elif args.command == "install":
        paths = install(args.system, args.host_path)
    else:
        paths = uninstall(args.system)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
