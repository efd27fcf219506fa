"""The policy templates of packaging/policies/: generated from the fixed ids, and valid for what reads them.

``generate.py --check`` proves the committed files are what the ids give today; the values are checked
against the extension's managed_schema.json (what the browsers validate ``3rdparty`` with), and the
Chromium ``3rdparty`` part is what tests/test_extension_policy.py feeds a real Chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
from conftest import ROOT

from helper.extension_ids import CHROMIUM_ID, GECKO_ID

POLICIES = ROOT / "packaging" / "policies"
SCHEMA = json.loads((ROOT / "extension" / "managed_schema.json").read_text(encoding="utf-8"))


def load(name: str) -> dict:
    return json.loads((POLICIES / name).read_text(encoding="utf-8"))


def test_committed_templates_are_generated_from_the_ids(tmp_path: Path) -> None:
    check = subprocess.run([sys.executable, str(POLICIES / "generate.py"), "--check"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    # and --check does fail on a stale copy
    out = tmp_path / "copy"
    subprocess.run([sys.executable, str(POLICIES / "generate.py"), "--output", str(out)], check=True, timeout=60)
    (out / "firefox/linux/policies.json").write_text("{}", encoding="utf-8")
    stale = subprocess.run([sys.executable, str(POLICIES / "generate.py"), "--check", "--output", str(out)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert stale.returncode == 1 and "firefox/linux/policies.json" in stale.stderr


def test_chrome_and_edge_force_install_and_managed_values() -> None:
    policy = load("chrome-edge/linux/sidep-helper.json")
    assert list(policy["ExtensionSettings"]) == [CHROMIUM_ID]
    settings = policy["ExtensionSettings"][CHROMIUM_ID]
    assert settings["installation_mode"] == "force_installed"
    assert settings["update_url"].startswith("https://") and settings["update_url"].endswith("/updates.xml")
    managed = policy["3rdparty"]["extensions"][CHROMIUM_ID]
    jsonschema.validate(managed, SCHEMA)
    update = ET.fromstring((POLICIES / "chrome-edge/updates.xml").read_bytes())
    ns = {"g": "http://www.google.com/update2/response"}
    app = update.find("g:app", ns)
    assert app is not None and app.get("appid") == CHROMIUM_ID
    check = app.find("g:updatecheck", ns)
    assert check is not None and check.get("codebase", "").endswith(".crx") and check.get("version")


def test_windows_reg_files_name_the_policy_keys() -> None:
    for name, root in (("chrome", r"SOFTWARE\Policies\Google\Chrome"), ("edge", r"SOFTWARE\Policies\Microsoft\Edge")):
        raw = (POLICIES / f"chrome-edge/windows/sidep-helper-{name}.reg").read_bytes()
        assert raw.startswith(b"\xff\xfe"), "UTF-16 LE with BOM, as regedit writes"
        text = raw[2:].decode("utf-16-le")
        assert text.startswith("Windows Registry Editor Version 5.00\r\n")
        assert f"[HKEY_LOCAL_MACHINE\\{root}\\3rdparty\\extensions\\{CHROMIUM_ID}\\policy]" in text
        line = next(x for x in text.splitlines() if x.startswith('"ExtensionSettings"='))
        value = line.split("=", 1)[1][1:-1].replace('\\"', '"').replace("\\\\", "\\")
        assert json.loads(value)[CHROMIUM_ID]["installation_mode"] == "force_installed"


def test_firefox_and_thunderbird_policies() -> None:
    for app in ("firefox", "thunderbird"):
        for system in ("linux", "windows"):
            policies = load(f"{app}/{system}/policies.json")["policies"]
            install = policies["ExtensionSettings"][GECKO_ID]
            assert install["installation_mode"] == "force_installed"
            assert install["install_url"].startswith("file:///")
            assert install["install_url"].endswith(f"/sidep-helper-{app}.xpi")
            jsonschema.validate(policies["3rdparty"]["Extensions"][GECKO_ID], SCHEMA)
