"""The panel in a real headless Chromium shows the barcode verification and never prints a
certificate whose barcode disagrees with its mail by one click (issue 12).

A real ``sidep-helper serve`` indexes certificates whose PDFs carry real signed Data Matrix and QR
codes (tests/barcodegen.py); printing goes to the CUPS test queue.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import barcodegen as bg
import browser
import pytest
from conftest import Cli, free_port, start, wait_healthy
from cups import CupsPdf, ensure_cups_pdf

SIGNER = bg.Signer.new()
STRANGER = bg.Signer.new(ca="FR09", cert="ZZ99", kid=b"otherkid")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, str, int, dict, CupsPdf]]:
    cups = ensure_cups_pdf()
    root = tmp_path_factory.mktemp("verify-panel")
    home, drop = root / "home", root / "drop"
    home.mkdir(mode=0o700)
    trust = bg.write_trust_list(root / "liste-de-confiance", SIGNER)
    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(days=1)  # inside retention
    specs = bg.verdict_corpus(drop, SIGNER, STRANGER, sampled_at=sampled,
                              integrated_at=sampled + dt.timedelta(hours=3))
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n'
        f'printer = "{cups.queue}"\nbarcode_trust_list = {json.dumps(str(trust))}\n', encoding="utf-8")
    proc = start(home, port)
    cli = Cli(home)
    try:
        wait_healthy(port, proc)
        token = cli.run("token").stdout.strip()
        deadline = time.monotonic() + 60
        while cli.status()["certificates"] < 4 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert cli.status()["certificates"] == 4
        yield cli, token, port, specs, cups
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def panel(setup: tuple, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cli, token, port, specs, cups = setup
    browser.ensure_chromium()
    extension = browser.prepare_extension(tmp_path_factory.mktemp("ext") / "webmail", source=browser.build_extension())
    with browser.extension_browser(extension) as (context, extension_id):
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(browser.extension_url(extension_id, "src/options/options.html"))
        page.wait_for_selector("body[data-ready]")
        page.evaluate("([url, token]) => chrome.storage.local.set({helperUrl: url, token})",
                      [f"http://127.0.0.1:{port}", token])
        page.goto(browser.extension_url(extension_id, "src/panel/popup.html"))
        page.wait_for_selector("body[data-ready]")
        yield page


def _show(page: Any, dossier: str) -> Any:
    page.fill("#q", "")
    page.type("#q", dossier, delay=10)
    page.wait_for_function("d => [...document.querySelectorAll('.result .dossier')].some(e => e.textContent === d)",
                           arg=dossier)
    page.wait_for_timeout(400)  # the debounced search (200 ms) of the last keystroke and its answer
    page.wait_for_function("() => document.querySelector('#summary').dataset.state !== 'busy'")
    return page.locator(".result", has=page.locator(".dossier", has_text=dossier))


def test_mismatch_shows_the_difference_and_prints_only_after_confirmation(setup: tuple, panel: Any) -> None:
    cli, _, _, specs, cups = setup
    item = _show(panel, specs["mismatch"].dossier)
    label = item.locator(".verification-label").text_content()
    assert label == "ATTENTION : le code-barres signé ne correspond pas au courriel"
    assert item.locator(".verification-diffs li").all_text_contents() == ["sexe : courriel « M », code-barres « F »"]
    # One click, or Entrée on the result: nothing is printed, the confirmation is asked.
    item.locator(".print").click()
    assert item.locator(".confirm-box").is_visible()
    assert "Impression bloquée" in item.locator(".feedback").text_content()
    item.locator(".confirm-cancel").click()
    assert not item.locator(".confirm-box").is_visible()
    item.focus()
    panel.keyboard.press("Enter")
    assert item.locator(".confirm-box").is_visible()
    panel.wait_for_timeout(300)
    assert item.get_attribute("data-job") is None
    assert cli.search(specs["mismatch"].dossier)["results"][0]["print_count"] == 0
    started = time.time()
    item.locator(".confirm-print").click()
    panel.wait_for_function("() => ['ok', 'error'].includes(document.querySelector('.result .feedback').dataset.state)"
                            " && !document.querySelector('.result').hasAttribute('aria-busy')")
    assert "Envoyé à l'imprimante" in item.locator(".feedback").text_content(), item.locator(".feedback").text_content()
    cups.wait_for_output(item.get_attribute("data-job"), newer_than=started - 5)
    assert cli.search(specs["mismatch"].dossier)["results"][0]["print_count"] == 1
    audit = cli.run("audit", "export").stdout
    assert "confirmation=mismatch champs=sex" in audit
    assert "ALMEIDA" not in audit.upper()


def test_invalid_signature_asks_too_and_verified_prints_in_one_click(setup: tuple, panel: Any) -> None:
    _, _, _, specs, _ = setup
    invalid = _show(panel, specs["invalid"].dossier)
    assert invalid.locator(".verification-label").text_content().startswith("ATTENTION : signature du code-barres invalide")
    invalid.locator(".print").click()
    assert invalid.locator(".confirm-box").is_visible() and invalid.get_attribute("data-job") is None
    unverifiable = _show(panel, specs["unverifiable"].dossier)
    assert unverifiable.locator(".verification-label").text_content() == "Signature non vérifiable"
    verified = _show(panel, specs["verified"].dossier)
    assert verified.locator(".verification-label").text_content().startswith("Code-barres vérifié")
    assert verified.locator(".verification-diffs li").count() == 0
    verified.locator(".print").click()
    panel.wait_for_function("() => [...document.querySelectorAll('.result')].some(li => li.dataset.job)")
    assert not verified.locator(".confirm-box").is_visible()
