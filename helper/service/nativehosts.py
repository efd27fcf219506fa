"""STAND-IN (packaging contract): where the native-messaging pairing host is registered.

This minimal version exists only so that the installers can be built and tested before the pairing
branch is merged; the merge takes the pairing branch's module, which keeps this command line:

1. ``manifests --output DIR --host-path PATH`` writes ``DIR/fr.sidep_helper.pairing.chromium.json``
   (``allowed_origins``: every shipped chrome-extension id) and ``DIR/fr.sidep_helper.pairing.mozilla.json``
   (``allowed_extensions``: the gecko ids), both pointing at PATH;
2. ``install --system|--user --host-path PATH`` writes them into every browser's folder (Linux);
3. ``uninstall --system|--user`` removes them.

``WINDOWS_KEYS`` lists the HKLM keys whose default value is the full path of the matching json file;
the Windows installers write them (per-machine) and remove them at uninstall.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HOST_NAME = "fr.sidep_helper.pairing"
DESCRIPTION = "sidep-helper : appairage de l'extension"
CHROME_IDS = ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",)  # placeholder until the pairing branch fixes the id
GECKO_IDS = ("sidep-helper@sidep-helper.fr", "sidep-helper-thunderbird@sidep-helper.fr")

WINDOWS_KEYS: list[tuple[str, str]] = [
    (rf"Software\Google\Chrome\NativeMessagingHosts\{HOST_NAME}", "chromium"),
    (rf"Software\Chromium\NativeMessagingHosts\{HOST_NAME}", "chromium"),
    (rf"SOFTWARE\Microsoft\Edge\NativeMessagingHosts\{HOST_NAME}", "chromium"),
    (rf"SOFTWARE\Mozilla\NativeMessagingHosts\{HOST_NAME}", "mozilla"),
]

SYSTEM_DIRS: list[tuple[Path, str]] = [
    (Path("/etc/opt/chrome/native-messaging-hosts"), "chromium"),
    (Path("/etc/chromium/native-messaging-hosts"), "chromium"),
    (Path("/etc/opt/edge/native-messaging-hosts"), "chromium"),
    (Path("/usr/lib/mozilla/native-messaging-hosts"), "mozilla"),
]
USER_DIRS: list[tuple[Path, str]] = [
    (Path("~/.config/google-chrome/NativeMessagingHosts"), "chromium"),
    (Path("~/.config/chromium/NativeMessagingHosts"), "chromium"),
    (Path("~/.config/microsoft-edge/NativeMessagingHosts"), "chromium"),
    (Path("~/.mozilla/native-messaging-hosts"), "mozilla"),
]


def manifest_name(kind: str) -> str:
    return f"{HOST_NAME}.{kind}.json"


def manifest(kind: str, host_path: str) -> dict[str, object]:
    body: dict[str, object] = {"name": HOST_NAME, "description": DESCRIPTION, "path": host_path, "type": "stdio"}
    if kind == "chromium":
        body["allowed_origins"] = [f"chrome-extension://{i}/" for i in CHROME_IDS]
    else:
        body["allowed_extensions"] = list(GECKO_IDS)
    return body


def write_manifests(output: Path, host_path: str) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("chromium", "mozilla"):
        path = output / manifest_name(kind)
        path.write_text(json.dumps(manifest(kind, host_path), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _dirs(system: bool) -> list[tuple[Path, str]]:
    return [(d.expanduser(), k) for d, k in (SYSTEM_DIRS if system else USER_DIRS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helper.service.nativehosts")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("manifests")
    p.add_argument("--output", required=True, type=Path)
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
        write_manifests(args.output, args.host_path)
        return 0
    for folder, kind in _dirs(args.system):
        target = folder / f"{HOST_NAME}.json"
        if args.command == "install":
            folder.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(manifest(kind, args.host_path), indent=2) + "\n", encoding="utf-8")
        else:
            target.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
