"""Messages read from IMAP: parsed in the budgeted worker pool, recorded in the caller's transaction.

The IMAP sync (``helper.service.imapread``) hands over a stream of :class:`~helper.index.worker.Item`:
one per message fetched whole (its bytes in ``data``, its UID in ``path``), and marks
(``item == "end"``) standing for the sync's own bookkeeping, which pass through in order.

1. :func:`parse` runs ``process_item`` on each message in the same worker pool as the ingest of
   files (``helper.index.pool``: processes not forked from the service, which has threads, but
   from a fork server where the system has one — the parser imported once, not once per worker;
   every message within the parse-time budget; kept idle between syncs so that the next new mail
   is parsed at once). Workers parse, apply the trust rules and write the certificates' PDFs into the
   content-addressed store; only the outcomes come back. Results come back in the order given,
   marks included; without worker processes, messages are parsed in this process. The folder
   threads take turns with one pool; :func:`warm` starts it when a folder's session begins.
2. :func:`record` stores one message's outcomes, as ``helper.index.pushed.ingest_message`` does
   (same statuses), but inside the caller's transaction: the sync commits once per batch of
   messages, not once per message. PDFs written for a duplicate are listed in ``unkept`` and
   removed by :func:`forget_unkept` after the commit unless a row uses them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from helper.index import lifecycle
from helper.index.budget import parse_budget
from helper.index.pushed import MessageOutcome, record_outcomes
from helper.index.store import Store
from helper.index.worker import (
    Item,
    Result,
    _given_up,
    _init_pool_worker,
    _init_worker,
    _process_or_mark,
    _small_item,
)
from helper.parse.message import Certificate, Outcome
from helper.parse.trust import TrustPolicy

#: What a worker that verifies barcodes uses (helper.parse.pdftext, step 1), imported once by the
#: fork server and shared by its workers rather than imported by each.
VERIFY_MODULES = ["zxingcpp", "cbor2", "helper.parse.pdfcodes", "helper.parse.verify", "helper.parse.trustlist",
                  "cryptography.hazmat.primitives.asymmetric.ec", "cryptography.hazmat.primitives.asymmetric.rsa",
                  "cryptography.hazmat.primitives.asymmetric.padding", "cryptography.hazmat.primitives.asymmetric.utils"]

#: One parse pool for every IMAP folder thread: they take turns (the cores are shared anyway), and
#: two folders read at start-up do not each spawn a pool of their own.
_turn = threading.Lock()


def _pool_key(store: Store, trust: TrustPolicy, workers: int, expire_before: str | None) -> tuple[Any, ...]:
    return ("imap", workers, str(store.blobs.root), trust, expire_before, parse_budget())


def _start(key: tuple[Any, ...]) -> Any:
    from helper.index.pool import BudgetPool, service_start_method

    _, workers, blob_root, trust, expire_before, budget = key
    return BudgetPool(
        workers, _process_or_mark, budget=budget,
        on_timeout=lambda item: _given_up(item, "too_slow", f"analyse interrompue après {budget:g} s"),
        on_crash=lambda item: _given_up(item, "malformed", "l'analyse de ce message a arrêté son processus"),
        initializer=_init_pool_worker, initargs=(blob_root, trust, expire_before),
        start_method=service_start_method(["helper.index.worker", *(VERIFY_MODULES if trust.verify_barcodes else [])]),
        small=_small_item,
    )


def warm(store: Store, trust: TrustPolicy, workers: int, expire_before: str | None) -> None:
    """Start the pool now (spawned workers take about a second to import the parser), so that the
    first new mail after start-up is parsed at once; it then waits, idle, between syncs."""
    from helper.index.pool import PoolBroken, borrow, give_back

    if workers <= 1:
        return
    key = _pool_key(store, trust, workers, expire_before)
    if not _turn.acquire(blocking=False):
        return  # another folder is using (or starting) the pool
    try:
        give_back(key, borrow(key, lambda: _start(key)))
    except PoolBroken:
        pass
    finally:
        _turn.release()


def parse(store: Store, trust: TrustPolicy, workers: int, expire_before: str | None,
          items: Iterable[Item]) -> Iterator[Result]:
    """Results of ``items`` in their order, parsed by ``workers`` budgeted processes (inline if 1)."""
    from helper.index.pool import PoolBroken, borrow, give_back

    key = _pool_key(store, trust, workers, expire_before)
    with _turn:
        pool = None
        if workers > 1:
            try:
                pool = borrow(key, lambda: _start(key))
            except PoolBroken:
                pool = None
        if pool is None:
            _init_worker(str(store.blobs.root), trust, expire_before)
            for item in items:
                yield _process_or_mark(item)
            return
        try:
            yield from pool.imap(items)
        finally:
            give_back(key, pool)


def record(store: Store, raw: bytes, outcomes: list[Outcome], source: str, *, retention_days: int | None,
           expire_before: str | None, quarantine_max_mb: int, unkept: set[str]) -> list[MessageOutcome]:
    """Store one message's outcomes in the caller's transaction (statuses as ``ingest_message``); the
    worker already wrote the PDF: one whose row is not kept is noted in ``unkept``."""

    def add(cert: Certificate) -> tuple[str, int | None]:
        status, cert_id = store.add(cert, source, None)
        if status != "new" and cert.pdf_sha256:
            unkept.add(cert.pdf_sha256)
        return status, cert_id

    return record_outcomes(store, raw, outcomes, add, retention_days=retention_days,
                           expire_before=expire_before, quarantine_max_mb=quarantine_max_mb)


def forget_unkept(store: Store, unkept: set[str]) -> None:
    """After the commit: PDFs written for certificates whose row was not kept, unless a row uses them."""
    lifecycle.remove_if_unused(store, unkept | store.dropped_pdfs)
    unkept.clear()
    store.dropped_pdfs.clear()


def message_item(uid: int, raw: bytes) -> Item:
    """The work item of a message fetched whole (its UID travels in ``path``)."""
    from helper.sources.files import EML

    return Item(str(uid), EML, "", raw, len(raw))


def mark_item(number: int) -> Item:
    """A mark that passes through the pool in order (``number`` finds the caller's record of it)."""
    from helper.sources.files import EML

    return Item("mark", EML, "end", None, number)
