"""A real ``serve`` reading a real Dovecot mailbox over TLS with a client certificate.

Delivered while the helper runs (``dovecot-lda`` and IMAP APPEND): certificates are searchable within
5 s, spoofs never (quarantined by the same trust rules as any message), forwards and noise handled as
from files; nothing on the server changes (dump of the mailbox before and after, flags included:
nothing marked read). Killing the helper mid-fetch, restarting Dovecot mid-poll and a new
UIDVALIDITY lose nothing and add nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import mailgen
import psutil
import pytest
from conftest import Cli, recent_spec
from dovecot import Dovecot, Pki, make_pki, start_dovecot
from imaphelpers import Helper, imap_config, sync_inbox_once


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: Pki) -> Iterator[Dovecot]:
    server = start_dovecot(pki, client_cert=True)
    yield server
    server.remove()


def _count(helper: Helper) -> int:
    return helper.status()["counts"]["certificates"]


def _stored(helper: Helper) -> int:
    """Certificates committed to the helper's index, read from the SQLite file (read-only)."""
    path = helper.home / "index.sqlite3"
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM certificates").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _wait_count(helper: Helper, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = _count(helper)
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_delivered_mail_is_searchable_within_5s_and_server_unchanged(server: Dovecot, tmp_path: Path, tls: str) -> None:
    rng = random.Random(10)
    early = recent_spec(rng, last_name="AVANT-DÉMARRAGE", first_name="Zoé")
    server.append(mailgen.make_message(early))
    helper = Helper.start(tmp_path / "home", imap_config(server, tls=tls))
    try:
        assert helper.wait_for("avant demarrage zoe")["total"] == 1  # read at start-up
        specs = [recent_spec(rng) for _ in range(4)]
        spoofed = recent_spec(rng, last_name="USURPATEUR", first_name="Faux")
        forwarded = recent_spec(rng, last_name="TRANSFERT", first_name="Jean")
        t0 = time.monotonic()
        server.deliver(mailgen.make_message(specs[0]))  # as the MTA does
        server.append(mailgen.make_message(specs[1]))  # as another client does
        server.append(mailgen.spoof(spoofed))
        server.append(mailgen.forward(mailgen.make_message(forwarded)))
        server.append(mailgen.other_mail(rng, 1))
        server.append(mailgen.other_mail(rng, 2))
        server.deliver(mailgen.make_message(specs[2]))
        server.deliver(mailgen.make_message(specs[3]))
        for spec in specs:
            assert helper.wait_for(spec.dossier, timeout=5 - (time.monotonic() - t0))["total"] == 1, spec.dossier
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"{elapsed:.1f} s"
        time.sleep(1)
        assert helper.search("usurpateur")["total"] == 0
        assert helper.search(spoofed.dossier)["total"] == 0
        status = helper.status()
        assert any(q["reason"] == "untrusted_sender" for q in status["quarantine"])
        # a forward is judged by the same trust rules as the same message saved to a file
        reference = Cli(tmp_path / "reference")
        (tmp_path / "fwd").mkdir()
        (tmp_path / "fwd" / "tr.eml").write_bytes(mailgen.forward(mailgen.make_message(forwarded)))
        expected = reference.ingest(tmp_path / "fwd")["new"]
        assert helper.search("transfert jean")["total"] == expected
        assert status["counts"]["certificates"] == 5 + expected
        deadline = time.monotonic() + 5
        while "IDLE" not in (row := helper.imap_status()[0])["state"] and time.monotonic() < deadline:
            time.sleep(0.1)  # between two syncs the folder waits in IDLE
        assert row["state"] == "en veille (IDLE)"
        assert row["last_success"] and row["last_error"] is None and row["messages"] == 9

        before = server.dump()
        assert all("\\Seen" not in flags for flags, _ in before.values()), "nothing may be marked read"
        helper.stop()
        helper.restart()  # a restart reads nothing twice
        helper.wait_imap_ok()
        assert _count(helper) == 5 + expected
        assert server.dump() == before
    finally:
        helper.stop()
    log = helper.log()
    for spec in [early, *specs]:
        assert spec.last_name not in log and spec.dossier not in log
    assert "AVANT" not in log


def test_kill_mid_fetch_restart_dovecot_and_new_uidvalidity(server: Dovecot, tmp_path: Path) -> None:
    rng = random.Random(11)
    specs = [recent_spec(rng) for _ in range(1200)]
    server.append_many([mailgen.make_message(spec) for spec in specs[:1000]])
    before = server.dump()
    # a first batch big enough that the kill lands mid-sync even on a fast machine (commits go by 100)
    helper = Helper.start(tmp_path / "home", imap_config(server), wait=False)
    try:
        # kill -9 while the first sync is fetching: watch the index file itself (a status call
        # through the API may come back only after the whole first batch on a fast machine)
        deadline = time.monotonic() + 60
        while 0 == (n := _stored(helper)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 0 < n < 1000, f"helper had {n} certificates when killed"
        helper.kill()
        helper.restart()
        time.sleep(2.5)  # worker processes of the killed service exit with it
        assert not [p for p in psutil.process_iter(["ppid", "cmdline"])
                    if p.info["ppid"] == 1 and "serve" in (p.info["cmdline"] or [])
                    and p.environ().get("SIDEP_HELPER_HOME") == str(helper.home)]
        # Dovecot restarted in the middle of the following polls, with mail arriving meanwhile
        server.append_many([mailgen.make_message(spec) for spec in specs[1000:1100]])
        server.restart(pause=1.0)
        for spec in specs[1100:1150]:
            server.deliver(mailgen.make_message(spec))
        assert _wait_count(helper, 1150, 60) == 1150, helper.imap_status()
        assert "Connexion perdue" in helper.log()
        # a new UIDVALIDITY: everything is read again, nothing added twice
        server.new_uidvalidity()
        server.restart()
        server.append_many([mailgen.make_message(spec) for spec in specs[1150:]])
        assert _wait_count(helper, 1200, 60) == 1200
        helper.wait_imap_ok()
        time.sleep(2)
        assert _count(helper) == 1200
        same_dossier = Counter(spec.dossier for spec in specs)  # dossiers are drawn from 10,000 numbers
        for spec in rng.sample(specs, 20):
            assert helper.search(spec.dossier)["total"] == same_dossier[spec.dossier]
        assert "UIDVALIDITY" in helper.log()
    finally:
        helper.stop()
    out = Cli(helper.home).json("status")
    assert out["certificates"] == 1200 and out["imap"][0]["last_success"]
    after = server.dump()
    assert {uid: v for uid, v in after.items() if uid in before} == before


def test_move_processed_to_moves_certificates_only(server: Dovecot, tmp_path: Path) -> None:
    rng = random.Random(12)
    server.create_folder("Traités")
    spec = recent_spec(rng, last_name="DÉPLACÉ", first_name="Léa")
    noise = mailgen.other_mail(rng, 3)
    server.append(noise)
    server.deliver(mailgen.make_message(spec))
    helper = Helper.start(tmp_path / "home", imap_config(server, move_to="Traités"))
    try:
        cert = helper.wait_for("deplace lea")["results"][0]
        deadline = time.monotonic() + 10
        while len(server.dump("INBOX")) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        inbox, moved = server.dump("INBOX"), server.dump("Traités")
        assert len(inbox) == 1 and len(moved) == 1  # the noise stays, the certificate moved (bytes unchanged)
        assert {h for _, h in inbox.values()} == {hashlib.sha256(noise).hexdigest()}
        assert {r["folder"] for r in helper.imap_status()} == {"INBOX", "Traités"}
        # the moved message still carries the shared state
        status, _ = helper.call("POST", f"/api/v1/certificates/{cert['id']}/delivered", b"{}")
        assert status == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("$SidepRemis" in f for f in server.flags("Traités").values()):
            time.sleep(0.1)
        assert [f for f in server.flags("Traités").values()] == [{"$SidepRemis"}]
        assert _count(helper) == 1
    finally:
        helper.stop()


def test_oversized_message_is_listed_not_fetched(server: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate-looking message over the size limit stays on the server, listed in quarantine."""
    from helper.service import imapread

    rng = random.Random(13)
    small, big = recent_spec(rng), recent_spec(rng)
    server.append(mailgen.make_message(small))
    big_raw = mailgen.make_message(big, pdf=mailgen.make_pdf(big, size=200_000))
    server.append(big_raw)
    monkeypatch.setattr(imapread, "MAX_READ", 120_000)  # the limit is 50 MB in service; scaled down here
    settings_dir = tmp_path / "home"
    store, _ = sync_inbox_once(server, settings_dir)
    assert store.counts()["certificates"] == 1
    rows = store.quarantined()
    assert len(rows) == 1 and rows[0]["reason"] == "too_large" and rows[0]["path"].startswith("imap:bal/INBOX;")
    assert not (settings_dir / "quarantine").exists()  # nothing of it fetched and kept
    store.close()


def test_mail_arriving_just_before_idle_ends_the_wait(server: Dovecot) -> None:
    """A message delivered after the last read and before the IDLE begins: Dovecot's STATUS of the
    selected folder does not count it yet and the IDLE does not announce it; the wait must still end
    at once (it used to last until the poll, ``poll_seconds``)."""
    from helper.config import ImapSource
    from helper.sources.imap import Folder, connect

    crt, key = server.pki.client("good")
    account = ImapSource(name="bal", host="127.0.0.1", port=server.port, ca_file=server.pki.ca, cert_file=crt,
                         key_file=key)
    server.append(mailgen.make_message(recent_spec(random.Random(5))))
    client = connect(account)
    try:
        folder = Folder(client, "INBOX")
        assert folder.select().exists == 1
        server.append(mailgen.make_message(recent_spec(random.Random(6))))  # another client delivers
        started = time.monotonic()
        folder.wait(6, lambda: False)
        assert time.monotonic() - started < 3
        assert folder.refresh().exists == 2
    finally:
        client.logout()
