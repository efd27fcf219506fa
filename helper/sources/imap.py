"""IMAP mailboxes as a source: the client side (connection, TLS, login, fetching, keywords).

What happens, step by step (the loop around it is ``helper.service.imapsync``):

1. and 2. :func:`connect` (``helper.sources.imaplogin``): TLS 1.2+, server certificate checked,
   client certificate (SASL EXTERNAL) or password file, every failure an :class:`ImapError` in French
   (certificate refused, expired, issued by another authority, server certificate not recognised,
   login refused, server unreachable; a missing folder is found at step 3);
3. :class:`Folder` selects one folder once per connection (then :meth:`Folder.refresh`: STATUS
   and NOOP, not a costly new SELECT) and reads, never altering a message: new UIDs after the last
   one seen; their header fields first (``BODY.PEEK``: nothing is marked read); the whole message
   only when the headers say it may be a certificate (:func:`may_be_certificate`); the keywords of
   messages already known (``CHANGEDSINCE`` when the server has CONDSTORE);
4. the only writes are the keywords ``$SidepImprime`` / ``$SidepRemis`` (only when the folder's
   PERMANENTFLAGS allow new keywords, ``\\*``) and the optional move to ``move_processed_to``;
5. :meth:`Folder.wait` waits for news: IDLE where offered (the server tells of new mail or changed
   flags at once), else a plain pause, checking every 0.2 s whether to stop or to write. During
   IDLE nothing is parsed: any byte from the server (in imaplib's buffer or on the socket) ends the
   wait, and what it said is read in blocking mode (:meth:`Folder._buffered` says why).

Nothing here logs a credential, a header value or a message: imapclient's own loggers are silenced.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from helper.parse.mime import decode_rfc2047, split_headers
from helper.sources.imaplogin import Account, ImapError, connect
from helper.sources.imaplogin import clean as _clean

__all__ = ["Account", "Folder", "FolderInfo", "ImapError", "connect", "header_fields", "may_be_certificate",
           "message_id"]

KW_PRINTED = "$SidepImprime"
KW_DELIVERED = "$SidepRemis"
HEADER_FIELDS = b"BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID CONTENT-TYPE)]"
HEADER_ITEMS = f"({HEADER_FIELDS.decode()} RFC822.SIZE)"
#: Messages fetched whole per round trip (and at most this many bytes announced by RFC822.SIZE).
BODY_BATCH = 100
BODY_BATCH_BYTES = 16 * 1024 * 1024
HEADER_BATCH = 500
_UID_RE = re.compile(rb"\bUID (\d{1,10})\b")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d{1,20})\b")


# --- one folder -------------------------------------------------------------------------------------

@dataclass
class FolderInfo:
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None
    keywords_allowed: bool
    selected: bool = True  # numbers from SELECT (False: from STATUS, which a server may give late)


class Folder:
    """One selected folder on a logged-in connection."""

    def __init__(self, client: IMAPClient, name: str) -> None:
        self.client = client
        self.name = name
        self.condstore = client.has_capability("CONDSTORE")
        self.idle_ok = client.has_capability("IDLE")
        self.move_ok = client.has_capability("MOVE")
        self.info: FolderInfo | None = None
        if self.condstore:
            try:
                client.enable("CONDSTORE")
            except IMAPClientError:
                self.condstore = False

    def select(self) -> FolderInfo:
        try:
            data = self.client.select_folder(self.name)
        except IMAPClientError as exc:
            text = _clean(exc)
            if re.search(r"NONEXISTENT|doesn.t exist|not exist|unknown mailbox|introuvable", text, re.I):
                raise ImapError("folder_missing", f"Dossier « {_clean(self.name, 80)} » introuvable sur le serveur.") from exc
            raise
        flags = data.get(b"PERMANENTFLAGS", ())
        modseq = data.get(b"HIGHESTMODSEQ")
        self.info = FolderInfo(
            uidvalidity=int(data[b"UIDVALIDITY"]),
            uidnext=int(data.get(b"UIDNEXT", 0) or 0),
            exists=int(data.get(b"EXISTS", 0) or 0),
            highestmodseq=int(modseq) if modseq is not None and self.condstore else None,
            keywords_allowed=b"\\*" in flags,
        )
        return self.info

    def refresh(self) -> FolderInfo:
        """The folder's numbers again, without selecting it anew: a SELECT makes the server open the
        mailbox again (Dovecot, Maildir: ~1 s for 10,000 messages, on every new mail). STATUS gives
        UIDVALIDITY, UIDNEXT, the count and HIGHESTMODSEQ, then NOOP brings what it counted into
        this session's view (new messages, expunges); PERMANENTFLAGS are those of the last SELECT.
        A changed UIDVALIDITY (or no SELECT yet) selects."""
        if self.info is None:
            return self.select()
        items = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        if self.info.highestmodseq is not None:
            items.append(b"HIGHESTMODSEQ")
        now = self.client.folder_status(self.name, items)
        if int(now.get(b"UIDVALIDITY", 0) or 0) != self.info.uidvalidity:
            return self.select()
        self.client.noop()
        modseq = now.get(b"HIGHESTMODSEQ")
        self.info = FolderInfo(
            uidvalidity=self.info.uidvalidity,
            uidnext=int(now.get(b"UIDNEXT", 0) or 0),
            exists=int(now.get(b"MESSAGES", 0) or 0),
            highestmodseq=int(modseq) if modseq is not None else None,
            keywords_allowed=self.info.keywords_allowed,
            selected=False,
        )
        return self.info

    def new_uids(self, after: int) -> list[int]:
        """UIDs above ``after``, ascending (``n:*`` also answers the last message: filtered)."""
        if self.info is not None and self.info.selected and self.info.uidnext and self.info.uidnext <= after + 1:
            return []
        return sorted(u for u in self.client.search(["UID", f"{after + 1}:*"]) if u > after)

    def headers(self, uids: list[int]) -> Iterator[tuple[int, int, bytes]]:
        """(uid, size, header bytes) for each message still there."""
        for chunk in _chunks(uids, HEADER_BATCH):
            found = self._fetch_headers(chunk)
            for uid in chunk:
                item = found.get(uid)
                if item is None:
                    continue  # expunged meanwhile
                yield uid, item[0], item[1]

    def _fetch_headers(self, uids: list[int]) -> dict[int, tuple[int, bytes]]:
        """uid → (RFC822.SIZE, header fields) from one ``UID FETCH`` (the command imapclient's
        ``fetch`` sends, byte for byte), read by imaplib and picked out of its answer directly:
        imapclient's response parser walks every character in Python (~20 µs a message)."""
        imap = self.client._imap  # noqa: SLF001
        tag = imap._command("UID", "FETCH", ",".join(map(str, uids)), HEADER_ITEMS)  # noqa: SLF001
        typ, data = imap._command_complete("FETCH", tag)  # noqa: SLF001
        if typ != "OK":
            raise IMAPClientError(f"FETCH: {_clean(data)}")
        typ, data = imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
        return header_answers(data)

    def bodies(self, uids: list[tuple[int, int]]) -> Iterator[tuple[int, bytes | None]]:
        """(uid, whole message) for (uid, size) pairs, fetched in batches bounded by count and size."""
        batch: list[int] = []
        size = 0
        for uid, n in uids:
            batch.append(uid)
            size += n
            if len(batch) >= BODY_BATCH or size >= BODY_BATCH_BYTES:
                yield from self._fetch_bodies(batch)
                batch, size = [], 0
        if batch:
            yield from self._fetch_bodies(batch)

    def _fetch_bodies(self, uids: list[int]) -> Iterator[tuple[int, bytes | None]]:
        """One ``UID FETCH … (BODY.PEEK[])`` through imaplib directly: each message is one literal,
        taken as imaplib read it (imapclient's response parser would tokenise it again: measured
        ~15 % of the fetch)."""
        imap = self.client._imap  # noqa: SLF001
        typ, data = imap.uid("FETCH", ",".join(map(str, uids)), "(BODY.PEEK[])")
        if typ != "OK":
            raise IMAPClientError(f"FETCH: {_clean(data)}")
        found: dict[int, bytes] = {}
        for i, part in enumerate(data):
            if not isinstance(part, tuple) or len(part) != 2 or b"BODY[]" not in part[0]:
                continue  # the closing parenthesis, or an unsolicited FETCH (flags changed elsewhere)
            m = _UID_RE.search(part[0])
            if m is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                m = _UID_RE.search(data[i + 1])  # UID sent after the literal
            if m is not None:
                found[int(m.group(1))] = part[1]
        for uid in uids:
            yield uid, found.get(uid)

    def keywords(self, uids: Iterable[int] | None, changed_since: int | None) -> dict[int, set[str]]:
        """Our keywords on messages: all of ``uids``, or every message changed since a MODSEQ."""
        out: dict[int, set[str]] = {}
        pairs: list[tuple[int, Any]] = []
        if changed_since is not None:
            pairs.extend(self._fetch_range("1:*", f"(FLAGS) (CHANGEDSINCE {changed_since})"))
        else:
            wanted = sorted(set(uids or ()))
            for chunk in _chunks(wanted, 2000):
                pairs.extend(self.client.fetch(chunk, [b"FLAGS"]).items())
        for uid, item in pairs:
            flags = {f.decode("ascii", "replace") if isinstance(f, bytes) else str(f) for f in item.get(b"FLAGS", ())}
            out[uid] = {f for f in flags if f in (KW_PRINTED, KW_DELIVERED)}
        return out

    def _fetch_range(self, seqset: str, items: str) -> Iterable[tuple[int, Any]]:
        """``UID FETCH`` over a range (imapclient's ``fetch`` accepts explicit UIDs only)."""
        from imapclient.response_parser import parse_fetch_response

        imap = self.client._imap  # noqa: SLF001
        tag = imap._command("UID", "FETCH", seqset, items)  # noqa: SLF001
        typ, data = imap._command_complete("FETCH", tag)  # noqa: SLF001
        if typ != "OK":
            raise IMAPClientError(f"FETCH: {_clean(data)}")
        typ, data = imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
        return parse_fetch_response(data, self.client.normalise_times, True).items()

    def set_keyword(self, uids: list[int], keyword: str, on: bool) -> None:
        if on:
            self.client.add_flags(uids, [keyword], silent=True)
        else:
            self.client.remove_flags(uids, [keyword], silent=True)

    def _changed_since_select(self) -> bool:
        """Mail or flags changed while we were reading (a notification may have been consumed).

        A NOOP first: Dovecot's STATUS of the selected folder gives this session's view, which only a
        command such as NOOP brings up to date. (An IDLE begun afterwards does announce such mail,
        right after ``+ idling`` and usually in the same packet: see :meth:`_buffered`.)"""
        if self.info is None:
            return False
        _, untagged = self.client.noop()
        if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"EXPUNGE") for r in untagged):
            return True
        items = [b"UIDNEXT"] + ([b"HIGHESTMODSEQ"] if self.info.highestmodseq is not None else [])
        now = self.client.folder_status(self.name, items)
        if int(now.get(b"UIDNEXT", 0) or 0) > self.info.uidnext:
            return True
        modseq = now.get(b"HIGHESTMODSEQ")
        return modseq is not None and self.info.highestmodseq is not None and int(modseq) > self.info.highestmodseq

    def move(self, uids: list[int], target: str) -> tuple[int, dict[int, int]] | None:
        """Move to ``target`` with the MOVE command only (never copy-then-delete); None if not offered.

        Returns the target's UIDVALIDITY and {old uid: new uid} from the server's COPYUID answer
        (UIDPLUS), or (0, {}) when the server does not say."""
        if not self.move_ok or not uids:
            return None
        untagged = self.client._imap.untagged_responses  # noqa: SLF001 - COPYUID comes untagged
        untagged.pop("OK", None)
        self.client.move(uids, target)
        validity, mapping = 0, {}
        for item in untagged.pop("OK", []) or []:
            text = item.decode("ascii", "replace") if isinstance(item, bytes) else str(item)
            m = re.search(r"\[COPYUID (\d{1,10}) ([\d:,]{1,10000}) ([\d:,]{1,10000})\]", text)
            if m:
                validity = int(m.group(1))
                mapping.update(zip(_expand(m.group(2)), _expand(m.group(3)), strict=False))
        return validity, mapping

    def wait(self, seconds: float, interrupted: Callable[[], bool]) -> None:
        """Until the server tells of a change (IDLE), ``seconds`` pass, or ``interrupted()`` says so."""
        deadline = time.monotonic() + seconds
        if self._changed_since_select():
            return
        if not self.idle_ok:
            while time.monotonic() < deadline and not interrupted():
                time.sleep(0.2)
            self.client.noop()
            return
        self.client.idle()
        try:
            sock = self.client.socket()
            while time.monotonic() < deadline and not interrupted():
                if self._buffered():
                    break  # the server said something (new mail, changed flags, a keep-alive): look
                select.select([sock], [], [], 0.2)
        finally:
            self.client.idle_done()  # reads what the server said, in blocking mode

    def _buffered(self) -> bool:
        """Whether the server has said something since IDLE began: bytes in imaplib's buffered
        reader, or on the socket (read into that buffer, whole, without waiting).

        Not imapclient's ``idle_check``, for two reasons found with Dovecot: the server often sends
        IDLE's ``+ idling`` and the ``* n EXISTS`` of mail that came while we were reading in one
        packet, and reading the first line buffers both, where a poll on the socket never sees the
        second (the wait lasted until ``poll_seconds``); and its non-blocking ``readline`` over TLS
        drops the start of a line whose end has not arrived yet (``SSLWantReadError``). Here nothing
        is parsed during IDLE: any news ends the wait, and ``idle_done`` reads it in blocking mode."""
        imap = self.client._imap  # noqa: SLF001
        sock = self.client.socket()
        sock.setblocking(False)
        try:
            return bool(imap.file.peek(1))  # buffered bytes, or one read that does not wait
        except (OSError, ValueError):  # nothing to read now (SSLWantReadError, BlockingIOError)
            return False
        finally:
            sock.setblocking(True)
            self.client._set_read_timeout()  # noqa: SLF001 - what idle_check restores too


def header_fields(header: bytes) -> dict[str, str]:
    """The fields of a fetched header block (its first 64 KiB), split once for
    :func:`may_be_certificate` and :func:`message_id`."""
    return split_headers(header[:65536])[0]


def may_be_certificate(header: bytes | dict[str, str], trusted: frozenset[str]) -> bool:
    """Whether the message must be read whole: False only for mail that cannot hold a certificate.

    A superset of what the parser accepts: a multipart or ``message/*`` message (attachments,
    forwards), a subject with « Certificat de test », or a From line that mentions a trusted
    address. The trust decision itself is the parser's, on the whole message. ``header``: the
    header bytes, or their :func:`header_fields`.
    """
    headers = header if isinstance(header, dict) else header_fields(header)
    ctype = headers.get("content-type", "text/plain").strip().lower()
    if not ctype.startswith("text/"):
        return True
    subject = re.sub(r"\s+", "", decode_rfc2047(headers.get("subject", "")[:4096]).lower())
    if "certificatdetest" in subject:
        return True
    sender = headers.get("from", "")[:4096].lower()
    return any(address in sender for address in trusted)


def message_id(header: bytes | dict[str, str]) -> str | None:
    """The Message-ID as the store keeps it (``<…>``), or None (``header``: as for :func:`may_be_certificate`)."""
    headers = header if isinstance(header, dict) else header_fields(header)
    m = re.search(r"<[^<>\s]{1,998}>", headers.get("message-id", "")[:2000])
    return m.group(0) if m else None


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, socket.timeout, IMAPClientError, ssl.SSLError, EOFError))


def _expand(seqset: str) -> list[int]:
    """``1:3,7`` → [1, 2, 3, 7] (ranges in the order given)."""
    out: list[int] = []
    for part in seqset.split(","):
        lo, _, hi = part.partition(":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def header_answers(data: list) -> dict[int, tuple[int, bytes]]:
    """uid → (RFC822.SIZE, header fields) from imaplib's data for a header ``FETCH``: a response
    with a literal is a (text before, literal) tuple followed by the rest of its line (where some
    servers put UID and RFC822.SIZE); one without (NIL or "" header fields) is plain bytes."""
    found: dict[int, tuple[int, bytes]] = {}
    for i, part in enumerate(data):
        if isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], bytes):
            text, header = part[0], bytes(part[1] or b"")
            if i + 1 < len(data) and isinstance(data[i + 1], bytes):
                text += data[i + 1]  # the rest of the response line, after the literal
        elif isinstance(part, bytes) and not (i > 0 and isinstance(data[i - 1], tuple)):
            text, header = part, b""  # header fields given as NIL or "" (no literal)
        else:
            continue
        upper = text.upper()
        if b"HEADER.FIELDS" not in upper and b"RFC822.SIZE" not in upper:
            continue  # the closing parenthesis, or an unsolicited FETCH (flags changed elsewhere)
        uid, size = _UID_RE.search(text), _SIZE_RE.search(text)
        if uid is not None:
            found[int(uid.group(1))] = (int(size.group(1)) if size else 0, header)
    return found


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
