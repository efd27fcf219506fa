"""The header FETCH answer as imaplib reads it from a server, in the orders servers use.

Dovecot (the other IMAP tests' server) sends ``UID`` and ``RFC822.SIZE`` before the header
literal; other servers send them after it, or give the header fields as ``NIL``, or slip in an
unsolicited ``FETCH`` (flags changed by another client). A tiny scripted server on loopback answers
real imaplib, which the helper reads the answer from (:func:`helper.sources.imap.header_answers`).
"""

from __future__ import annotations

import imaplib
import socket
import threading

from helper.sources.imap import HEADER_ITEMS, header_answers

HEADER = b"From: SI-DEP <ne-pas-repondre@sidep.gouv.fr>\r\nSubject: x\r\n\r\n"


def _serve(listener: socket.socket, untagged: bytes) -> None:
    conn, _ = listener.accept()
    with conn, conn.makefile("rb") as lines:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        for line in lines:
            tag, command = line.split(b" ", 2)[:2]
            if command.upper() == b"UID":
                conn.sendall(untagged + tag + b" OK FETCH done\r\n")
            elif command.upper() == b"LOGOUT":
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")


def fetch_headers(untagged: bytes) -> dict[int, tuple[int, bytes]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    server = threading.Thread(target=_serve, args=(listener, untagged), daemon=True)
    server.start()
    imap = imaplib.IMAP4("127.0.0.1", listener.getsockname()[1])
    try:
        imap.login("secretariat", "secret")
        imap.select("INBOX")
        # what helper.sources.imap.Folder._fetch_headers does:
        tag = imap._command("UID", "FETCH", "1:*", HEADER_ITEMS)  # noqa: SLF001
        typ, data = imap._command_complete("FETCH", tag)  # noqa: SLF001
        assert typ == "OK"
        typ, data = imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
        return header_answers(data)
    finally:
        imap.logout()
        server.join(5)
        listener.close()


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def test_uid_before_or_after_the_header_literal_keeps_the_header() -> None:
    found = fetch_headers(
        b"* 1 FETCH (UID 5 RFC822.SIZE 1000 BODY[HEADER.FIELDS (FROM SUBJECT)] " + literal(HEADER) + b")\r\n"
        b"* 2 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] " + literal(HEADER) + b" UID 12 RFC822.SIZE 2000)\r\n"
    )
    assert found == {5: (1000, HEADER), 12: (2000, HEADER)}


def test_nil_header_fields_and_unsolicited_flags_are_not_taken_for_headers() -> None:
    found = fetch_headers(
        b"* 3 FETCH (FLAGS (\\Seen))\r\n"
        b"* 4 FETCH (UID 7 RFC822.SIZE 50 BODY[HEADER.FIELDS (FROM SUBJECT)] NIL)\r\n"
        b"* 5 FETCH (UID 8 RFC822.SIZE 60 BODY[HEADER.FIELDS (FROM SUBJECT)] " + literal(HEADER) + b")\r\n"
    )
    assert found == {7: (50, b""), 8: (60, HEADER)}
