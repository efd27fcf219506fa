"""Two desks, two helpers (two data directories), one shared mailbox: « imprimé / remis » follows.

A print (real CUPS queue) and a hand-over at desk A appear at desk B within 5 s, through the IMAP
keywords ``$SidepImprime`` / ``$SidepRemis`` that A sets on the message; an undo at A clears the
keyword and B's state; a hand-over at B reaches A. The initials stay in A's own records; the server's
messages are byte for byte the same, their flags differ only by these two keywords.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mailgen
import pytest
from conftest import Cli, recent_spec
from cups import CupsPdf, ensure_cups_pdf
from dovecot import Dovecot, make_pki, start_dovecot
from imaphelpers import Helper, imap_config

KEYWORDS = {"$SidepImprime", "$SidepRemis"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Dovecot]:
    server = start_dovecot(make_pki(tmp_path / "pki"), client_cert=True)
    yield server
    server.remove()


@pytest.fixture
def desks(server: Dovecot, tmp_path: Path) -> Iterator[tuple[Helper, Helper, CupsPdf]]:
    cups = ensure_cups_pdf()
    a = Helper.start(tmp_path / "poste-a", imap_config(server), printer=cups.queue)
    b = Helper.start(tmp_path / "poste-b", imap_config(server), printer=cups.queue)
    try:
        yield a, b, cups
    finally:
        a.stop()
        b.stop()


def _until(fetch: Any, check: Any, timeout: float = 5) -> tuple[Any, float]:
    t0 = time.monotonic()
    while True:
        value = fetch()
        if check(value):
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s: {value}")
        time.sleep(0.05)


def test_print_handover_and_undo_reach_the_other_desk(server: Dovecot, desks: tuple[Helper, Helper, CupsPdf]) -> None:
    a, b, cups = desks
    rng = random.Random(20)
    spec = recent_spec(rng, last_name="PARTAGÉ", first_name="Aline")
    other = recent_spec(rng, last_name="VOISIN", first_name="Paul")
    server.deliver(mailgen.make_message(spec))
    server.deliver(mailgen.make_message(other))
    on_a = a.wait_for("partage aline")["results"]
    on_b = b.wait_for("partage aline")["results"]
    assert len(on_a) == 1 and len(on_b) == 1
    id_a, id_b = on_a[0]["id"], on_b[0]["id"]
    assert b.wait_for("voisin paul")["total"] == 1
    before = server.dump()
    delays: list[float] = []

    # print at desk A (real CUPS): B shows it printed
    status, body = a.call("POST", f"/api/v1/certificates/{id_a}/print", b"{}")
    assert status == 200, body
    cups.wait_for_output(body["job"])
    cert, took = _until(lambda: b.cert(id_b), lambda c: c["printed_at"] is not None)
    delays.append(took)
    assert cert["delivered_at"] is None

    # hand-over at desk A with initials: B shows « remis (autre poste) », never the initials
    status, body = a.call("POST", f"/api/v1/certificates/{id_a}/delivered", b'{"initials": "MB"}')
    assert status == 200 and body["delivered_by"] == "MB"
    cert, took = _until(lambda: b.cert(id_b), lambda c: c["delivered_at"] is not None)
    delays.append(took)
    assert cert["delivered_by"] == "autre poste"
    assert b.search("partage aline")["results"][0]["delivered_by"] == "autre poste"

    # undo at A clears the keyword and B's state
    status, body = a.call("DELETE", f"/api/v1/certificates/{id_a}/delivered")
    assert status == 200 and body["delivered_at"] is None
    cert, took = _until(lambda: b.cert(id_b), lambda c: c["delivered_at"] is None)
    delays.append(took)

    # hand-over at desk B reaches A
    status, body = b.call("POST", f"/api/v1/certificates/{id_b}/delivered", b'{"initials": "JD"}')
    assert status == 200
    cert, took = _until(lambda: a.cert(id_a), lambda c: c["delivered_at"] is not None)
    delays.append(took)
    assert cert["delivered_by"] == "autre poste"
    assert all(d < 5 for d in delays), delays
    print(f"keyword round trips: {[round(d, 2) for d in delays]} s, median {statistics.median(delays):.2f} s")

    # the other certificate was never touched, on either desk
    assert b.search("voisin paul")["results"][0]["delivered_at"] is None
    assert a.search("voisin paul")["results"][0]["printed_at"] is None

    # the server: same messages, same bytes; flags differ by our keywords only
    after = server.dump()
    assert after.keys() == before.keys()
    changed = []
    for uid, (flags, digest) in after.items():
        old_flags, old_digest = before[uid]
        assert digest == old_digest
        assert set(flags) - KEYWORDS == set(old_flags) - KEYWORDS
        if set(flags) != set(old_flags):
            changed.append((uid, set(flags)))
    assert changed == [(changed[0][0], KEYWORDS)], changed  # one message: printed and delivered (by B)
    assert "\\Seen" not in changed[0][1]

    # initials stay in each desk's own audit trail
    audit_a = Cli(a.home).run("audit", "export").stdout
    audit_b = Cli(b.home).run("audit", "export").stdout
    assert "MB" in audit_a and "delivered_elsewhere" in audit_b and "undelivered_elsewhere" in audit_b
    assert "PARTAG" not in audit_b.upper()


def test_certificate_from_a_file_keeps_local_state(server: Dovecot, desks: tuple[Helper, Helper, CupsPdf]) -> None:
    a, b, _ = desks
    spec = recent_spec(random.Random(21), last_name="FICHIER", first_name="Local")
    status, body = a.call("POST", "/api/v1/messages", mailgen.make_message(spec), "message/rfc822")
    assert status == 200 and body["results"][0]["status"] == "new"
    cert_id = body["results"][0]["certificate_id"]
    before = server.dump()
    status, body = a.call("POST", f"/api/v1/certificates/{cert_id}/delivered", b'{"initials": "MB"}')
    assert status == 200 and body["delivered_by"] == "MB"
    time.sleep(2)
    assert server.dump() == before
    assert b.search("fichier local")["total"] == 0
