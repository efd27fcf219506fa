"""Mail that comes while the helper is reading wakes it at once, not at the next poll.

The service reads, checks once more for news (NOOP, STATUS), then waits with IDLE. Mail delivered
after that check but before the IDLE is announced by Dovecot right after ``+ idling``, usually in the
same packet; imaplib's buffered
reader then holds the ``* n EXISTS`` line, and a poll on the socket alone would wait for the next
packet: until ``poll_seconds`` (60 s by default), far past "searchable within 5 s". A real Dovecot
(``tests/dovecot.py``), the helper's own connection and folder code (``helper.sources.imap``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import mailgen
import pytest
from dovecot import Dovecot, make_pki, start_dovecot

from helper.config import ImapSource
from helper.sources.imap import Folder, connect

WAIT = 20.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Dovecot]:
    server = start_dovecot(make_pki(tmp_path / "pki"), client_cert=True)
    yield server
    server.remove()


def test_mail_delivered_just_before_idle_ends_the_wait_at_once(server: Dovecot) -> None:
    rng = random.Random(5)
    server.append(mailgen.make_message(mailgen.random_spec(rng)))
    crt, key = server.pki.client("good")
    client = connect(ImapSource(name="bal", host="127.0.0.1", port=server.port, ca_file=server.pki.ca,
                                cert_file=crt, key_file=key))
    try:
        class LateMail(Folder):
            def _changed_since_select(self) -> bool:
                changed = super()._changed_since_select()
                # the mail comes after the last check before IDLE (a window of a millisecond or so)
                server.append(mailgen.make_message(mailgen.random_spec(rng)))
                return changed

        folder = LateMail(client, "INBOX")
        folder.select()
        for round_ in range(3):
            info = folder.refresh()  # what the service does before each read
            started = time.monotonic()
            folder.wait(WAIT, lambda: False)
            waited = time.monotonic() - started
            assert waited < 3, f"round {round_}: the new mail woke the helper only after {waited:.1f} s"
            assert folder.new_uids(info.uidnext - 1), "the mail that ended the wait is there to read"
    finally:
        client.logout()
