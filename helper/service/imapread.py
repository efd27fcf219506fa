"""Reading the new messages of one IMAP folder: fetching overlaps parsing, one commit per batch.

Called by ``helper.service.imapsync`` with the UIDs above the last one read. Step by step:

1. a fetch thread has the IMAP connection to itself until the UIDs are read. By batches of
   ``UID_BATCH`` UIDs it fetches the header fields (one round trip; ``BODY.PEEK``: nothing marked
   read), looks each Message-ID up in the index (its own connection to it): a message already
   indexed is only linked; one that cannot hold a certificate is skipped; one over ``MAX_READ``
   is never fetched (quarantined, left on the server); the others are fetched whole
   (``BODY.PEEK[]``, batches of ``BODY_BATCH``, one ``UID FETCH`` each, read by imaplib with its
   trace off: ``helper.sources.imaplogin``) and put in a bounded queue (``QUEUE_ITEMS`` messages
   at most: memory stays bounded whatever the backlog; the fetch is several times faster than
   the parsing, so a short queue keeps the workers fed), with a mark after every ``BODY_BATCH``
   messages and at the end of the batch of UIDs (the highest UID it covers);
2. this thread takes the queue through the parse worker pool (``helper.index.imapingest``): the
   workers parse while the next messages are being fetched, and give results back in order; each
   result is recorded as it comes (the pool hands out more work between two results, and may run
   ahead of the recording by up to its window: several marks can be in the pool at once, each
   numbered in order of arrival to find its batch);
3. at its mark, a batch's links and the highest UID read (``imap_links``, ``imap_folders``) are
   written in the transaction that holds its certificates; the transaction is committed at a mark
   once ``COMMIT_MESSAGES`` messages or ``COMMIT_SECONDS`` have gone by since it began, when no
   fetched message is waiting, when the service stops, or at the end (one commit for several
   batches of a backlog: each commit writes a new full-text segment). A helper killed before a
   commit reads those batches again, and the store recognises what it already holds; a stopping
   service ends the read there. Both threads' connections to the index have a small page cache
   (``SYNC_CACHE_KIB``);
4. with ``move_processed_to``, the certificate messages read are moved once the fetch thread is
   done with the connection (IMAP MOVE only).

A connection lost in the fetch thread is raised here, after what was committed stays committed.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from helper.config import ImapSource, Settings
from helper.index import imapingest, imapstate, lifecycle
from helper.index.store import Store
from helper.index.worker import MAX_READ, Item
from helper.parse.trust import TrustPolicy
from helper.sources.imap import BODY_BATCH, Folder, FolderInfo, header_fields, may_be_certificate, message_id

UID_BATCH = 500
#: Messages fetched whole and not yet parsed, at most (about 50 KB each for a certificate).
QUEUE_ITEMS = 100
#: A transaction spans marks until this many messages are recorded in it, or this many seconds pass
#: (measured, 3,000 bench messages: recording 0.21 ms per message with a commit every 100, ~0.16
#: with one every 500; the time bound keeps new certificates searchable and the index's write lock
#: short for the API).
COMMIT_MESSAGES = 500
COMMIT_SECONDS = 0.5
#: Parse workers: two per core (a worker also waits on the disk, writing PDFs), at most this many.
MAX_WORKERS = 4


#: SQLite page cache of the sync's connections to the index, in KiB (the store's default, 16 MiB, is
#: for searches; the sync writes rows and looks up Message-IDs: ~10 MiB less RSS at 10,000 messages).
SYNC_CACHE_KIB = 2048


def lean_store(settings: Settings) -> Store:
    """A connection to the index for a sync thread, with a small page cache."""
    store = Store(settings.data_dir)
    store.db.execute(f"PRAGMA cache_size = -{SYNC_CACHE_KIB}")
    return store


@dataclass
class Batch:
    """What the fetch thread found in one batch of UIDs, besides the messages it fetched."""

    last_uid: int
    links: dict[int, list[int]] = field(default_factory=dict)  # uid → certificates, by Message-ID
    too_large: list[int] = field(default_factory=list)
    ignored: int = 0


def _batch(found: list[tuple[int, str, list[int]]], last_uid: int) -> Batch:
    """The mark ending at ``last_uid``: what the headers said of the UIDs up to it (taken off ``found``)."""
    batch = Batch(last_uid)
    while found and found[0][0] <= last_uid:
        uid, what, ids = found.pop(0)
        if what == "known":
            batch.links[uid] = ids
        elif what == "too_large":
            batch.too_large.append(uid)
        else:
            batch.ignored += 1
    return batch


class _Fetcher(threading.Thread):
    def __init__(self, settings: Settings, folder: Folder, uids: list[int]) -> None:
        super().__init__(name=f"{threading.current_thread().name}-lecture", daemon=True)
        self.settings, self.folder, self.uids = settings, folder, uids
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_ITEMS)
        self.halt = threading.Event()

    def put(self, kind: str, value: Any) -> bool:
        while not self.halt.is_set():
            try:
                self.queue.put((kind, value), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        store = lean_store(self.settings)
        try:
            trusted = self.settings.trusted_senders  # a prefilter only: the parser applies the trust rules
            for start in range(0, len(self.uids), UID_BATCH):
                chunk = self.uids[start : start + UID_BATCH]
                found: list[tuple[int, str, list[int]]] = []  # (uid, what, certificates) in UID order
                wanted: list[tuple[int, int]] = []
                for uid, size, head in self.folder.headers(chunk):
                    fields = header_fields(head)
                    mid = message_id(fields)
                    ids = imapstate.certificates_of_message_id(store, mid) if mid else []
                    if ids:
                        found.append((uid, "known", ids))
                    elif not may_be_certificate(fields, trusted):
                        found.append((uid, "ignored", []))
                    elif size > MAX_READ:
                        found.append((uid, "too_large", []))
                    else:
                        wanted.append((uid, size))
                fetched = 0
                for uid, raw in self.folder.bodies(wanted):
                    if raw is not None and not self.put("message", (uid, raw)):  # None: expunged meanwhile
                        return
                    fetched += 1
                    if fetched % BODY_BATCH == 0 and not self.put("batch", _batch(found, uid)):
                        return  # a mark every BODY_BATCH messages: the index grows while a backlog is read
                if self.halt.is_set() or not self.put("batch", _batch(found, chunk[-1])):
                    return
            self.put("done", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the sync thread, which reconnects
            self.put("error", exc)
        finally:
            store.close()


def _parse_settings(settings: Settings) -> tuple[TrustPolicy, int, int | None, str | None]:
    retention = settings.retention_days
    return (settings.trust(), min(2 * (os.cpu_count() or 1), MAX_WORKERS), retention,
            lifecycle.cutoff(retention) if retention else None)


def warm_parsers(settings: Settings, store: Store) -> None:
    """The parse workers started before any mail comes (``helper.index.imapingest.warm``)."""
    trust, workers, _, expire_before = _parse_settings(settings)
    imapingest.warm(store, trust, workers, expire_before)


def read_uids(settings: Settings, account: ImapSource, store: Store, folder: Folder, info: FolderInfo,
              uids: list[int], stopping: threading.Event) -> tuple[list[int], dict[str, int]]:
    """Read ``uids`` (ascending) of ``folder``; returns the UIDs linked and left in place, and counts."""
    source, name, valid = account.name, folder.name, info.uidvalidity
    counts = {"new": 0, "duplicate": 0, "ignored": 0, "quarantined": 0, "known": 0, "expired": 0}
    linked: list[int] = []
    if not uids:
        return linked, counts
    trust, workers, retention, expire_before = _parse_settings(settings)
    fetcher = _Fetcher(settings, folder, uids)
    batches: dict[int, Batch] = {}
    numbers = itertools.count()
    raws: dict[int, bytes] = {}

    def stream() -> Iterator[Item]:
        while True:
            kind, value = fetcher.queue.get()
            if kind == "message":
                uid, raw = value
                raws[uid] = raw
                yield imapingest.message_item(uid, raw)
            elif kind == "batch":
                # numbered in order of arrival (not by len(batches): a mark taken off would make the
                # next one reuse the number of a mark still in the pool — a lost batch, then KeyError)
                number = next(numbers)
                batches[number] = value
                yield imapingest.mark_item(number)
            elif kind == "error":
                raise value
            else:
                return

    fetcher.start()
    links: dict[int, list[int]] = {}  # uid → certificates, of the batch being read
    unkept: set[str] = set()
    tx: Any = None  # the open store.transaction(), from a batch's first result to a mark
    began, recorded, marks = 0.0, 0, 0  # when tx began, messages recorded and marks written in it
    pending: list[int] = []  # UIDs linked by the marks written in tx (committed: added to linked)
    results: Any = None

    def commit() -> None:
        nonlocal tx
        done, tx = tx, None
        done.__exit__(None, None, None)  # commit: the batches' certificates, links and UID together
        imapingest.forget_unkept(store, unkept)
        linked.extend(pending)
        pending.clear()

    try:
        for result in (results := imapingest.parse(store, trust, workers, expire_before, stream())):
            if tx is None:
                tx = store.transaction()
                tx.__enter__()
                began, recorded, marks = time.monotonic(), 0, 0
            if result.item.item != "end":
                recorded += 1
                # recorded at once, between two results (the pool keeps its workers fed meanwhile)
                uid = int(result.item.path)
                answers = imapingest.record(store, raws.pop(uid, b""), result.outcomes, "imap",
                                            retention_days=retention, expire_before=expire_before,
                                            quarantine_max_mb=settings.quarantine_max_mb, unkept=unkept)
                ids = [a.certificate_id for a in answers if a.certificate_id is not None]
                for answer in answers:
                    counts[answer.status] = counts.get(answer.status, 0) + 1
                if ids:
                    links[uid] = ids
                continue
            batch = batches.pop(result.item.size)
            links.update(batch.links)
            counts["known"] += len(batch.links)
            counts["ignored"] += batch.ignored
            for uid in batch.too_large:
                # never fetched (memory); it stays on the server, listed in quarantine with its place
                store.quarantine(f"imap:{source}/{name};UIDVALIDITY={valid};UID={uid}", "", "too_large",
                                 f"message > {MAX_READ} octets, laissé sur le serveur")
                counts["quarantined"] += 1
            imapstate.link_all(store, source, name, valid, links)
            imapstate.advance(store, source, name, valid, batch.last_uid)
            pending.extend(links)
            links.clear()
            marks += 1
            if (stopping.is_set() or recorded >= COMMIT_MESSAGES or time.monotonic() - began >= COMMIT_SECONDS
                    or fetcher.queue.empty()):
                commit()
            if stopping.is_set():  # service stopping: keep what is done, read the rest next time
                break
        if tx is not None and marks:
            commit()  # the end: the last marks
    except BaseException as exc:
        if tx is not None:  # rolled back: the batches since the last commit are read again next time
            tx.__exit__(type(exc), exc, exc.__traceback__)
            tx = None
        raise
    finally:
        if results is not None:
            results.close()  # gives the pool back (and the other folders their turn) at once
        fetcher.halt.set()
        fetcher.join()
    move_to = account.move_processed_to
    if move_to and move_to != name and linked:
        moved = folder.move(sorted(linked), move_to)
        if moved is not None:
            target_validity, mapping = moved
            imapstate.relocate(store, source, name, valid, move_to, target_validity, mapping,
                               [u for u in linked if u not in mapping])
            linked = []
    return linked, counts
