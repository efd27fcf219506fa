"""Zero-touch pairing in a real headless Chromium: nothing typed in the options, ever.

The unpacked webmail extension (its fixed id, from the committed manifest key), a real
``sidep-helper serve``, and the pairing host declared in Chromium's per-user folder for the test's
profile: ``<user-data-dir>/NativeMessagingHosts/fr.sidep_helper.pairing.json`` (Chromium on Linux
reads per-user hosts there, next to the system folder /etc/chromium/native-messaging-hosts). The
manifest points at a wrapper script that runs ``python -m helper.service.pairing`` with the test's
data folder, as ``sidep-helper-pairing`` would with the user's.

Then: the first panel finds a certificate; ``sidep-helper token --rotate`` heals by itself; a stopped
helper is started by the host; without the host the panel explains in French what to do.
(test_extension_policy.py: the same with values set by IT through policy.)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import browser
import pytest
from conftest import Cli
from pairingenv import Helper, declare_host, results, running_helper, started_by_host

from helper.extension_ids import CHROMIUM_ID


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    with running_helper(tmp_path_factory.mktemp("pairing")) as service:
        yield service


@dataclass
class Browser:
    context: Any
    extension_id: str
    host_manifest: Path

    def page(self, path: str) -> Any:
        page = self.context.new_page()
        page.goto(browser.extension_url(self.extension_id, path))
        page.wait_for_selector("body[data-ready]")
        return page

    def worker(self) -> Any:
        """The background service worker: reads storage without opening a page (pages pair)."""
        return self.context.service_workers[0]

    def storage(self) -> dict[str, Any]:
        return self.worker().evaluate("chrome.storage.local.get(null)")


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory, helper: Helper) -> Iterator[Browser]:
    browser.ensure_chromium()
    extension = browser.build_extension()
    base = tmp_path_factory.mktemp("chromium")
    profile = base / "profile"
    manifest = declare_host(profile, helper.home)
    with browser.extension_browser(extension, user_data_dir=profile) as (context, extension_id):
        context.set_default_timeout(20_000)
        yield Browser(context, extension_id, manifest)


def test_the_unpacked_extension_has_the_fixed_id(chrome: Browser) -> None:
    assert chrome.extension_id == CHROMIUM_ID


def test_first_panel_finds_a_certificate_with_nothing_typed(chrome: Browser, helper: Helper) -> None:
    assert "token" not in chrome.storage()
    panel = chrome.page("src/panel/popup.html")
    assert panel.get_attribute("#message", "data-code") is None, panel.text_content("#message-text")
    assert "APPAIRE" in results(panel)
    stored = chrome.storage()
    assert stored["token"] == helper.token and stored["helperUrl"] == helper.url and stored["pairedAt"]
    panel.close()
    options = chrome.page("src/options/options.html")
    assert options.is_visible("#paired")
    assert "appairé automatiquement" in options.text_content("#paired")
    assert options.input_value("#helperUrl") == helper.url
    options.close()


def test_token_rotation_heals_by_itself(chrome: Browser, helper: Helper) -> None:
    old = helper.token
    rotated = Cli(helper.home).run("token", "--rotate").stdout.strip()
    assert rotated != old and rotated == helper.token
    panel = chrome.page("src/panel/popup.html")
    assert panel.get_attribute("#message", "data-code") is None, panel.text_content("#message-text")
    panel.fill("#q", "appaire")
    panel.wait_for_function("() => document.querySelectorAll('.result').length === 1"
                            " && document.querySelector('#summary').dataset.state === 'results'")
    assert results(panel) == ["APPAIRE"]
    assert chrome.storage()["token"] == rotated
    panel.close()


def test_a_stopped_helper_is_started_by_the_host(chrome: Browser, helper: Helper) -> None:
    assert helper.proc is not None
    helper.proc.send_signal(signal.SIGTERM)
    helper.proc.wait(timeout=20)
    helper.proc = None
    panel = chrome.page("src/panel/popup.html")
    assert panel.get_attribute("#message", "data-code") is None, panel.text_content("#message-text")
    assert "APPAIRE" in results(panel)
    assert len(started_by_host(helper.home)) == 1, "the host started sidep-helper serve"
    panel.close()


def test_without_the_host_the_panel_says_what_to_do(chrome: Browser) -> None:
    chrome.host_manifest.rename(chrome.host_manifest.with_suffix(".off"))
    try:
        chrome.worker().evaluate("chrome.storage.local.clear()")
        panel = chrome.page("src/panel/popup.html")
        assert panel.get_attribute("#message", "data-code") == "not_paired"
        text = panel.text_content("#message-text")
        assert "n'a pas pu être appairé automatiquement" in text
        assert "Installez ou réparez sidep-helper" in text and "collez dans les réglages" in text
        assert panel.text_content("#message-action") == "Ouvrir les réglages"
        assert panel.locator(".result").count() == 0
        panel.close()
        options = chrome.page("src/options/options.html")
        assert options.input_value("#token") == "" and not options.is_visible("#paired")
        options.close()
    finally:
        chrome.host_manifest.with_suffix(".off").rename(chrome.host_manifest)
