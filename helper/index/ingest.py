"""The ingest pipeline: discovered files → parsed outcomes → store, using both cores.

Worker processes read and parse messages and write PDFs into the content-addressed store;
the main process alone writes the database, in batched transactions that also record how far
each file was read. Killing the process at any moment loses nothing: an uncommitted batch is
simply read again on the next run, and the store recognises anything it already holds.

1. the files found are planned: unchanged ones skipped, a grown mbox resumed from its stored offset;
2. their items are parsed inline (small runs) or in the budgeted worker pool (``helper.index.worker``);
3. the results are recorded in batches (``COMMIT_EVERY_ITEMS`` / ``COMMIT_EVERY_SECONDS``) with the
   resume points; a message cut short in a file still being written is deferred, not quarantined.

A message pushed by an extension or read from IMAP goes through ``helper.index.pushed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helper.index import lifecycle
from helper.index.budget import parse_budget
from helper.index.progress import Progress
from helper.index.pushed import MessageOutcome, ingest_message  # noqa: F401 - re-exported (API, IMAP sync)
from helper.index.store import FileState, Store
from helper.index.worker import (  # noqa: F401 - re-exported (benchmarks, IMAP sync)
    ERROR,
    MAX_READ,
    SMALL_ITEM_BYTES,
    Item,
    Result,
    _given_up,
    _init_pool_worker,
    _init_worker,
    _process_or_mark,
    _small_item,
    process_item,
)
from helper.parse.trust import BARCODE_OVERRIDES, RECHECK_REASONS, TrustPolicy
from helper.sources.files import (
    EML,
    MAILDIR,
    MBOX,
    PDF,
    Found,
    discover,
    mbox_spans,
    starts_message,
    tail_fingerprint,
)

#: Below this much work the pool is not worth starting.
POOL_MIN_ITEMS = 200
COMMIT_EVERY_ITEMS = 2000
COMMIT_EVERY_SECONDS = 2.0
IN_PROGRESS = -1  # file size recorded while a file is only partly read


@dataclass
class Report:
    new: int = 0
    duplicates: int = 0
    ignored: int = 0
    quarantined: int = 0
    files: int = 0
    unchanged: int = 0
    elapsed: float = 0.0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    #: Messages cut short in a file still being written, or recent files that could not be opened
    #: (``defer_partial_seconds``): not recorded, read again when the file changes or on the next run.
    deferred: int = 0
    #: The run was asked to stop (``should_stop``) before reading everything; what it read is committed.
    stopped: bool = False
    #: Certificates already past ``retention_days`` when read: not stored (a tombstone is left).
    expired: int = 0
    #: Where they were: ``{"path", "item", "count"}`` per file (mbox: per message).
    expired_files: list[dict[str, object]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The figures of the run; ``expired`` only when some certificates were (the key is absent at 0)."""
        out = {"new": self.new, "duplicates": self.duplicates, "ignored": self.ignored, "quarantined": self.quarantined}
        if self.expired:
            out["expired"] = self.expired
        return out



# --- main side ---------------------------------------------------------------------------------

class Ingester:
    """Reads files into the store.

    ``trusted``: the trust settings (:class:`TrustPolicy`), or a bare set of trusted senders.
    ``start_method`` chooses how the worker pool is started (``multiprocessing`` start method);
    by default ``fork`` where available. A caller with threads of its own (the folder watcher)
    passes ``"spawn"``: forking a multi-threaded process is unsafe.
    """

    def __init__(
        self,
        store: Store,
        trusted: TrustPolicy | frozenset[str],
        *,
        workers: int | None = None,
        start_method: str | None = None,
        retention_days: int | None = None,
    ) -> None:
        self.store = store
        self.trusted = TrustPolicy.of(trusted)
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.start_method = start_method
        #: Certificates integrated before this ISO date are not stored (``expired``); None: keep all.
        self.retention_days = retention_days
        self.expire_before = lifecycle.cutoff(retention_days) if retention_days else None
        #: PDFs written by workers for certificates whose row was not kept (duplicates): removed
        #: after the commit unless a committed row uses them (an interrupted run leaves them to the purge).
        self._unkept: set[str] = set()

    def run(
        self,
        paths: list[Path],
        *,
        progress: bool = True,
        source: str | None = None,
        defer_partial_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Report:
        """Read what is new or changed under ``paths`` and commit it.

        ``defer_partial_seconds``: a message found cut short ("truncated") in a file modified less
        than that many seconds ago is taken for a file still being written: it is neither
        quarantined nor marked as read (for an mbox, only its last message qualifies), so the
        next change or the next run reads it again. The same goes for a recent file that could
        not be opened ("unreadable"). Without it (the command line), both are quarantined at once.

        ``should_stop``: polled between messages; when it answers True the run commits what it
        has read (an mbox keeps its resume offset) and returns early, with ``stopped`` set.
        """
        started = time.monotonic()
        report = Report()
        self._recheck_if_trust_changed()
        known = self.store.file_signatures()
        plan: list[tuple[Found, int]] = []  # (file, offset to read from)
        seen: set[str] = set()
        for found in discover(paths, known):
            if found.path in seen:  # overlapping paths (a file and its folder): read once
                continue
            seen.add(found.path)
            report.files += 1
            if self.store.known_signature(known, found.path) == (found.size, found.mtime_ns):
                report.unchanged += 1
                continue
            state = self.store.file_state(found.path) if found.kind == MBOX and found.path in known else None
            plan.append((found, self._resume_offset(found, state)))
        total_bytes = sum(f.size - off for f, off in plan)
        bar = Progress(total_bytes, enabled=progress)
        items = self._items(plan)
        use_pool = self.workers > 1 and (len(plan) >= POOL_MIN_ITEMS or total_bytes > 20 * 1024 * 1024)
        results = self._parallel(items, self.workers if use_pool else 1)
        defer_before_ns = (
            time.time_ns() - int(defer_partial_seconds * 1e9) if defer_partial_seconds is not None else None
        )
        try:
            self._store_results(results, plan, report, bar, source, defer_before_ns, should_stop)
        finally:
            results.close()  # a run stopped early: end the worker pool and release the files now
        lifecycle.remove_if_unused(self.store, self._unkept | self.store.dropped_pdfs)
        self._unkept.clear()
        self.store.dropped_pdfs.clear()
        bar.finish()
        report.elapsed = time.monotonic() - started
        return report

    def _recheck_if_trust_changed(self) -> None:
        """When IT changes the trusted senders or forwarders, files quarantined as ``untrusted_sender``
        or ``untrusted_forward`` are read again; when the barcode trust list changes, also saved PDFs
        quarantined ``pdf_not_certificate`` or ``pdf_unreadable`` (a new key may verify them)."""
        signatures = dict(zip(("trusted_senders", "trusted_forwarders"), self.trusted.signature(), strict=True))
        signatures["barcode_trust"] = self.trusted.barcode_signature()  # a new trust list may vouch for more
        previous = {key: self.store.meta(key) for key in signatures}
        if previous == signatures:
            return
        with self.store.transaction():
            changed = {k for k, v in signatures.items() if previous[k] is not None and previous[k] != v}
            reasons = (*RECHECK_REASONS, *(BARCODE_OVERRIDES if "barcode_trust" in changed else ()))
            if changed:
                marks = ", ".join("?" for _ in reasons)
                self.store.db.execute(
                    f"DELETE FROM files WHERE path IN (SELECT path FROM quarantine WHERE reason IN ({marks}))",
                    reasons,
                )
            for key, value in signatures.items():
                self.store.set_meta(key, value)

    def _resume_offset(self, found: Found, state: FileState | None) -> int:
        if found.kind != MBOX or state is None or state.offset <= 0 or found.size < state.offset:
            return 0
        if state.tail and tail_fingerprint(found.path, state.offset) == state.tail:
            if found.size == state.offset or starts_message(found.path, state.offset):
                return state.offset
        return 0

    def _items(self, plan: list[tuple[Found, int]]) -> Iterator[Item]:
        for found, offset in plan:
            if found.kind == MBOX:
                try:
                    for start, end in mbox_spans(found.path, offset):
                        yield Item(found.path, MBOX, f"@{start}", None, end - start)
                except (OSError, ValueError) as exc:
                    yield Item(found.path, ERROR, f"@{offset}", str(exc).encode("utf-8", "replace"), 0)
                # Marks the end of the file for the committer.
                yield Item(found.path, MBOX, "end", None, 0)
            else:
                yield Item(found.path, found.kind, "", None, found.size)

    def _inline(self, items: Iterable[Item]) -> Generator[Result, None, None]:
        _init_worker(str(self.store.blobs.root), self.trusted, self.expire_before)
        for item in items:
            yield Result(item, []) if item.item == "end" else process_item(item)

    def _parallel(self, items: Iterable[Item], workers: int) -> Generator[Result, None, None]:
        """Parse in worker processes, each message within the parse-time budget (even a run of one
        message: a hostile one is stopped, not waited for)."""
        from helper.index.pool import BudgetPool, PoolBroken, borrow, give_back

        budget = parse_budget()
        blob_root = str(self.store.blobs.root)

        def start() -> BudgetPool:
            return BudgetPool(
                workers, _process_or_mark, budget=budget,
                on_timeout=lambda item: _given_up(item, "too_slow", f"analyse interrompue après {budget:g} s"),
                on_crash=lambda item: _given_up(item, "malformed", "l'analyse de ce message a arrêté son processus"),
                initializer=_init_pool_worker, initargs=(blob_root, self.trusted, self.expire_before),
                start_method=self.start_method, small=_small_item,
            )

        # Kept between runs (the watcher's small runs would otherwise start a process each time).
        key = (workers, self.start_method, blob_root, self.trusted, self.expire_before, budget)
        try:
            pool = borrow(key, start)
        except PoolBroken:  # no worker processes to be had: read in this process
            yield from self._inline(items)
            return
        try:
            yield from pool.imap(items)
        finally:
            give_back(key, pool)

    def _store_results(
        self,
        results: Iterable[Result],
        plan: list[tuple[Found, int]],
        report: Report,
        bar: Progress,
        source: str | None,
        defer_before_ns: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        found_by_path = {f.path: (f, off) for f, off in plan}
        cleared: set[str] = set()
        resume: dict[str, int] = {}  # mbox path → offset the next run starts from
        unfinished: set[str] = set()  # mbox paths whose last message was deferred
        pending = 0
        last_commit = time.monotonic()
        store = self.store
        store.db.execute("BEGIN IMMEDIATE")
        try:
            for res in results:
                if should_stop is not None and should_stop():
                    report.stopped = True
                    break
                item = res.item
                found, offset = found_by_path[item.path]
                if item.path not in cleared:
                    store.clear_quarantine(item.path, offset if found.kind == MBOX else None)
                    cleared.add(item.path)
                if item.item == "end":
                    at = resume.pop(item.path, offset)
                    size = IN_PROGRESS if item.path in unfinished else found.size
                    store.save_file_state(
                        FileState(found.path, size, found.mtime_ns, found.kind, at, tail_fingerprint(found.path, at))
                    )
                    continue
                cut = any(o.reason == "truncated" for o in res.outcomes)
                # A whole file that could not be opened right after it changed is most likely still
                # held by its writer or a virus scanner (Windows): retried too, not quarantined.
                busy = found.kind != MBOX and any(o.reason == "unreadable" for o in res.outcomes)
                start = int(item.item[1:]) if found.kind == MBOX and item.item.startswith("@") else 0
                if (cut or busy) and self._still_written(found, start + item.size, defer_before_ns):
                    # Not recorded at all: read again when the file changes, or by the next run.
                    report.deferred += 1
                    bar.advance(item.size)
                    if found.kind == MBOX:
                        resume[item.path] = start
                        unfinished.add(item.path)
                    continue
                only_expired = self._record(res, source or _source_name(found.kind), report)
                bar.advance(item.size)
                pending += 1
                if found.kind == MBOX:
                    # A message cut short (a mailbox still being written) is read again next time;
                    # any other message is done with. After a deferred message (the file grew while
                    # being read), the next run starts again from that one.
                    if item.path not in unfinished:
                        resume[item.path] = start if cut else start + item.size
                else:
                    # A file that gave only expired certificates is remembered under the keyed
                    # hash of its path: not read again, and its name (the patient's) not kept.
                    state = FileState(found.path, found.size, found.mtime_ns, found.kind)
                    store.save_file_state(state, anonymous=only_expired)
                if pending >= COMMIT_EVERY_ITEMS or time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
                    self._save_resume_points(resume, found_by_path)
                    store.commit()
                    pending = 0
                    last_commit = time.monotonic()
            if report.stopped:
                self._save_resume_points(resume, found_by_path)
            if plan:
                store.set_meta("last_ingest", _now())
            store.db.execute("COMMIT")
        except BaseException:
            store.db.execute("ROLLBACK")
            raise

    def _save_resume_points(self, resume: dict[str, int], found_by_path: dict[str, tuple[Found, int]]) -> None:
        """Record how far each mbox being read has been read, as not finished (next run resumes there)."""
        for path, at in resume.items():
            f, _ = found_by_path[path]
            self.store.save_file_state(FileState(f.path, IN_PROGRESS, f.mtime_ns, f.kind, at, tail_fingerprint(f.path, at)))

    @staticmethod
    def _still_written(found: Found, end: int, defer_before_ns: int | None) -> bool:
        """True for a cut message that may just not be fully written yet: its file changed recently,
        and for an mbox it is the last message (one in the middle is damaged for good)."""
        if defer_before_ns is None or found.mtime_ns < defer_before_ns:
            return False
        return found.kind != MBOX or end >= found.size

    def _record(self, res: Result, source: str, report: Report) -> bool:
        """Store one item's outcomes; True when they were all expired certificates."""
        item = res.item
        expired = 0
        for outcome in res.outcomes:
            cert = outcome.certificate
            if outcome.status == "certificate" and cert is not None and lifecycle.is_expired(cert, self.expire_before):
                expired += 1
                assert self.retention_days is not None
                lifecycle.bury(self.store, cert.site_finess, cert.dossier, "expired", self.retention_days)
            elif outcome.status == "certificate" and cert is not None:
                status, _ = self.store.add(cert, source, item.path)
                if status == "new":
                    report.new += 1
                else:
                    report.duplicates += 1
                    if cert.pdf_sha256:
                        self._unkept.add(cert.pdf_sha256)
            elif outcome.status == "quarantined":
                report.quarantined += 1
                reason = outcome.reason or "malformed"
                report.quarantine_reasons[reason] = report.quarantine_reasons.get(reason, 0) + 1
                self.store.quarantine(item.path, item.item, reason, outcome.detail)
            else:
                report.ignored += 1
        if expired:
            report.expired += expired
            report.expired_files.append({"path": item.path, "item": item.item, "count": expired})
        return expired > 0 and expired == len(res.outcomes)



def _source_name(kind: str) -> str:
    return {EML: "eml", MBOX: "mbox", MAILDIR: "maildir", PDF: "pdf"}.get(kind, kind)


def _now() -> str:
    from helper.index.store import now_iso

    return now_iso()
