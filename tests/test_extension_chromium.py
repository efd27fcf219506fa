"""The webmail extension in a real headless Chromium, against a real ``sidep-helper serve`` and CUPS.

One browser, one helper and one fake Roundcube for the module (the tests run in order and share
them): options page and connection test, search as you type (no accents), homonyms, markup shown
as text, the barcode scanner, keyboard-only printing (the cups-pdf output is checked), hand-over and
undo, the PDF, the content script's « Imprimer le certificat » button in a Roundcube message (show
page and preview frame), and the French error messages (wrong token, another program on the port,
helper stopped). ``web-ext lint`` and the extension's own Node tests run here too, so that
``bash tests/run`` covers them.

Screenshots of the panel go to a temporary folder; with ``SIDEP_SCREENSHOTS=1`` they refresh
``extension/screenshots/`` (committed, shown in the README).
"""

from __future__ import annotations

import datetime as dt
import html
import http.server
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import browser
import mailgen
import pytest
from conftest import Cli, free_port, start, wait_healthy
from cups import CupsPdf, ensure_cups_pdf
from pypdf import PdfReader

try:
    import playwright.sync_api  # noqa: F401
except ImportError:  # pragma: no cover - the test extra brings it
    pytest.fail("the extension tests need the Python package playwright (test extra)", pytrace=False)

SITE = mailgen.luhn_finess("75071218")
OTHER_SITE = mailgen.luhn_finess("13055501")
MARKUP = "<img src=x onerror=alert(1)>"
SCREENSHOTS = (browser.EXTENSION / "screenshots") if os.environ.get("SIDEP_SCREENSHOTS") == "1" else None


def recent(rng: random.Random, **overrides: Any) -> mailgen.CertSpec:
    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(days=1, hours=rng.randrange(12))
    overrides.setdefault("sampled_at", sampled)
    overrides.setdefault("integrated_at", overrides["sampled_at"] + dt.timedelta(hours=3))
    overrides.setdefault("finess", SITE)
    return mailgen.random_spec(rng, **overrides)


@dataclass
class Corpus:
    homonyms: list[mailgen.CertSpec]
    accented: mailgen.CertSpec
    markup: mailgen.CertSpec
    scanned: mailgen.CertSpec
    other_site: mailgen.CertSpec
    reissued: list[mailgen.CertSpec]
    in_webmail: mailgen.CertSpec
    noise: list[mailgen.CertSpec] = field(default_factory=list)


def make_corpus() -> Corpus:
    rng = random.Random(20240601)
    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(days=2)
    reissued = [
        recent(rng, last_name="REEMIS", first_name="Jules", sex="M", birth_date=dt.date(1960, 3, 3), dossier=f"{sampled:%y%m%d}0777", sampled_at=sampled,
               integrated_at=sampled + dt.timedelta(hours=h), result="NEGATIF")
        for h in (2, 20)
    ]
    return Corpus(
        homonyms=[
            recent(rng, last_name="MARTIN", first_name="Émilie", sex="F", birth_date=dt.date(1980, 2, 1)),
            recent(rng, last_name="MARTIN", first_name="Emilie", sex="F", birth_date=dt.date(1991, 7, 14)),
        ],
        accented=recent(rng, last_name="LEFÈVRE", first_name="Zoé", sex="F", birth_date=dt.date(1975, 5, 9),
                        result="POSITIF"),
        markup=recent(rng, last_name=MARKUP, first_name="Balise"),
        scanned=recent(rng, last_name="DOUCHETTE", first_name="Léon", dossier="2406014242"),
        other_site=recent(rng, last_name="AUTRESITE", first_name="Paul", finess=OTHER_SITE),
        reissued=reissued,
        in_webmail=recent(rng, last_name="WEBMAIL", first_name="Rose", dossier="2406019090"),
        noise=[recent(rng) for _ in range(8)],
    )


# --- the helper ---------------------------------------------------------------------------------------------

@dataclass
class Helper:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    cli: Cli
    home: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def search(self, q: str) -> dict[str, Any]:
        return self.cli.search(q)


@pytest.fixture(scope="module")
def cups() -> CupsPdf:
    return ensure_cups_pdf()


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus()


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory, cups: CupsPdf, corpus: Corpus) -> Iterator[Helper]:
    base = tmp_path_factory.mktemp("extension-e2e")
    home = base / "home"
    home.mkdir()
    drop = base / "Téléchargements"
    drop.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n'
        f'printer = "{cups.queue}"\n[sites]\n"{SITE}" = "Site des Lilas"\n',
        encoding="utf-8",
    )
    specs = [*corpus.homonyms, corpus.accented, corpus.markup, corpus.scanned, corpus.other_site,
             *corpus.reissued, *corpus.noise]
    mailgen.write_eml(drop, [mailgen.make_message(s) for s in specs])
    proc = start(home, port)
    cli = Cli(home)
    service = Helper(proc, port, "", cli, home)
    try:
        wait_healthy(port, proc)
        service.token = cli.run("token").stdout.strip()
        deadline = time.monotonic() + 20
        while cli.status()["certificates"] < len(specs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cli.status()["certificates"] == len(specs)
        yield service
    finally:
        service.stop()


# --- a Roundcube look-alike, for the content script ------------------------------------------------------

SESSION = "sidep-test-session"


def roundcube_page(subject: str, uid: int, action: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Roundcube Webmail :: {html.escape(subject)}</title></head>
<body class="task-mail action-{action}">
<div id="layout"><div id="layout-content" class="selected">
<div id="messagestack"></div>
<div id="message-header">
<h2 class="subject"><span class="voice">Objet</span>{html.escape(subject)}</h2>
<div class="header"><span class="from">noreply.sidep@enovacom.easycrypt.fr</span></div>
</div>
<div id="messagebody"><div class="message-part"><pre>Nom : ...</pre></div></div>
</div></div>
<script>var rcmail = {{set_env: function () {{}}}};
rcmail.set_env({{"task":"mail","action":"{action}","uid":"{uid}","mailbox":"INBOX"}});</script>
</body></html>"""


def roundcube_list(uid: int) -> str:
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Roundcube Webmail :: Courrier entrant</title></head>
<body class="task-mail action-list">
<div id="layout"><div id="layout-list"><table id="messagelist"><tbody>
<tr><td class="subject"><a href="./?_task=mail&amp;_mbox=INBOX&amp;_uid={uid}&amp;_action=show">[Projet SI-DEP] Certificat de test : liste</a></td></tr>
</tbody></table></div>
<div id="layout-content"><iframe id="messagecontframe" name="messagecontframe" width="100%" height="400"
 src="./?_task=mail&amp;_caps=pdf%3D1&amp;_uid={uid}&amp;_mbox=INBOX&amp;_framed=1&amp;_action=preview"></iframe></div>
</div></body></html>"""


class FakeRoundcube:
    """Serves a message page, a list page with the preview frame, and ?_action=viewsource, behind a
    session cookie (so the content script must send the user's session, same-origin)."""

    def __init__(self, messages: dict[int, bytes]) -> None:
        self.messages = messages
        self.sources: list[int] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                action = query.get("_action", ["list"])[0]
                uid = int(query.get("_uid", ["0"])[0] or 0)
                if action == "viewsource":
                    if f"roundcube_sessid={SESSION}" not in self.headers.get("Cookie", ""):
                        self._send(401, b"session expired", "text/plain")
                        return
                    owner.sources.append(uid)
                    raw = owner.messages[uid].replace(b"\r\n", b"\n")  # Roundcube's "formatted" source
                    self._send(200, raw, "text/plain; charset=UTF-8")
                    return
                if action in ("show", "preview") and uid in owner.messages:
                    subject = mailgen._subject_of(owner.messages[uid]) or ""
                    self._send(200, roundcube_page(subject, uid, action).encode(), "text/html; charset=UTF-8")
                    return
                self._send(200, roundcube_list(min(owner.messages)).encode(), "text/html; charset=UTF-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", f"roundcube_sessid={SESSION}; path=/; HttpOnly; SameSite=Lax")
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webmail(corpus: Corpus) -> Iterator[FakeRoundcube]:
    other = mailgen.make_message(recent(random.Random(9)), subject="Réunion de service jeudi")
    server = FakeRoundcube({5: mailgen.make_message(corpus.in_webmail), 6: other})
    yield server
    server.close()


# --- the browser ----------------------------------------------------------------------------------------------

@dataclass
class Browser:
    context: Any
    extension_id: str
    shots: Path

    def url(self, path: str) -> str:
        return browser.extension_url(self.extension_id, path)

    def panel(self) -> Any:
        page = self.context.new_page()
        page.set_viewport_size({"width": 600, "height": 600})
        page.goto(self.url("src/panel/popup.html"))
        page.wait_for_selector("body[data-ready]")
        return page

    def shot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"))


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory, webmail: FakeRoundcube) -> Iterator[Browser]:
    browser.ensure_chromium()
    built = browser.build_extension()
    extension = browser.prepare_extension(tmp_path_factory.mktemp("extension") / "webmail",
                                          [f"{webmail.url}/*"], source=built)
    shots = SCREENSHOTS or tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with browser.extension_browser(extension) as (context, extension_id):
        context.set_default_timeout(15_000)
        yield Browser(context, extension_id, shots)


def result_for(page: Any, spec: mailgen.CertSpec) -> Any:
    return page.locator(".result", has=page.locator(".dossier", has_text=spec.dossier))


def search(page: Any, text: str) -> None:
    page.fill("#q", "")
    page.type("#q", text, delay=15)
    page.wait_for_function(
        "q => document.querySelector('#summary').dataset.state !== 'busy'"
        " && document.querySelector('#q').value === q", arg=text)
    page.wait_for_timeout(300)  # the debounced search (200 ms) and its answer
    page.wait_for_function("() => document.querySelector('#summary').dataset.state !== 'busy'")


# --- tests ------------------------------------------------------------------------------------------------------

def test_options_page_connects_to_the_helper(chrome: Browser, helper: Helper) -> None:
    page = chrome.context.new_page()
    page.set_viewport_size({"width": 760, "height": 700})
    page.goto(chrome.url("src/options/options.html"))
    page.wait_for_selector("body[data-ready]")
    assert page.input_value("#helperUrl") == "http://127.0.0.1:51789"  # the default
    page.fill("#helperUrl", helper.url)
    page.fill("#token", f"  {helper.token}\n")
    page.fill("#site", SITE)
    page.click("#test")
    page.wait_for_function("() => document.querySelector('#result').dataset.state === 'ok'")
    text = page.text_content("#result")
    assert "Connexion réussie" in text and "sidep-helper" in text and "Imprimante : sidep-test-pdf" in text
    stored = page.evaluate("chrome.storage.local.get(null)")
    assert stored["token"] == helper.token and stored["helperUrl"] == helper.url and stored["site"] == SITE
    chrome.shot(page, "options")
    page.close()


def test_search_as_you_type_without_accents(chrome: Browser, helper: Helper, corpus: Corpus) -> None:
    page = chrome.panel()
    assert page.evaluate("document.activeElement.id") == "q", "the search box has the focus on open"
    assert page.get_attribute("#summary", "data-state") == "recent"
    assert page.locator(".result").count() >= 10
    search(page, "lefevre zo")
    item = result_for(page, corpus.accented)
    assert page.locator(".result").count() == 1
    assert item.locator(".last-name").text_content() == "LEFÈVRE"
    assert item.locator(".first-name").text_content() == "Zoé"
    assert item.locator(".birth").text_content() == "09/05/1975"
    assert item.locator(".sex").text_content() == "F"
    assert item.locator(".site").text_content() == f"{SITE} (Site des Lilas)"
    assert item.locator(".result-value").text_content() == "Positif"
    assert item.locator(".state").text_content() == "nouveau"
    assert corpus.accented.sampled_at.strftime("%d/%m/%Y à %H:%M") == item.locator(".sampled").text_content()
    chrome.shot(page, "panel-result")
    # "mon site" filter (default on), then all sites
    search(page, "autresite")
    assert page.locator(".result").count() == 0
    page.uncheck("#only-site")
    page.wait_for_function("() => document.querySelectorAll('.result').length === 1")
    page.check("#only-site")
    page.close()


def test_homonyms_are_flagged(chrome: Browser, corpus: Corpus) -> None:
    page = chrome.panel()
    search(page, "martin emilie")
    items = page.locator(".result")
    assert items.count() == 2
    for i in range(2):
        assert "homonym" in (items.nth(i).get_attribute("class") or "")
        assert items.nth(i).locator(".homonym-badge").is_visible()
    births = sorted(items.nth(i).locator(".birth").text_content() for i in range(2))
    assert births == ["01/02/1980", "14/07/1991"]
    chrome.shot(page, "panel-homonyms")
    search(page, "reemis jules")
    assert page.locator(".result.superseded").count() == 1
    assert "remplacé par un certificat plus récent" in page.text_content(".result.superseded .superseded-badge")
    assert page.locator(".result .homonym-badge:visible").count() == 0, "same person, same birth date"
    page.close()


def test_markup_in_a_name_is_shown_as_text(chrome: Browser, corpus: Corpus) -> None:
    page = chrome.panel()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    search(page, "balise")
    item = page.locator(".result")
    assert item.count() == 1
    assert item.locator(".last-name").text_content() == MARKUP.upper() or item.locator(".last-name").text_content() == MARKUP
    assert page.locator("#results img").count() == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    page.wait_for_timeout(200)
    assert dialogs == []
    page.close()


def test_scanner_then_keyboard_only_print(chrome: Browser, helper: Helper, corpus: Corpus, cups: CupsPdf) -> None:
    page = chrome.panel()
    page.fill("#q", "lefevre")  # a previous search, replaced by the scan
    page.wait_for_timeout(300)
    page.focus("#q")
    page.keyboard.press("Control+A")
    page.keyboard.type(corpus.scanned.dossier, delay=3)  # a barcode scanner types fast...
    page.keyboard.press("Enter")  # ...then Enter
    page.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('result')")
    focused = page.evaluate("document.activeElement.querySelector('.dossier').textContent")
    assert focused == corpus.scanned.dossier
    assert page.locator(".result").count() == 1
    started = time.time()
    page.keyboard.press("Enter")  # Entrée = Imprimer
    item = result_for(page, corpus.scanned)
    page.wait_for_function("() => document.querySelector('.result').dataset.job")
    job = item.get_attribute("data-job")
    assert item.locator(".state").text_content() == "imprimé (1 fois)"
    assert "Envoyé à l'imprimante sidep-test-pdf" in item.locator(".feedback").text_content()
    assert page.evaluate("document.activeElement.classList.contains('result')"), "the focus stays on the result"
    chrome.shot(page, "panel-printed")
    printed = cups.wait_for_output(job, newer_than=started - 5)
    text = "".join(p.extract_text() or "" for p in PdfReader(printed).pages)
    assert corpus.scanned.dossier in text
    # ↓/↑ and Escape
    search(page, "martin")
    page.keyboard.press("ArrowDown")
    first = page.evaluate("document.activeElement.dataset.id")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.dataset.id")
    assert first != second
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.dataset.id") == first
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "q"
    # a new scan while a result has the focus starts a new search
    page.keyboard.press("ArrowDown")
    page.keyboard.type(corpus.accented.dossier, delay=3)
    page.keyboard.press("Enter")
    page.wait_for_function("d => document.activeElement.querySelector"
                           "&& document.activeElement.querySelector('.dossier')?.textContent === d",
                           arg=corpus.accented.dossier)
    assert page.input_value("#q") == corpus.accented.dossier
    page.close()


def test_handed_over_with_initials_then_undone(chrome: Browser, corpus: Corpus) -> None:
    page = chrome.panel()
    search(page, corpus.scanned.dossier)
    item = result_for(page, corpus.scanned)
    item.locator(".initials").fill("MB")
    item.locator(".deliver").click()
    page.wait_for_function("() => document.querySelector('.result').dataset.state === 'delivered'")
    state = item.locator(".state").text_content()
    assert state.startswith("remis le ") and state.endswith(" par MB"), state
    assert item.locator(".undo").is_visible() and not item.locator(".deliver").is_visible()
    chrome.shot(page, "panel-delivered")
    item.locator(".undo").click()
    page.wait_for_function("() => document.querySelector('.result').dataset.state === 'printed'")
    assert item.locator(".state").text_content() == "imprimé (1 fois)"
    assert "Remise annulée" in item.locator(".feedback").text_content()
    page.close()


def test_pdf_opens_in_an_extension_page(chrome: Browser, corpus: Corpus) -> None:
    page = chrome.panel()
    search(page, "lefevre zoe")
    with chrome.context.expect_page() as opened:
        result_for(page, corpus.accented).locator(".pdf").click()
    viewer = opened.value
    viewer.wait_for_selector("body[data-ready='1']")
    assert viewer.url.startswith(chrome.url("src/viewer/pdf.html?id="))
    src = viewer.get_attribute("#pdf", "src")
    assert src.startswith(f"blob:chrome-extension://{chrome.extension_id}/")
    size = viewer.evaluate("async (u) => (await (await fetch(u)).blob()).size", src)
    assert size > 1000
    assert "token" not in viewer.url.lower()
    viewer.close()
    page.close()


def test_nothing_found_says_what_to_try(chrome: Browser) -> None:
    page = chrome.panel()
    search(page, "zzyzxqwv")
    summary = page.text_content("#summary")
    assert "Aucun certificat trouvé pour « zzyzxqwv »" in summary
    assert "orthographe" in summary and "date de naissance" in summary
    chrome.shot(page, "panel-nothing-found")
    page.close()


def test_purged_dossier_sends_to_the_mailbox(chrome: Browser, helper: Helper) -> None:
    # A certificate already past the retention (90 days) when it arrives: not stored, a tombstone left.
    sampled = dt.datetime.now().replace(microsecond=0) - dt.timedelta(days=120)
    old = mailgen.random_spec(random.Random(77), last_name="PÉRIMÉ-PANNEAU", sampled_at=sampled,
                              integrated_at=sampled + dt.timedelta(hours=3), finess=SITE)
    before = helper.cli.status()["expired"]
    mailgen.write_eml(helper.home.parent / "Téléchargements", [mailgen.make_message(old)], prefix="perime")
    deadline = time.monotonic() + 20
    while helper.cli.status()["expired"] == before and time.monotonic() < deadline:
        time.sleep(0.2)
    page = chrome.panel()
    search(page, old.dossier)
    summary = page.text_content("#summary")
    assert "supprimé automatiquement après 90 jours" in summary and "boîte aux lettres MSSanté" in summary
    assert "orthographe" not in summary and page.locator(".result").count() == 0
    chrome.shot(page, "panel-purged")
    page.close()


def test_webmail_button_prints_the_displayed_certificate(chrome: Browser, helper: Helper, webmail: FakeRoundcube,
                                                          corpus: Corpus, cups: CupsPdf) -> None:
    page = chrome.context.new_page()
    page.set_viewport_size({"width": 900, "height": 500})
    page.goto(f"{webmail.url}/?_task=mail&_mbox=INBOX")  # the session cookie
    page.goto(f"{webmail.url}/?_task=mail&_mbox=INBOX&_uid=5&_action=show")
    button = page.locator("#sidep-helper-print")
    button.wait_for()
    assert button.text_content() == "Imprimer le certificat"
    deadline = time.monotonic() + 10
    while helper.search(corpus.in_webmail.dossier)["total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # pushed on display: the helper knows it before any click
    assert helper.search(corpus.in_webmail.dossier)["total"] == 1
    started = time.time()
    button.click()
    page.wait_for_function("() => document.querySelector('#sidep-helper-status').dataset.state === 'ok'")
    assert page.text_content("#sidep-helper-status") == "Certificat envoyé à l'imprimante"
    cert = helper.search(corpus.in_webmail.dossier)["results"][0]
    assert cert["print_count"] == 1
    name = re.compile(rf"certificat-{cert['id']}(?:_[^-]*)?-job_\d+\.pdf")  # cups-pdf may add "__US"
    deadline = time.monotonic() + 30
    while not [p for p in cups.out_dir.glob("certificat-*.pdf") if name.fullmatch(p.name) and p.stat().st_mtime >= started - 1]:
        assert time.monotonic() < deadline, f"nothing printed for certificate {cert['id']} in {cups.out_dir}"
        time.sleep(0.2)
    # the preview frame of the mail list (elastic skin); nothing in the list itself
    page.goto(f"{webmail.url}/?_task=mail&_mbox=INBOX")
    frame = page.frame_locator("#messagecontframe")
    frame.locator("#sidep-helper-print").wait_for()
    assert page.locator("#sidep-helper-print").count() == 0
    # a message that is not a certificate gets no button
    page.goto(f"{webmail.url}/?_task=mail&_mbox=INBOX&_uid=6&_action=show")
    page.wait_for_timeout(800)
    assert page.locator("#sidep-helper-print").count() == 0
    assert 6 not in webmail.sources
    page.close()


def _set(page: Any, **values: str) -> None:
    page.evaluate("v => chrome.storage.local.set(v)", values)


def test_error_messages(chrome: Browser, helper: Helper, webmail: FakeRoundcube) -> None:
    page = chrome.panel()
    try:
        _set(page, token="pas-le-bon-jeton")
        page.reload()
        page.wait_for_selector("body[data-ready]")
        assert page.get_attribute("#message", "data-code") == "wrong_token"
        assert "Jeton refusé" in page.text_content("#message-text")
        assert page.text_content("#message-action") == "Ouvrir les réglages"
        chrome.shot(page, "panel-error-token")

        _set(page, token=helper.token, helperUrl=webmail.url)  # a web server, not sidep-helper
        page.reload()
        page.wait_for_selector("body[data-ready]")
        assert page.get_attribute("#message", "data-code") == "other_program"
        assert "Un autre programme que sidep-helper répond" in page.text_content("#message-text")
        chrome.shot(page, "panel-error-other-program")

        _set(page, helperUrl=helper.url)
        helper.stop()
        page.reload()
        page.wait_for_selector("body[data-ready]")
        assert page.get_attribute("#message", "data-code") == "helper_not_running"
        message = page.text_content("#message-text")
        assert "sidep-helper n'est pas lancé" in message and helper.url in message
        assert page.text_content("#message-action") == "Réessayer"
        assert page.locator(".result").count() == 0
        chrome.shot(page, "panel-error-not-running")
    finally:
        page.close()


# --- the extension's own checks ----------------------------------------------------------------------------

def test_extension_unit_tests() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the extension"
    # Files named one by one: Node 20 expands a folder, Node >= 22 reads arguments as globs only.
    files = sorted(str(p.relative_to(browser.EXTENSION)) for p in (browser.EXTENSION / "test").glob("*.test.mjs"))
    proc = subprocess.run([node, "--test", "--test-reporter=tap", *files], cwd=browser.EXTENSION, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "# fail 0" in proc.stdout


def test_web_ext_lint_reports_no_error() -> None:
    """Mozilla's linter (the one addons.mozilla.org runs) on the Firefox and Thunderbird packages."""
    browser.ensure_node_modules()
    dist = browser.built_dist()
    web_ext = browser.EXTENSION / "node_modules" / ".bin" / "web-ext"
    runs = {
        target: subprocess.Popen([str(web_ext), "lint", "--source-dir", str(dist / target), "--output", "json",
                                  "--no-input"], cwd=browser.EXTENSION, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        for target in ("webmail", "thunderbird")
    }
    for target, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        report = json.loads(out)
        errors = [f"{e['code']}: {e['message']}" for e in report["errors"]]
        assert errors == [], f"{target}: {errors}"
        assert report["summary"]["errors"] == 0, err
