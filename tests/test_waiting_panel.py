"""The « À remettre » tab (issue 11): the site's certificates not yet handed over, oldest first, with the
same card and actions as a search result — in a real headless Chromium against a real ``serve``.

Two sites in the directory, no « Mon site » set: the desk chooses its site in the tab (kept as « Mon
site »). Printing from the tab goes to the CUPS test queue and keeps the certificate in the list (printed
is not handed over); handing it over takes it off the list; the barcode warning shows as in the search.
``GET /api/v1/report/waiting`` is checked against the contract (helper/openapi.json).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import apicontract
import barcodegen as bg
import browser
import mailgen
import pytest
from conftest import Cli, free_port, recent_spec, start, wait_healthy
from cups import ensure_cups_pdf
from mailgen import luhn_finess

from helper.index.store import Store

A, B = luhn_finess("75000051"), luhn_finess("75000052")
SIGNER = bg.Signer.new()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cups = ensure_cups_pdf()
    root = tmp_path_factory.mktemp("waiting-panel")
    home = root / "home"
    home.mkdir(mode=0o700)
    trust = bg.write_trust_list(root / "liste-de-confiance", SIGNER)
    rng = random.Random(5)
    old, new, done, other = (recent_spec(rng, finess=f) for f in (A, A, A, B))
    reissue = mailgen.random_spec(rng, finess=A, dossier=new.dossier, sampled_at=new.sampled_at,  # supersedes « new »
                                  integrated_at=new.integrated_at + dt.timedelta(hours=2), last_name=new.last_name,
                                  first_name=new.first_name, birth_date=new.birth_date)
    mismatch = bg.spec_for(11, finess=A, last_name="D'ALMEIDA")
    messages = [mailgen.make_message(s) for s in (old, new, done, other, reissue)]
    messages.append(mailgen.make_message(replace(mismatch, sex="M"), pdf=bg.certificate_pdf(mismatch, SIGNER)))
    mailgen.write_eml(root / "mail", messages)
    port = free_port()
    cli = Cli(home)
    cli.write_config(f'port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\nprinter = "{cups.queue}"\n'
                     f'barcode_trust_list = {json.dumps(str(trust))}\n[sites]\n"{A}" = "Bercy"\n"{B}" = "Nation"\n')
    assert cli.ingest(root / "mail")["new"] == 6
    # Arrival days: old 3 days ago, mismatch 2, new today; « done » already handed over.
    today = dt.date.today()
    db = sqlite3.connect(home / "index.sqlite3")
    with db:
        for spec, days in ((old, 3), (mismatch, 2), (new, 0), (done, 5)):
            db.execute("UPDATE certificates SET added_at = ? || substr(added_at, 11) WHERE dossier = ?",
                       ((today - dt.timedelta(days=days)).isoformat(), spec.dossier))
    db.close()
    store = Store(home)
    try:
        [superseded] = [r[0] for r in store.db.execute(
            "SELECT id FROM certificates WHERE dossier = ? AND superseded = 1", (new.dossier,))]
        store.mark_delivered(store.db.execute("SELECT id FROM certificates WHERE dossier = ?",
                                              (done.dossier,)).fetchone()[0], "AB")
    finally:
        store.close()
    proc = start(home, port, "--no-watch", stderr_to=root / "serve.log")
    try:
        wait_healthy(port, proc)
        yield {"cli": cli, "port": port, "token": cli.run("token").stdout.strip(), "cups": cups,
               "order": [old.dossier, mismatch.dossier, new.dossier], "other": other.dossier, "log": root / "serve.log",
               "superseded": superseded,
               "names": [s.last_name for s in (old, new, done, other, mismatch)]}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get(setup: dict[str, Any], query: str, auth: bool = True) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{setup['port']}/api/v1/report/waiting{query}")
    if auth:
        request.add_header("Authorization", f"Bearer {setup['token']}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_waiting_api_lists_a_site_oldest_first_as_the_contract_says(setup: dict[str, Any]) -> None:
    status, body = _get(setup, f"?site={A}")
    assert status == 200
    apicontract.validate(body, "/api/v1/report/waiting", "get", 200)
    assert [c["dossier"] for c in body["results"]] == setup["order"]
    assert (body["site"], body["name"], body["total"]) == (A, "Bercy", 3)
    assert {c["site_name"] for c in body["results"]} == {"Bercy"}
    assert setup["superseded"] not in [c["id"] for c in body["results"]]  # replaced by its re-issue
    received = [c["received_at"][:10] for c in body["results"]]
    assert received == [(dt.date.today() - dt.timedelta(days=n)).isoformat() for n in (3, 2, 0)]
    assert body["sites"] == [{"finess": A, "name": "Bercy"}, {"finess": B, "name": "Nation"}]
    status, every = _get(setup, "")
    assert status == 200 and every["site"] is None and every["total"] == 4
    apicontract.validate(every, "/api/v1/report/waiting", "get", 200)
    assert setup["other"] in [c["dossier"] for c in every["results"]]
    page = _get(setup, f"?site={A}&limit=1")[1]
    assert page["total"] == 3 and [c["dossier"] for c in page["results"]] == setup["order"][:1]
    status, body = _get(setup, "?site=12")
    assert status == 400 and body["error"] == "bad_site"
    apicontract.validate(body, "/api/v1/report/waiting", "get", 400)
    assert _get(setup, f"?site={A}", auth=False)[0] == 401


@pytest.fixture(scope="module")
def panel(setup: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser.ensure_chromium()
    extension = browser.prepare_extension(tmp_path_factory.mktemp("ext") / "webmail", source=browser.build_extension())
    with browser.extension_browser(extension) as (context, extension_id):
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(browser.extension_url(extension_id, "src/options/options.html"))
        page.wait_for_selector("body[data-ready]")
        page.evaluate("([url, token]) => chrome.storage.local.set({helperUrl: url, token, site: ''})",
                      [f"http://127.0.0.1:{setup['port']}", setup["token"]])
        page.goto(browser.extension_url(extension_id, "src/panel/popup.html"))
        page.wait_for_selector("body[data-ready]")
        yield page


def _dossiers(page: Any) -> list[str]:
    return page.locator("#waiting-list .result .dossier").all_text_contents()


def _settled(page: Any) -> None:
    page.wait_for_function("() => document.querySelector('#waiting-summary').dataset.state !== 'busy'")


def _idle(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('#waiting-list [aria-busy]')")


def test_tab_lists_the_sites_waiting_certificates_and_acts_on_them(setup: dict[str, Any], panel: Any) -> None:
    page, cli, cups = panel, setup["cli"], setup["cups"]
    assert page.locator("#tab-waiting").text_content() == "À remettre"
    # Keyboard: from the « Rechercher » tab, → opens « À remettre ».
    page.focus("#tab-search")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-waiting"
    assert page.locator("#waiting-panel").is_visible() and not page.locator("#search-panel").is_visible()
    _settled(page)
    # Two sites, no « Mon site »: the desk chooses; the choice is kept as « Mon site ».
    assert page.locator("#waiting-summary").text_content().startswith("Choisissez votre site")
    assert page.locator("#waiting-site option").all_text_contents() == [
        "— choisir votre site —", f"{A} — Bercy", f"{B} — Nation"]
    page.focus("#waiting-site")
    page.select_option("#waiting-site", A)
    page.wait_for_function("n => document.querySelectorAll('#waiting-list .result').length === n", arg=3)
    _settled(page)
    assert _dossiers(page) == setup["order"]  # oldest first; the one handed over is not there
    assert page.locator("#waiting-summary").text_content() == "3 certificat(s) à remettre, du plus ancien au plus récent"
    assert page.evaluate("chrome.storage.local.get('site')") == {"site": A}
    assert page.locator("#only-site-label").text_content() == f"Mon site seulement ({A})"
    if os.environ.get("SIDEP_SCREENSHOTS") == "1":
        page.screenshot(path=str(browser.EXTENSION / "screenshots" / "panel-waiting.png"))
    first, mismatch = (page.locator("#waiting-list .result").nth(i) for i in (0, 1))
    assert mismatch.locator(".verification-label").text_content() == \
        "ATTENTION : le code-barres signé ne correspond pas au courriel"
    assert first.locator(".site").text_content() == f"{A} (Bercy)"
    three_days = (dt.date.today() - dt.timedelta(days=3)).strftime("%d/%m/%Y")
    assert first.locator(".received").text_content() == f"{three_days} (il y a 3 jours)"
    assert page.locator("#waiting-list .result .received").nth(2).text_content().endswith("(aujourd'hui)")
    # ↓ from the tab to the oldest, Entrée prints it; it stays (printed, not handed over).
    page.focus("#tab-waiting")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.id") == first.get_attribute("data-id")
    started = time.time()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#waiting-list .result .feedback').dataset.state === 'ok'")
    assert first.locator(".feedback").text_content().startswith("Envoyé à l'imprimante")
    assert first.locator(".state").text_content() == "imprimé (1 fois)"
    cups.wait_for_output(first.get_attribute("data-job"), newer_than=started - 5)
    assert len(_dossiers(page)) == 3
    # ↓ then Entrée on the barcode mismatch: nothing printed, the confirmation is asked.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert mismatch.locator(".confirm-box").is_visible() and mismatch.get_attribute("data-job") is None
    mismatch.locator(".confirm-cancel").click()
    # Hand the oldest over with initials + Entrée: the count drops, « Annuler » is offered.
    first.locator(".initials").fill("MD")
    first.locator(".initials").press("Enter")
    _idle(page)
    assert first.locator(".feedback").text_content() == "Remise enregistrée"
    assert page.locator("#waiting-summary").text_content() == "2 certificat(s) à remettre, du plus ancien au plus récent"
    assert first.locator(".undo").is_visible()
    # Undo, then hand over again: back to 3, then 2.
    first.locator(".undo").click()
    _idle(page)
    assert page.locator("#waiting-summary").text_content().startswith("3 certificat(s)")
    first.locator(".deliver").click()
    _idle(page)
    # Loaded again: it is gone from the list (and from the API's list).
    page.click("#waiting-refresh")
    page.wait_for_function("n => document.querySelectorAll('#waiting-list .result').length === n", arg=2)
    assert _dossiers(page) == setup["order"][1:]
    assert [c["dossier"] for c in _get(setup, f"?site={A}")[1]["results"]] == setup["order"][1:]
    # Échap on a card goes back to the tab; typing a letter starts a search in the « Rechercher » tab.
    page.locator("#waiting-list .result").first.focus()
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "tab-waiting"
    page.locator("#waiting-list .result").first.focus()
    page.keyboard.press("d")
    assert page.locator("#search-panel").is_visible() and page.input_value("#q") == "d"
    page.wait_for_function("() => document.querySelector('#summary').dataset.state !== 'busy'")
    assert page.locator("#results .result").count() > 0
    assert not page.locator("#results .received-trait").first.is_visible()  # a search result says no arrival
    # Nothing of the patients in the service's log.
    log = setup["log"].read_text(encoding="utf-8", errors="replace")
    assert not any(name in log for name in setup["names"]) and "Traceback" not in log
    assert cli.status()["certificates"] == 6
