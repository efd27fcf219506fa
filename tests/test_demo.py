"""``sidep-helper serve --demo``: fictitious certificates in their own folder, marked on every answer."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apicontract import validate
from conftest import Cli, free_port, start, wait_healthy
from pypdf import PdfReader

from helper.parse.identifiers import finess_check, ins_check
from helper.service import demo


def call(port: int, path: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return status, json.loads(raw) if is_json else raw, headers


def serving(home: Path, port: int, *extra: str, output: list[str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = start(home, port, *extra)
    try:
        wait_healthy(port, proc)
        yield proc
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        if output is not None:
            output.append(out.decode())


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text(f"port = {port}\n")
    return tmp_path / "home", port


def test_generated_certificates_are_valid_fictitious_and_marked() -> None:
    certs = demo.certificates(dt.datetime(2026, 6, 1, 12, 0))
    assert len(certs) >= 10 and len({(c.finess, c.dossier) for c in certs}) == len(certs)
    for c in certs:
        assert finess_check(c.finess) is None and ins_check(c.ins) is None
        assert dt.timedelta(0) < dt.datetime(2026, 6, 1, 12, 0) - c.sampled_at < dt.timedelta(days=7)
    raw = demo.message(certs[0])
    assert b"X-Sidep-Helper-Demo: 1" in raw and demo.DEMO_SENDER.encode() in raw
    text = PdfReader(io.BytesIO(demo.pdf(certs[0]))).pages[0].extract_text()
    assert "DÉMO — CERTIFICAT FICTIF" in text and certs[0].dossier in text


def test_demo_serves_fictitious_certificates_from_its_own_folder(home: tuple[Path, int]) -> None:
    data, port = home
    output: list[str] = []
    proc_gen = serving(data, port, "--demo", output=output)
    next(proc_gen)
    try:
        token = Cli(data).run("token", "--demo").stdout.strip()
        status, health, headers = call(port, "/api/v1/health")
        assert status == 200 and health["demo"] is True and headers["X-Sidep-Helper-Demo"] == "1"
        validate(health, "/api/v1/health", "GET", 200)
        status, found, headers = call(port, "/api/v1/certificates?limit=50", token)
        assert status == 200 and headers["X-Sidep-Helper-Demo"] == "1"
        assert found["total"] == len(demo.PEOPLE)
        assert all(c["warnings"] == [] and c["dossier"].startswith("DEMO") for c in found["results"])
        status, found, _ = call(port, "/api/v1/certificates?" + urllib.parse.urlencode({"q": "fictif chloe"}), token)
        assert [c["first_name"] for c in found["results"]] == ["Chloé"]
        status, pdf, headers = call(port, f"/api/v1/certificates/{found['results'][0]['id']}/pdf", token)
        assert status == 200 and headers["X-Sidep-Helper-Demo"] == "1"
        assert "DÉMO" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
        status, state, headers = call(port, "/api/v1/status", token)
        assert status == 200 and state["demo"] is True
        validate(state, "/api/v1/status", "GET", 200)
        status, _, headers = call(port, "/api/v1/status", "mauvais-jeton")
        assert status == 401 and headers["X-Sidep-Helper-Demo"] == "1"  # on errors too
    finally:
        proc_gen.close()
    out = output[0]
    assert "MODE DÉMO" in out and str(demo.demo_data_dir(data)) in out
    # The real data folder got nothing: no index, no token, no log; its config is untouched.
    assert sorted(p.name for p in data.iterdir()) == ["config.toml"]
    # A second start does not add the certificates again.
    proc_gen = serving(data, port, "--demo")
    next(proc_gen)
    try:
        _, found, _ = call(port, "/api/v1/certificates?limit=50", token)
        assert found["total"] == len(demo.PEOPLE)
    finally:
        proc_gen.close()


def test_real_service_is_not_marked_and_does_not_trust_demo_mail(home: tuple[Path, int], tmp_path: Path) -> None:
    data, port = home
    cli = Cli(data)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "demo.eml").write_bytes(demo.message(demo.certificates(dt.datetime.now())[0]))
    counts = cli.ingest(drop)
    assert counts["new"] == 0 and counts["quarantined"] == 1  # SI-DEP format from an untrusted sender
    assert cli.status()["quarantine"][0]["reason"] == "untrusted_sender"
    assert cli.search("exemple")["total"] == 0
    proc_gen = serving(data, port, "--no-watch")
    next(proc_gen)
    try:
        status, health, headers = call(port, "/api/v1/health")
        assert health["demo"] is False and "X-Sidep-Helper-Demo" not in headers
        token = cli.run("token").stdout.strip()
        _, state, _ = call(port, "/api/v1/status", token)
        assert state["demo"] is False
    finally:
        proc_gen.close()


def test_panel_shows_the_demo_banner_in_chromium(home: tuple[Path, int], tmp_path: Path) -> None:
    """The real panel in Debian's Chromium: banner with « serve --demo », none with the real service."""
    import browser

    data, port = home
    browser.ensure_chromium()
    extension = browser.prepare_extension(tmp_path / "webmail", [], source=browser.build_extension())
    url = f"http://127.0.0.1:{port}"
    with browser.extension_browser(extension) as (context, extension_id):
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(browser.extension_url(extension_id, "src/panel/popup.html"))
        page.wait_for_selector("body[data-ready]")
        proc_gen = serving(data, port, "--demo")
        next(proc_gen)
        try:
            token = Cli(data).run("token", "--demo").stdout.strip()
            page.evaluate("v => chrome.storage.local.set(v)", {"helperUrl": url, "token": token})
            page.reload()
            page.wait_for_selector("body[data-ready]")
            assert page.is_visible("#demo-banner")
            assert page.text_content("#demo-banner") == "DÉMO — certificats fictifs"
            page.fill("#q", "fictif")
            page.wait_for_selector(".result .last-name:text('FICTIF')")
        finally:
            proc_gen.close()
        proc_gen = serving(data, port, "--no-watch")
        next(proc_gen)
        try:
            token = Cli(data).run("token").stdout.strip()
            page.evaluate("v => chrome.storage.local.set(v)", {"helperUrl": url, "token": token})
            page.reload()
            page.wait_for_selector("body[data-ready]")
            assert not page.is_visible("#demo-banner") and page.text_content("#demo-banner") == ""
            assert page.get_attribute("#message", "data-code") is None  # the real service answers normally
        finally:
            proc_gen.close()
