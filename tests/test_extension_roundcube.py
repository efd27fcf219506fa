"""End to end: the webmail extension in Chromium, on a real Roundcube, with a real ``sidep-helper serve``.

The unpacked extension (``node extension/build`` → ``dist/webmail``, built here into a temporary copy
so that the test always runs today's sources) is loaded in Debian's Chromium. Its content script
matches ``https://mailiz.mssante.fr/*``: the test Roundcube (tests/roundcube.py) is served over TLS and
Chromium resolves that name to 127.0.0.1, so nothing leaves the machine. The extension is pointed at a
real helper service (its own data directory, the cups-pdf test queue as printer) through its storage.

A secretary opens a certificate message the helper has never seen: the « Imprimer le certificat »
button (``#sidep-helper-print``) appears, the message is pushed to the helper (its search finds it),
and a click prints the certificate on the cups-pdf queue.
"""

from __future__ import annotations

import email
import email.policy
import json
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser as browsers
import mailgen
import pytest
from conftest import Cli, free_port, recent_spec, start, wait_healthy
from cups import CupsPdf, ensure_cups_pdf
from roundcube import (
    CHROMIUM_ARGS,
    Webmail,
    chromium_host_rules,
    ensure_chromium,
    ensure_playwright,
    ensure_roundcube,
)
from test_service_e2e import Service


@pytest.fixture(scope="session")
def extension_dir() -> Path:
    """dist/webmail of today's sources, built in a private copy (the work tree's dist/ is left alone)."""
    out = browsers.build_extension()
    assert (out / "manifest.json").exists()
    return out


def webmail_hosts(extension: Path) -> list[str]:
    """Host names of the content script's built-in https:// match patterns (e.g. mailiz.mssante.fr)."""
    manifest = json.loads((extension / "manifest.json").read_text(encoding="utf-8"))
    hosts = []
    for script in manifest.get("content_scripts", []):
        for pattern in script.get("matches", []):
            if pattern.startswith("https://") and "*" not in pattern.split("/")[2]:
                hosts.append(pattern.split("/")[2])
    assert hosts, f"no https:// host in the content scripts' matches of {extension}/manifest.json"
    return hosts


@pytest.fixture(scope="module")
def cups() -> CupsPdf:
    return ensure_cups_pdf()


@pytest.fixture(scope="session")
def webmail(extension_dir: Path) -> Iterator[Webmail]:
    wm = ensure_roundcube()
    wm.serve_https(*webmail_hosts(extension_dir))
    yield wm
    wm.stop()


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory, cups: CupsPdf) -> Iterator[Service]:
    """A real ``sidep-helper serve``: no watched folder, prints to the cups-pdf test queue."""
    home = tmp_path_factory.mktemp("helper-home")
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\nprinter = "{cups.queue}"\n',
        encoding="utf-8",
    )
    proc = start(home, port)
    try:
        wait_healthy(port, proc)
        cli = Cli(home)
        yield Service(proc, port, cli.run("token").stdout.strip(), cli, home)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(extension_dir: Path, webmail: Webmail, helper: Service, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Any]:
    """Chromium with the unpacked extension loaded and configured for ``helper``; yields the context.

    Module-scoped: one sync Playwright may run at a time in a process (see tests/test_roundcube_env.py).
    """
    ensure_playwright()
    chromium = ensure_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    from playwright.sync_api import sync_playwright

    with browsers.chromium_running(), sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=False,  # "--headless=new" below: Playwright's own headless mode has no extensions
            args=[
                "--headless=new", *CHROMIUM_ARGS, chromium_host_rules(webmail.https_hosts),
                f"--disable-extensions-except={extension_dir}", f"--load-extension={extension_dir}",
                "--disable-features=DisableLoadExtensionCommandLineSwitch",  # keep --load-extension working
            ],
            ignore_default_args=["--disable-extensions"],
            ignore_https_errors=True,
            viewport={"width": 1400, "height": 900},
            locale="fr-FR",
        )
        try:
            worker = context.service_workers[0] if context.service_workers else context.wait_for_event(
                "serviceworker", timeout=30_000
            )
            worker.evaluate(
                "([helperUrl, token]) => chrome.storage.local.set({helperUrl, token})",
                [f"http://127.0.0.1:{helper.port}", helper.token],
            )
            yield context
        finally:
            context.close()


def _printed_file(cups: CupsPdf, cert_id: int, since: float, timeout: float = 30) -> Path:
    """The cups-pdf output of the helper's job for ``cert_id`` (job title ``certificat-<id>``)."""
    name = re.compile(rf"certificat-{cert_id}(?:_[^-]*)?-job_(\d+)\.pdf")  # cups-pdf may add "__US"
    deadline = time.monotonic() + timeout
    while True:
        found = [m for p in cups.out_dir.glob(f"certificat-{cert_id}*.pdf")
                 if (m := name.fullmatch(p.name)) and p.stat().st_mtime >= since]
        if found:
            return cups.wait_for_output(f"{cups.queue}-{found[0].group(1)}", newer_than=since)
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing printed for certificate {cert_id} in {cups.out_dir}")
        time.sleep(0.2)


def test_open_certificate_push_and_print(browser: Any, webmail: Webmail, helper: Service, cups: CupsPdf) -> None:
    spec = recent_spec(random.Random(), last_name="WEBMAIL-ÉTIENNE", first_name="Zoé")
    webmail.deliver(mailgen.make_message(spec))
    assert helper.search(spec.dossier)["total"] == 0  # the helper has never seen it

    page = browser.new_page()
    webmail.login(page, webmail.https_url())
    webmail.open_message(page, spec.dossier, mode="show")
    button = page.locator("#sidep-helper-print")
    button.wait_for(state="visible", timeout=15_000)

    found = helper.wait_for(spec.dossier, timeout=15)  # pushed by the extension on display
    assert found["total"] == 1, found
    cert = found["results"][0]
    assert cert["dossier"] == spec.dossier and cert["print_count"] == 0

    since = time.time() - 1
    button.click()
    page.locator("#sidep-helper-status[data-state='ok']").wait_for(timeout=30_000)
    pdf = _printed_file(cups, int(cert["id"]), since)
    assert pdf.read_bytes().startswith(b"%PDF-")
    status, body, _ = helper.call("GET", f"/api/v1/certificates/{cert['id']}")
    assert status == 200 and body["print_count"] == 1
    page.close()


def test_preview_pane_gets_the_button_and_pushes(browser: Any, webmail: Webmail, helper: Service) -> None:
    spec = recent_spec(random.Random(), last_name="APERÇU", first_name="Anaïs")
    webmail.deliver(mailgen.make_message(spec))
    assert helper.search(spec.dossier)["total"] == 0

    page = browser.new_page()
    webmail.login(page, webmail.https_url())
    frame = webmail.open_message(page, spec.dossier, mode="preview")
    frame.locator("#sidep-helper-print").wait_for(state="visible", timeout=15_000)
    assert page.locator("#sidep-helper-print").count() == 0  # in the frame, not on the list page
    assert helper.wait_for(spec.dossier, timeout=15)["total"] == 1
    page.close()


def test_no_button_on_ordinary_mail(browser: Any, webmail: Webmail) -> None:
    """SI-DEP's maintenance notice (trusted sender, « [Projet SI-DEP] » subject) is no certificate."""
    raw = mailgen.other_mail(random.Random(), 6)
    subject = str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])
    assert subject.startswith("[Projet SI-DEP] Information")
    webmail.deliver(raw)
    page = browser.new_page()
    webmail.login(page, webmail.https_url())
    webmail.open_message(page, subject.split(" le ")[-1], mode="show")
    page.wait_for_timeout(1500)  # the content script looks again for a while after load
    assert page.locator("#sidep-helper-print").count() == 0
    page.close()
