"""Servers that offer less: no IDLE (the helper polls), no new keywords (the hand-over stays local).

Real Dovecot instances (``tests/dovecot.py``):

- one whose IMAP sessions do not announce IDLE (``imap_capability`` without it): mail delivered while
  the helper runs is found by the poll every ``poll_seconds``, within that interval (plus the read);
- one with the ACL plugin and a folder the mailbox owner may read but not flag (``owner lrs``: its
  PERMANENTFLAGS is ``(\\Seen)``, no ``\\*``): the certificates are read, a hand-over and its undo
  work on this desk and nothing is written on the server; ``status`` (API and CLI) says in French that
  the shared state is unavailable on that folder, and the source is not in error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import mailgen
import pytest
from conftest import Cli, recent_spec
from dovecot import ACL_CONF, NO_IDLE_CONF, Dovecot, make_pki, start_dovecot
from imaphelpers import Helper, imap_config

POLL = 5


@pytest.fixture
def no_idle(tmp_path: Path) -> Iterator[Dovecot]:
    server = start_dovecot(make_pki(tmp_path / "pki"), client_cert=True, extra_conf=NO_IDLE_CONF)
    yield server
    server.remove()


@pytest.fixture
def with_acl(tmp_path: Path) -> Iterator[Dovecot]:
    server = start_dovecot(make_pki(tmp_path / "pki"), client_cert=True, extra_conf=ACL_CONF)
    yield server
    server.remove()


def test_without_idle_new_mail_is_found_by_polling(no_idle: Dovecot, tmp_path: Path) -> None:
    with no_idle.imap() as conn:
        assert "IDLE" not in conn.capabilities
    rng = random.Random(30)
    helper = Helper.start(tmp_path / "home", imap_config(no_idle, poll=POLL))
    try:
        row = helper.imap_status()[0]
        assert row["state"] == f"relève toutes les {POLL} s", row
        for i in range(2):  # two polls in a row: each finds what arrived since the one before
            spec = recent_spec(rng, last_name=f"SONDAGE{'AB'[i]}", first_name="Noé")
            time.sleep(1.5 * i)
            t0 = time.monotonic()
            no_idle.deliver(mailgen.make_message(spec))
            found = helper.wait_for(spec.dossier, timeout=POLL + 5)
            took = time.monotonic() - t0
            assert found["total"] == 1, helper.imap_status()
            assert took < POLL + 3, f"{took:.1f} s with a poll every {POLL} s"
        assert helper.imap_status()[0]["error_code"] is None
    finally:
        helper.stop()


def test_folder_without_new_keywords_keeps_the_state_local(with_acl: Dovecot, tmp_path: Path) -> None:
    rng = random.Random(31)
    spec = recent_spec(rng, last_name="LECTURE", first_name="Seule")
    with_acl.create_folder("Lecture")
    with_acl.append(mailgen.make_message(spec), "Lecture")
    with_acl.restrict("Lecture", "lrs")  # read, see, \Seen: no other flag, no new keyword
    before = with_acl.dump("Lecture")
    helper = Helper.start(tmp_path / "home", imap_config(with_acl, folders=("INBOX", "Lecture")))
    try:
        cert = helper.wait_for("lecture seule")["results"][0]
        rows = {r["folder"]: r for r in helper.imap_status()}
        assert rows["INBOX"]["error_code"] is None  # the other folder shares its state as usual
        lecture = rows["Lecture"]
        assert lecture["error_code"] == "no_keywords" and lecture["last_success"], lecture
        assert "mots-clés" in lecture["last_error"] and "propre à ce poste" in lecture["last_error"]
        assert lecture["state"] not in ("erreur", "reconnexion")

        # hand-over and undo work on this desk; nothing is written on the server, nothing fails
        status, body = helper.call("POST", f"/api/v1/certificates/{cert['id']}/delivered", b'{"initials": "AB"}')
        assert status == 200 and body["delivered_by"] == "AB"
        time.sleep(2)
        assert helper.cert(cert["id"])["delivered_by"] == "AB"
        assert with_acl.dump("Lecture") == before
        helper.stop()
        helper.restart()  # a full sync reads the (absent) keywords back: the local state stays
        helper.wait_imap_ok()
        time.sleep(1)
        assert helper.cert(cert["id"])["delivered_by"] == "AB"
        status, body = helper.call("DELETE", f"/api/v1/certificates/{cert['id']}/delivered")
        assert status == 200 and body["delivered_at"] is None
        time.sleep(2)
        assert with_acl.dump("Lecture") == before
        assert helper.imap_status()[1]["error_code"] == "no_keywords"
        assert "Erreur inattendue" not in helper.log()
    finally:
        helper.stop()
    out = Cli(helper.home).run("status").stdout
    assert "Lecture" in out and "partagé entre postes y est indisponible" in out
