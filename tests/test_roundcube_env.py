"""The webmail test environment itself (tests/roundcube.py): real Dovecot, real Roundcube, real Chromium.

These tests also pin down the Roundcube 1.6 (elastic) page structure that the webmail extension's content
script relies on: if a Roundcube update changes it, they say so here before the extension tests fail.
"""

from __future__ import annotations

import base64
import email
import email.policy
import random
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import mailgen
import pytest
from browser import chromium_running
from roundcube import (
    CHROMIUM_ARGS,
    Webmail,
    chromium_host_rules,
    ensure_chromium,
    ensure_playwright,
    ensure_roundcube,
)


@pytest.fixture(scope="session")
def webmail() -> Iterator[Webmail]:
    wm = ensure_roundcube()
    yield wm
    wm.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Playwright's sync API for this module only.

    One sync Playwright may run at a time in a process: the browser fixtures of every test module are
    module-scoped, so that one module's instance is stopped before the next module starts its own.
    """
    ensure_playwright()
    from playwright.sync_api import sync_playwright

    with chromium_running(), sync_playwright() as pw:  # no test policy appears meanwhile
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=str(ensure_chromium()), args=list(CHROMIUM_ARGS))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def delivered(webmail: Webmail) -> list[tuple[mailgen.CertSpec, bytes, int]]:
    """Eight SI-DEP certificates in all sorts of encodings, and two ordinary lab messages, in INBOX."""
    rng = random.Random(20260101)
    out = []
    for spec, raw in mailgen.corpus(rng, 8):
        out.append((spec, raw, webmail.deliver(raw)))
    for i in range(2):
        webmail.deliver(mailgen.other_mail(rng, i))
    return out


def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def row_id(uid: int) -> str:
    """Roundcube's list row id: ``rcmrow`` + URL-safe base64 of the UID without padding."""
    return "rcmrow" + base64.urlsafe_b64encode(str(uid).encode()).decode().rstrip("=")


def test_imap_sees_the_delivered_certificates(webmail: Webmail, delivered: list) -> None:
    with webmail.imap() as conn:
        status, data = conn.select("INBOX", readonly=True)
        assert status == "OK" and int(data[0]) >= len(delivered) + 2
        for spec, raw, uid in delivered:
            status, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
            got = next(part[1] for part in data if isinstance(part, tuple))
            assert _lf(got) == _lf(raw)
            message = email.message_from_bytes(got, policy=email.policy.default)
            assert message["Message-ID"] == spec.message_id
            assert spec.dossier in str(message["Subject"])
        status, data = conn.uid("SEARCH", None, "FROM", mailgen.TRUSTED_SENDER)
        assert {uid for _, _, uid in delivered} <= {int(x) for x in data[0].split()}


def test_login_page_is_roundcube(webmail: Webmail) -> None:
    with urllib.request.urlopen(webmail.url, timeout=10) as resp:
        assert resp.status == 200
        page = resp.read().decode("utf-8")
    assert "<title>Roundcube Webmail" in page
    assert '"task":"login"' in page and '"skin":"elastic"' in page
    for element in ('id="rcmloginuser"', 'id="rcmloginpwd"', 'id="rcmloginsubmit"', 'name="_task" value="login"'):
        assert element in page, element
    assert "Installer script is still accessible" not in page


def test_browser_login_list_open_and_viewsource(webmail: Webmail, delivered: list, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="fr-FR")
    try:
        page = context.new_page()
        webmail.login(page)

        # the list: one row per message, id rcmrow<base64(uid)>, subject link to _action=show
        for spec, _, uid in delivered:
            row = page.locator(f"#messagelist tbody tr.message#{row_id(uid)}")
            assert row.count() == 1, spec.dossier
            assert spec.dossier in row.locator("span.subject").inner_text()
            href = row.locator("span.subject a").get_attribute("href") or ""
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
            assert query["_uid"] == [str(uid)] and query["_mbox"] == ["INBOX"] and query["_action"] == ["show"]

        # preview pane: the iframe #messagecontframe, _action=preview&_uid=…&_mbox=…&_framed=1
        spec, raw, uid = delivered[0]
        frame = webmail.open_message(page, spec.dossier, mode="preview")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(frame.url).query)
        assert query["_action"] == ["preview"] and query["_uid"] == [str(uid)] and query["_mbox"] == ["INBOX"]
        assert query["_framed"] == ["1"] and "_uid" not in page.url
        assert frame.locator("#message-header .header-links").count() == 1
        pdf_link = frame.locator("#attachment-list li a.filename").first
        assert mailgen.pdf_filename(spec).split("_")[1] in pdf_link.inner_text()

        # Roundcube's own source URL, with the browser session: without _save the text is "formatted"
        # (CR and blanks before line ends removed, end trimmed); with _save=1 and the request token the
        # bytes are exactly the stored ones (CRLF line ends).
        plain = page.request.get(webmail.viewsource_url(uid))
        assert plain.status == 200 and plain.headers["content-type"].startswith("text/plain")
        expected = re.sub(rb"[\t\r\0\x0b]+\n", b"\n", _lf(raw)).rstrip(b"\t\r\n\0\x0b")
        assert plain.body() == expected
        token = page.evaluate("rcmail.env.request_token")
        exact = page.request.get(webmail.viewsource_url(uid, save=True) + "&_token=" + token)
        assert exact.status == 200 and exact.headers["content-type"].startswith("text/plain")
        assert exact.headers["content-disposition"].startswith("attachment")
        assert _lf(exact.body()) == _lf(raw) and b"\n" not in exact.body().replace(b"\r\n", b"")
        # without the token, _save=1 answers 200 with an HTML error page, not the message
        refused = page.request.get(webmail.viewsource_url(uid, save=True))
        assert refused.headers["content-type"].startswith("text/html") and spec.message_id.encode() not in refused.body()
        # what a content script does from the preview frame: fetch with the X-Roundcube-Request header
        fetched = frame.evaluate(
            """async ([url, token]) => {
                const r = await fetch(url, {credentials: 'same-origin', headers: {'X-Roundcube-Request': token}});
                return Array.from(new Uint8Array(await r.arrayBuffer()));
            }""",
            [webmail.viewsource_url(uid, save=True), token],
        )
        assert _lf(bytes(fetched)) == _lf(raw)

        # full page: double-click → ?_task=mail&_action=show&_uid=…&_mbox=…
        spec, raw, uid = delivered[3]
        webmail.open_message(page, spec.dossier, mode="show")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        assert query["_action"] == ["show"] and query["_uid"] == [str(uid)] and query["_mbox"] == ["INBOX"]
        subject = page.locator("#message-header h2.subject").inner_text()
        assert spec.dossier in subject and spec.finess in subject
        exact = page.request.get(webmail.viewsource_url(uid, save=True) + "&_token=" + token)
        assert _lf(exact.body()) == _lf(raw)
    finally:
        context.close()


def test_deliver_to_another_folder(webmail: Webmail, browser: Any) -> None:
    spec = mailgen.random_spec(random.Random(3))
    raw = mailgen.make_message(spec)
    uid = webmail.deliver(raw, folder="Certificats/Été")
    assert webmail.uids("Certificats/Été") == [uid]
    assert _lf(webmail.fetch(uid, "Certificats/Été")) == _lf(raw)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        webmail.login(page)
        page.locator("#mailboxlist a", has_text="Été").click()
        page.wait_for_url(re.compile(r"_mbox=Certificats%2F%26AMk-t%26AOk-"))
        webmail.open_message(page, spec.dossier, mode="show")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        # _mbox is the IMAP (modified UTF-7) name, URL-encoded
        assert query["_mbox"] == ["Certificats/&AMk-t&AOk-"] and query["_uid"] == [str(uid)]
    finally:
        context.close()


def test_https_front_under_a_webmail_host_name(webmail: Webmail, playwright: Any) -> None:
    """Content scripts match https:// webmail hosts: the same Roundcube over TLS, as mailiz.mssante.fr."""
    spec = mailgen.random_spec(random.Random(4))
    uid = webmail.deliver(mailgen.make_message(spec))
    webmail.serve_https("mailiz.mssante.fr")
    assert webmail.https_url() == f"https://mailiz.mssante.fr:{webmail.https_port}/"
    browser = playwright.chromium.launch(
        executable_path=str(ensure_chromium()), args=[*CHROMIUM_ARGS, chromium_host_rules(webmail.https_hosts)]
    )
    try:
        page = browser.new_page(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        webmail.login(page, webmail.https_url())
        frame = webmail.open_message(page, spec.dossier, mode="preview")
        assert frame.url.startswith(webmail.https_url()) and f"_uid={uid}&" in frame.url
    finally:
        browser.close()
