"""Reading a folder in batches, and again after a wait: nothing lost, nothing read twice.

1. A first sync whose index writes are slower than the parsing. The fetch thread reads faster than the index records; the parse pool then runs ahead of the
recording by up to its window (256 items), so several batch marks (one every 100 messages fetched,
one at the end of each batch of 500 UIDs) are in the pool at once. Each mark must find its own
batch: numbered by dictionary length, a mark reused the number of one still in the pool — a
batch committed with the highest UID of a later one (the messages between never indexed, the
folder recorded as read past them), then a KeyError, a reconnection, and the same again.

Real Dovecot, real index, real parse pool; the only change is a pause in each index write, as a
slow disk or an antivirus scanning the data directory gives.

2. Between two syncs the folder is not selected again (a SELECT makes the server open the whole
mailbox again); its numbers come from STATUS and NOOP. A UIDVALIDITY changed while the helper is
connected: the folder is read again, nothing is added twice, new mail is found (Dovecot ends the
session on such a change, so here through a reconnection; a server that keeps it open shows the
new UIDVALIDITY in STATUS, and the folder is selected again).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import mailgen
import pytest
from conftest import recent_spec
from dovecot import Dovecot, start_dovecot
from imaphelpers import Helper, imap_config, sync_inbox_once

CERTS = 360  # marks after 100, 200, 300 messages, at UID 500 (the end of the first batch), and after 360


@pytest.fixture
def server() -> Iterator[Dovecot]:
    server = start_dovecot(client_cert=True)
    yield server
    server.remove()


def _other(i: int) -> bytes:
    """A plain-text message from an unknown sender: ruled out by its headers, never fetched whole."""
    return (f"From: Secretariat <accueil{i}@exemple.fr>\r\nTo: labo@exemple.fr\r\nSubject: Planning {i}\r\n"
            f"Message-ID: <planning-{i}@exemple.fr>\r\nDate: Mon, 1 Nov 2021 09:00:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nRéunion à 14 h.\r\n").encode()


def test_slow_index_writes_lose_nothing(server: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helper.index import imapingest, imapstate

    rng = random.Random(31)
    specs = [recent_spec(rng) for _ in range(CERTS)]
    # certificates, with ordinary mail among them: batches of UIDs with few or no messages to fetch
    raws = [mailgen.make_message(s) for s in specs[:300]] + [_other(i) for i in range(400)]
    raws += [mailgen.make_message(s) for s in specs[300:]]
    server.append_many(raws)
    before = server.dump()

    record = imapingest.record

    def slow_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.01)
        return record(*args, **kwargs)

    monkeypatch.setattr(imapingest, "record", slow_record)
    store, info = sync_inbox_once(server, tmp_path / "home", verify_barcodes=False)
    try:
        assert store.counts()["certificates"] == CERTS
        dossiers = {row[0] for row in store.db.execute("SELECT dossier FROM certificates")}
        assert dossiers == {s.dossier for s in specs}
        assert imapstate.folder_state(store, "bal", "INBOX").last_uid == len(raws)
        linked = imapstate.linked_uids(store, "bal", "INBOX", info.uidvalidity)
        assert sorted(linked) == list(range(1, 301)) + list(range(701, 701 + CERTS - 300))
    finally:
        store.close()
    assert server.dump() == before  # nothing marked read


def test_uidvalidity_changed_while_connected(server: Dovecot, tmp_path: Path) -> None:
    rng = random.Random(32)
    specs = [recent_spec(rng) for _ in range(8)]
    server.append_many([mailgen.make_message(s) for s in specs[:5]])
    helper = Helper.start(tmp_path / "home", imap_config(server, poll=5))
    try:
        for spec in specs[:5]:
            assert helper.wait_for(spec.dossier)["total"] == 1
        server.new_uidvalidity()  # Dovecot keeps running: the helper's session stays open
        time.sleep(1)
        server.append(mailgen.make_message(specs[5]))
        assert helper.wait_for(specs[5].dossier, timeout=10)["total"] == 1
        server.append_many([mailgen.make_message(s) for s in specs[6:]])
        for spec in specs[6:]:
            assert helper.wait_for(spec.dossier, timeout=5)["total"] == 1  # and new mail after it
        helper.wait_imap_ok()
        assert helper.status()["counts"]["certificates"] == 8
        assert helper.imap_status()[0]["messages"] == 8
    finally:
        helper.stop()
    log = helper.log()
    assert "UIDVALIDITY" in log and "Erreur inattendue" not in log
