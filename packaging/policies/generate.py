#!/usr/bin/env python3
"""Writes the policy templates of packaging/policies/ from the extensions' fixed ids.

1. The ids come from ``helper/extension_ids.py`` (the one place): Chrome/Edge id of the committed
   manifest key, gecko id of Firefox and Thunderbird.
2. For Chrome, Chromium and Edge: ``ExtensionSettings`` (force installation from a self-hosted ``.crx``
   and its update manifest ``updates.xml``) and the extension's ``3rdparty`` managed configuration, as a
   Linux JSON file (/etc/opt/chrome|/etc/chromium|/etc/opt/edge/policies/managed/) and as Windows
   ``.reg`` files (HKLM\\SOFTWARE\\Policies\\Google\\Chrome and \\Microsoft\\Edge).
3. For Firefox and Thunderbird: ``policies.json`` with ``ExtensionSettings`` (``install_url`` to a local
   ``file:///`` xpi) and ``3rdparty``, for Linux and Windows paths.
4. ``--check`` writes nothing and fails when a committed file differs (tests/test_policies.py runs it).

Usage: python3 packaging/policies/generate.py [--check] [--output DIR]
Values IT changes (the intranet address, the site) are examples: edit the copies, not these templates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from helper import __version__  # noqa: E402 - after the path
from helper.config import DEFAULT_PORT  # noqa: E402
from helper.extension_ids import CHROMIUM_ID, GECKO_ID  # noqa: E402

VERSION = __version__
UPDATE_BASE = "https://intranet.exemple.fr/sidep-helper"
UPDATE_URL = f"{UPDATE_BASE}/updates.xml"
CRX_URL = f"{UPDATE_BASE}/sidep-helper-webmail.crx"
MANAGED = {"helperUrl": f"http://127.0.0.1:{DEFAULT_PORT}", "site": "750712184"}
XPI = {
    "linux": {"firefox": "file:///opt/sidep-helper/extensions/sidep-helper-firefox.xpi",
              "thunderbird": "file:///opt/sidep-helper/extensions/sidep-helper-thunderbird.xpi"},
    "windows": {"firefox": "file:///C:/Program%20Files/sidep-helper/extensions/sidep-helper-firefox.xpi",
                "thunderbird": "file:///C:/Program%20Files/sidep-helper/extensions/sidep-helper-thunderbird.xpi"},
}
WINDOWS_ROOTS = {"chrome": r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Google\Chrome",
                 "edge": r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Edge"}


def extension_settings() -> dict[str, object]:
    return {CHROMIUM_ID: {"installation_mode": "force_installed", "update_url": UPDATE_URL,
                          "toolbar_pin": "force_pinned"}}


def chromium_linux() -> dict[str, object]:
    return {"ExtensionSettings": extension_settings(), "3rdparty": {"extensions": {CHROMIUM_ID: dict(MANAGED)}}}


def _reg_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chromium_reg(browser: str) -> str:
    root = WINDOWS_ROOTS[browser]
    lines = ["Windows Registry Editor Version 5.00", "",
             f"; sidep-helper : installation forcée et réglages gérés ({'Google Chrome' if browser == 'chrome' else 'Microsoft Edge'}).",
             "; Installation forcée hors magasin : postes joints à un domaine (AD/Entra) ou inscrits (MDM) uniquement.",
             "", f"[{root}]",
             f'"ExtensionSettings"={_reg_string(json.dumps(extension_settings(), separators=(",", ":")))}', "",
             f"[{root}\\3rdparty\\extensions\\{CHROMIUM_ID}\\policy]"]
    lines += [f'"{key}"={_reg_string(value)}' for key, value in MANAGED.items()]
    return "\r\n".join(lines) + "\r\n"


def update_manifest() -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<!-- Manifeste de mise à jour de l'extension sidep-helper (Chrome, Edge), à publier à l'adresse\n"
        f"     {UPDATE_URL} ; codebase : le .crx signé (voir docs/appairage.md), version : la sienne. -->\n"
        "<gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>\n"
        f"  <app appid='{CHROMIUM_ID}'>\n"
        f"    <updatecheck codebase='{CRX_URL}' version='{VERSION}' />\n"
        "  </app>\n"
        "</gupdate>\n"
    )


def mozilla(app: str, system: str) -> dict[str, object]:
    return {"policies": {
        "ExtensionSettings": {GECKO_ID: {"installation_mode": "force_installed", "install_url": XPI[system][app]}},
        "3rdparty": {"Extensions": {GECKO_ID: dict(MANAGED)}},
    }}


def files() -> dict[str, bytes]:
    def as_json(data: object) -> bytes:
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def as_reg(text: str) -> bytes:  # what regedit writes and reads: UTF-16 LE with its BOM
        return b"\xff\xfe" + text.encode("utf-16-le")

    def as_text(text: str) -> bytes:
        return text.encode("utf-8")

    return {
        "chrome-edge/linux/sidep-helper.json": as_json(chromium_linux()),
        "chrome-edge/windows/sidep-helper-chrome.reg": as_reg(chromium_reg("chrome")),
        "chrome-edge/windows/sidep-helper-edge.reg": as_reg(chromium_reg("edge")),
        "chrome-edge/updates.xml": as_text(update_manifest()),
        "firefox/linux/policies.json": as_json(mozilla("firefox", "linux")),
        "firefox/windows/policies.json": as_json(mozilla("firefox", "windows")),
        "thunderbird/linux/policies.json": as_json(mozilla("thunderbird", "linux")),
        "thunderbird/windows/policies.json": as_json(mozilla("thunderbird", "windows")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Modèles de stratégies (GPO, policies.json) de sidep-helper")
    parser.add_argument("--check", action="store_true", help="vérifier que les fichiers livrés sont à jour")
    parser.add_argument("--output", type=Path, default=HERE, help="dossier de destination")
    args = parser.parse_args(argv)
    stale = []
    for name, data in files().items():
        path = args.output / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if stale:
        print("modèles à régénérer (python3 packaging/policies/generate.py) : " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
