"""Values set by IT through Chromium policy win: the ``3rdparty`` managed configuration of the extension.

/etc/chromium/policies/managed/<file>.json holds ``{"3rdparty": {"extensions": {"<fixed id>": {...}}}}``
(what packaging/policies/ ships for Linux; Windows reads the same under
HKLM\\Software\\Policies\\Chromium|Google\\Chrome|Microsoft\\Edge\\3rdparty\\extensions\\<id>\\policy).
The file is machine-wide: written under a lock and removed after the test. The extension reads it as
``storage.managed``: the managed address and site win over the user's and are read-only in the options
page; the token still comes from the pairing host (declared in the profile, as in
test_extension_pairing.py). Then ``ExtensionSettings``: the shipped templates (policy and updates.xml)
make Chromium download and install a .crx from ``extension/build --crx`` served on the loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import browser
import pytest
from conftest import ROOT
from pairingenv import SITE, Helper, declare_host, results, running_helper

from helper.extension_ids import CHROMIUM_ID


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    with running_helper(tmp_path_factory.mktemp("policy")) as service:
        yield service


def test_managed_address_and_site_win_and_are_read_only(tmp_path: Path, helper: Helper) -> None:
    browser.ensure_chromium()
    extension = browser.build_extension()
    profile = tmp_path / "profile"
    declare_host(profile, helper.home)
    # the 3rdparty part of the shipped template (its ExtensionSettings would fetch a .crx from the intranet)
    template = json.loads((ROOT / "packaging/policies/chrome-edge/linux/sidep-helper.json").read_text("utf-8"))
    document = {"3rdparty": template["3rdparty"]}
    values = document["3rdparty"]["extensions"][CHROMIUM_ID]
    assert values["site"] == SITE
    values["helperUrl"] = helper.url  # the template says the default port; this helper has its own
    with browser.system_policy(f"sidep-helper-test-{os.getpid()}.json", document):
        with browser.extension_browser(extension, user_data_dir=profile) as (context, extension_id):
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(browser.extension_url(extension_id, "src/options/options.html"))
            page.wait_for_selector("body[data-ready]")
            assert page.evaluate("chrome.storage.managed.get(null)") == values
            # the user's own (wrong) address loses to IT's
            page.evaluate("chrome.storage.local.set({helperUrl: 'http://127.0.0.1:9', site: '130000000'})")
            page.reload()
            page.wait_for_selector("body[data-ready]")
            assert page.input_value("#helperUrl") == helper.url
            assert page.input_value("#site") == SITE
            assert page.evaluate("document.getElementById('helperUrl').readOnly")
            assert page.evaluate("document.getElementById('site').readOnly")
            assert not page.evaluate("document.getElementById('token').readOnly")
            for key in ("helperUrl", "site"):
                badge = page.locator(f'[data-key="{key}"] .managed')
                assert badge.is_visible() and badge.text_content() == "fixé par votre service informatique"
            page.close()
            panel = context.new_page()
            panel.goto(browser.extension_url(extension_id, "src/panel/popup.html"))
            panel.wait_for_selector("body[data-ready]")
            assert panel.get_attribute("#message", "data-code") is None, panel.text_content("#message-text")
            assert panel.is_visible("#site-filter") and SITE in panel.text_content("#only-site-label")
            assert results(panel) == ["APPAIRE"], "only the managed site's certificates"
            # « À remettre »: the managed site, no choice offered
            panel.click("#tab-waiting")
            panel.wait_for_function("() => document.body.dataset.waitingReady && "
                                    "document.querySelector('#waiting-summary').dataset.state !== 'busy'")
            assert not panel.is_visible("#waiting-site-box")
            assert panel.text_content("#waiting-site-label") == f"Site : {SITE}"
            assert panel.locator("#waiting-list .result .last-name").all_text_contents() == ["APPAIRE"]
            panel.close()


def test_force_install_from_a_self_hosted_crx(tmp_path: Path) -> None:
    """ExtensionSettings + updates.xml (the shipped templates) + a .crx from ``extension/build --crx``:
    Chromium downloads, verifies and installs it with no --load-extension. The .crx is signed with a
    throwaway key (the real one stays outside the repository), so its id is that key's, not the fixed one."""
    import base64
    import contextlib
    import http.server
    import re
    import shutil
    import threading
    import time

    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
    from test_crx import build, throwaway_key

    from helper.extension_ids import chromium_id

    public = throwaway_key(tmp_path / "throwaway.pem")
    proc, copy = build(tmp_path, "--crx", "--key", str(tmp_path / "throwaway.pem"), "--other-key")
    assert proc.returncode == 0, proc.stderr
    ext_id = chromium_id(base64.b64encode(public).decode())
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(copy / "dist" / "sidep-helper-webmail.crx", served / "sidep-helper-webmail.crx")
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # the shipped templates, with this test's id and addresses
    template = json.loads((ROOT / "packaging/policies/chrome-edge/linux/sidep-helper.json").read_text("utf-8"))
    settings = template["ExtensionSettings"][CHROMIUM_ID]
    settings["update_url"] = f"{base}/updates.xml"
    xml = (ROOT / "packaging/policies/chrome-edge/updates.xml").read_text(encoding="utf-8")
    xml = xml.replace(CHROMIUM_ID, ext_id)
    xml = re.sub(r"codebase='[^']*'", f"codebase='{base}/sidep-helper-webmail.crx'", xml)
    (served / "updates.xml").write_text(xml, encoding="utf-8")
    chromium = browser.ensure_chromium()
    args = [a for a in browser.CHROMIUM_ARGS if a != "--disable-background-networking"]
    with browser.system_policy(f"sidep-helper-test-install-{os.getpid()}.json",
                               {"ExtensionSettings": {ext_id: settings}}):
        try:
            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    str(tmp_path / "profile"), executable_path=str(chromium), headless=False, args=args,
                    ignore_default_args=["--disable-extensions", "--disable-background-networking",
                                         "--disable-component-extensions-with-background-pages"],
                    timeout=20_000)
                try:
                    options = f"chrome-extension://{ext_id}/src/options/options.html"
                    deadline = time.monotonic() + 60
                    while True:  # installed once Chromium has fetched updates.xml, then the .crx
                        page = context.new_page()  # a tab open on the id is closed when it installs
                        try:
                            page.goto(options, timeout=5_000)
                            page.wait_for_selector("body[data-ready]", timeout=5_000)
                            break
                        except PlaywrightError:
                            assert time.monotonic() < deadline, f"not installed; requests: {hits}"
                            with contextlib.suppress(PlaywrightError):
                                page.close()
                            time.sleep(1)
                    assert page.evaluate("chrome.runtime.id") == ext_id
                    manifest = page.evaluate("chrome.runtime.getManifest()")
                    assert "nativeMessaging" in manifest["permissions"]
                    assert base64.b64decode(manifest["key"]) == public
                finally:
                    context.close()
        finally:
            server.shutdown()
            server.server_close()
    assert "/updates.xml" in " ".join(hits) and "/sidep-helper-webmail.crx" in " ".join(hits)
