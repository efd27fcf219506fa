"""The Thunderbird add-on (dist/thunderbird, built from today's sources) in a real headless Thunderbird, pushing to a real helper.

A real ``sidep-helper serve --no-watch`` (so only what the add-on pushes gets indexed), the add-on's
managed settings (helper URL, token, ``autoIndexOnStartup``) in ``policies.json``, and a profile whose
folders hold SI-DEP certificates among other mail. See tests/thunderbird.py for the environment.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import browser
import mailgen
import pytest
import thunderbird
from conftest import Cli, free_port, recent_spec, start, wait_healthy
from thunderbird import ADDON_ID, ThunderbirdProcess, make_profile, run_thunderbird

MARKUP = "<img src=x onerror=alert(1)>"
PUSH_TIMEOUT = 60






@dataclass
class Helper:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    home: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def search(self, q: str) -> dict[str, Any]:
        return self.get("/api/v1/certificates?" + urllib.parse.urlencode({"q": q}))

    def status(self) -> dict[str, Any]:
        return self.get("/api/v1/status")

    def log(self) -> str:
        """The service log without the test's own searches (what the add-on asked, and errors)."""
        path = self.home / "logs" / "sidep-helper.log"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        return "\n".join(line for line in lines if '"GET /api/v1/certificates' not in line)[-4000:]


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[Helper]:
    home = tmp_path / "helper-home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f"port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n", encoding="utf-8"
    )
    cli = Cli(home)
    proc = start(home, port, "--no-watch")
    try:
        wait_healthy(port, proc)
        token = cli.run("token").stdout.strip()
        yield Helper(proc, port, token, home)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def addon_dir(tmp_path: Path) -> Path:
    """A copy of the add-on built from today's sources (browser.built_dist(): a private build, so a
    rebuild elsewhere cannot pull the files from under Thunderbird)."""
    built = browser.built_dist() / "thunderbird"
    assert thunderbird.addon_id(built) == ADDON_ID
    copy = tmp_path / "addon"
    shutil.copytree(built, copy)
    return copy


def diagnostics(tb: ThunderbirdProcess, helper: Helper) -> str:
    addon = tb.addons().get(ADDON_ID)
    record = {k: addon.get(k) for k in ("active", "userDisabled", "appDisabled", "location", "version")} if addon else None
    try:
        status = helper.status()["counts"]
    except (OSError, urllib.error.URLError, KeyError) as exc:
        status = f"unavailable: {exc}"
    return (
        f"add-on record: {record}\nhelper counts: {status}\n"
        f"helper log:\n{helper.log()}\n"
        f"Thunderbird (Thunderbird {thunderbird.thunderbird_version()}) output:\n{tb.tail(80)}"
    )


def wait_for_dossiers(helper: Helper, tb: ThunderbirdProcess, specs: list[mailgen.CertSpec],
                      timeout: float = PUSH_TIMEOUT) -> dict[str, dict[str, Any]]:
    """Poll GET /api/v1/certificates until every dossier is found; the certificates by dossier."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while True:
        for spec in specs:
            if spec.dossier not in found:
                results = helper.search(spec.dossier)["results"]
                match = [c for c in results if c["dossier"] == spec.dossier]
                if match:
                    found[spec.dossier] = match[0]
        if len(found) == len(specs):
            return found
        if time.monotonic() > deadline or not tb.alive():
            missing = [s.dossier for s in specs if s.dossier not in found]
            raise AssertionError(
                f"after {timeout:.0f} s the helper has {len(found)} of {len(specs)} certificates "
                f"(missing dossiers {missing}; Thunderbird alive: {tb.alive()})\n{diagnostics(tb, helper)}"
            )
        time.sleep(0.5)


def test_certificates_in_local_folders_are_pushed_at_startup(tmp_path: Path, helper: Helper,
                                                            addon_dir: Path) -> None:
    rng = random.Random(4242)
    specs = [recent_spec(rng), recent_spec(rng), recent_spec(rng, last_name=MARKUP, first_name="Zoé")]
    inbox = [mailgen.make_message(s) for s in specs] + [mailgen.other_mail(rng, i) for i in range(2)]
    settings = {"helperUrl": helper.url, "token": helper.token, "autoIndexOnStartup": True}
    profile = make_profile(tmp_path, extension_dir=addon_dir, local_mbox_messages=inbox, imap=None,
                           managed_settings={ADDON_ID: settings})
    tb = run_thunderbird(profile, timeout=PUSH_TIMEOUT + 60)
    try:
        started = time.monotonic()
        found = wait_for_dossiers(helper, tb, specs)
        elapsed = time.monotonic() - started
        counts = helper.status()["counts"]
    finally:
        tb.stop()
    for spec in specs:
        assert found[spec.dossier]["first_name"] == spec.first_name
    # markup in a name arrives as plain data: the very characters, neither escaped nor stripped
    assert found[specs[2].dossier]["last_name"].upper() == MARKUP.upper()
    assert counts["certificates"] == 3, counts
    print(f"\n3 certificates pushed {elapsed:.1f} s after Thunderbird's main window")


@pytest.fixture
def mailbox() -> Iterator[Any]:
    """A loopback Dovecot with one mailbox (tests/roundcube.py's; its Roundcube is not used here)."""
    import roundcube

    roundcube.install_packages()
    wm = roundcube.start_webmail()
    yield wm
    wm.stop()


def deliver_at_once(mailbox: Any, messages: list[bytes]) -> None:
    """Several messages into INBOX in one IMAP COPY (one EXISTS), through a folder Thunderbird does not see.

    Appended one by one while Thunderbird is fetching the first ones, the last message may wait for
    Thunderbird's next poll (a minute): that is IMAP IDLE timing, not the add-on under test.
    """
    with mailbox.imap() as conn:
        conn.create("sidep-staging")  # not subscribed: invisible to Thunderbird
        for raw in messages:
            status, data = conn.append("sidep-staging", "", None, raw)
            assert status == "OK", data
        conn.select("sidep-staging")
        status, data = conn.uid("COPY", "1:*", "INBOX")
        assert status == "OK", data
        conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        conn.expunge()


def test_new_certificates_over_imap_are_pushed_on_arrival(tmp_path: Path, helper: Helper, addon_dir: Path,
                                                         mailbox: Any) -> None:
    """messages.onNewMailReceived: what lands in the IMAP inbox reaches the helper, without any walk."""
    rng = random.Random(777)
    first = recent_spec(rng)
    mailbox.deliver(mailgen.make_message(first))  # there before Thunderbird starts: new at the first sync
    settings = {"helperUrl": helper.url, "token": helper.token, "autoIndexOnStartup": False}
    profile = make_profile(tmp_path, extension_dir=addon_dir, local_mbox_messages=None,
                           imap={"port": mailbox.imap_port, "user": mailbox.user, "password": mailbox.password},
                           managed_settings={ADDON_ID: settings})
    tb = run_thunderbird(profile, timeout=PUSH_TIMEOUT * 2 + 60)
    try:
        wait_for_dossiers(helper, tb, [first])
        arriving = [recent_spec(rng), recent_spec(rng, last_name=MARKUP, first_name="Zoé")]
        spoofed = recent_spec(rng, last_name="USURPATEUR")
        deliver_at_once(mailbox, [mailgen.make_message(arriving[0]), mailgen.other_mail(rng, 1),
                                  mailgen.spoof(spoofed), mailgen.make_message(arriving[1])])
        delivered = time.monotonic()
        found = wait_for_dossiers(helper, tb, arriving)
        elapsed = time.monotonic() - delivered
        time.sleep(2)  # the spoofed message, had it been pushed, would be indexed by now
        counts = helper.status()["counts"]
        spoof_hits = helper.search(spoofed.dossier)["total"]
    finally:
        tb.stop()
    assert found[arriving[1].dossier]["last_name"].upper() == MARKUP.upper()
    assert counts["certificates"] == 3, counts
    assert spoof_hits == 0, "a look-alike from an untrusted sender is never a certificate"
    print(f"\n2 new certificates pushed {elapsed:.1f} s after they reached the IMAP inbox")


def test_the_add_on_pairs_and_pushes_new_mail_with_no_token_configured(tmp_path: Path, helper: Helper,
                                                                       addon_dir: Path, mailbox: Any) -> None:
    """No token nor address anywhere (policy or settings): the pairing host declared in ``~/.mozilla/native-messaging-hosts`` (the
    HOME Thunderbird runs with) gives the add-on the helper's address and token."""
    from pairingenv import write_wrapper

    from helper.service import nativehosts

    rng = random.Random(4711)
    first = recent_spec(rng)
    mailbox.deliver(mailgen.make_message(first))
    profile = make_profile(tmp_path, extension_dir=addon_dir, local_mbox_messages=None,
                           imap={"port": mailbox.imap_port, "user": mailbox.user, "password": mailbox.password},
                           managed_settings={ADDON_ID: {"autoIndexOnStartup": False}})
    meta = json.loads((profile / thunderbird.HARNESS_FILE).read_text(encoding="utf-8"))
    assert "token" not in json.dumps(meta["policies"]) and "helperUrl" not in json.dumps(meta["policies"])
    hosts = Path(meta["home"]) / ".mozilla" / "native-messaging-hosts"
    hosts.mkdir(parents=True)
    wrapper = write_wrapper(tmp_path / "sidep-helper-pairing", helper.home)
    (hosts / f"{nativehosts.HOST_NAME}.json").write_text(json.dumps(nativehosts.manifest("mozilla", wrapper)),
                                                         encoding="utf-8")
    tb = run_thunderbird(profile, timeout=PUSH_TIMEOUT * 2 + 60)
    try:
        wait_for_dossiers(helper, tb, [first])
        arriving = recent_spec(rng)
        deliver_at_once(mailbox, [mailgen.make_message(arriving)])
        found = wait_for_dossiers(helper, tb, [arriving])
    finally:
        tb.stop()
    assert found[arriving.dossier]["first_name"] == arriving.first_name
    assert helper.status()["counts"]["certificates"] == 2
