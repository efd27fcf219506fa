"""Live folder watching for ``sidep-helper serve``: new mail on disk is indexed within seconds.

Watched out of the box: the user's downloads folder (Roundcube/Mailiz saves ``.eml`` files and
certificate PDFs there) and the ``Mail/`` and ``ImapMail/`` folders of every Thunderbird profile
found on the machine; plus the ``watch`` folders of the configuration and the ``--watch`` folders
of the service. Watched folders are only ever read.

How a change becomes an index entry:

- watchdog reports a file created, written, closed or renamed into a watched folder (recursively);
- the file waits until it is complete: its size and modification time unchanged across two checks
  ``STABLE_SECONDS`` apart, no browser download still running for it under a temporary name
  (``.part``, ``.crdownload``…), not empty (Firefox's placeholder). A mailbox that is written to
  without a pause is read anyway after ``MAX_WAIT_SECONDS``: the ingest resumes from where it
  stopped and leaves a message cut short for later;
- files that become ready together (a burst: a folder of 1,000 ``.eml`` dropped at once, a
  Thunderbird sync) are read in one run of :class:`helper.index.ingest.Ingester`, in a background thread
  that owns its own :class:`helper.index.store.Store`. A grown mbox is read from the stored offset; a
  rewritten (compacted) one is read again and the store recognises what it already holds;
- a message found cut short in a file modified less than ``DEFER_PARTIAL_SECONDS`` ago is not
  quarantined: it is read again at the next change, or by the periodic re-check.

At start-up, every watched folder gets an incremental ingest (what arrived while the helper was
down; unchanged files are skipped cheaply). Every ``RECHECK_SECONDS`` the folder list is
re-evaluated (a Downloads folder or a Thunderbird profile created later is picked up, a folder
deleted is reported absent) and watched folders are re-scanned for changes an event may have
missed (that also retries deferred files and stands in for a watch that could not be set up).

Logs (``sidep_helper.watch``) name folders and counts, never a file inside them: certificate PDF
names carry patient names.

Split by job: ``folders`` finds the default folders, ``watchedfolders`` keeps the folder list and
its watches, ``arrivals`` decides when a changed file is complete; this module runs the thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from helper.config import Settings
from helper.index.ingest import POOL_MIN_ITEMS, Ingester, Report
from helper.index.store import Store, now_iso
from helper.service.arrivals import (  # noqa: F401 - re-exported: the watcher's tuning
    BURST_HOLD_SECONDS,
    DOWNLOAD_SUFFIXES,
    MAX_WAIT_SECONDS,
    STABLE_SECONDS,
    Pending,
    take_ready,
    target_of,
)
from helper.service.folders import (  # noqa: F401 - re-exported: part of this module's public API
    CLI,
    CONFIGURED,
    DOWNLOADS,
    THUNDERBIRD,
    default_folders,
    path_id,
    thunderbird_mail_folders,
    thunderbird_profiles,
)
from helper.service.watchedfolders import ABSENT, FAILED, WATCHED, WatchedFolders, _Folder
from helper.sources.files import discover

log = logging.getLogger("sidep_helper.watch")

#: How often pending files are checked.
TICK_SECONDS = 0.2
#: A message cut short in a file modified less than this long ago is retried, not quarantined.
DEFER_PARTIAL_SECONDS = 10.0
#: Folder list re-evaluated, watched folders re-scanned.
RECHECK_SECONDS = 60.0
#: wait_idle: no event for this long before calling the watcher idle.
QUIET_SECONDS = 0.2


# --- the watcher ---------------------------------------------------------------------------------


class Watcher(WatchedFolders):
    """Watches folders and indexes what arrives in them, in a background thread.

    ``on_report`` is called (in the watcher's thread) with the :class:`helper.index.ingest.Report` of
    every run that read something: messages counted (``counts()``) or cut messages left for later
    (``deferred``). ``last_ingest()`` follows the runs that counted messages.
    """

    def __init__(
        self,
        settings: Settings,
        extra_folders: Iterable[Path] = (),
        *,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_folders = [Path(p).expanduser() for p in extra_folders]
        self.on_report = on_report
        data = os.path.abspath(settings.data_dir)
        self._data_keys = {os.path.normcase(data), os.path.normcase(os.path.realpath(data))}
        self._lock = threading.Condition()
        self._pending: dict[str, Pending] = {}
        self._last_event = 0.0
        self._busy = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._folders: list[_Folder] = []
        self._last_ingest: dict[str, Any] | None = None
        self._started = False
        self._set_folders(self._wanted(), initial=True)

    # --- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Set up the watches, then (in the background thread) catch up and follow changes."""
        if self._started:
            raise RuntimeError("Watcher already started")
        self._started = True
        from watchdog.observers import Observer

        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        with self._lock:
            self._busy = True  # the catch-up counts as work in progress
        fresh = self._refresh_folders()
        self._thread = threading.Thread(target=self._run, args=(fresh,), name="sidep-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop watching. An ingest in progress commits what it has read and ends; then the thread is joined."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(max(0.0, deadline - time.monotonic()))
            except RuntimeError:  # never started
                pass
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("Surveillance : l'indexation en cours ne s'est pas terminée en %.0f s", timeout)
        with self._lock:
            for folder in self._folders:
                folder.watch = None
                if folder.state == WATCHED:
                    folder.detail = "surveillance arrêtée"

    def folders(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"path": f.path, "kind": f.kind, "state": f.state, "detail": f.detail} for f in self._folders]

    def last_ingest(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._last_ingest) if self._last_ingest else None

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is pending or being read (and no event came for a moment); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                alive = self._thread is not None and self._thread.is_alive()
                if not alive or (
                    not self._pending and not self._busy and now - self._last_event >= QUIET_SECONDS
                ):
                    return True
                if now >= deadline:
                    return False
                self._lock.wait(min(0.05, deadline - now))

    # --- events (observer threads) -----------------------------------------------------------

    def _note(self, root: str, path: str, is_dir: bool) -> None:
        """A file or folder under ``root`` was created, written or renamed into place."""
        target = target_of(root, path, is_dir, self._data_keys)
        if target is None:
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                self._pending[path] = Pending(target, is_dir, now, now)
            else:
                entry.last_event = now
                entry.ready_at = None
            self._last_event = now
            self._lock.notify_all()


    def _run(self, roots: list[str]) -> None:
        store: Store | None = None
        try:
            store = Store(self.settings.data_dir)
            self._catch_up(store, roots)
            next_check = time.monotonic() + RECHECK_SECONDS
            while not self._stopping.is_set():
                with self._lock:
                    wait = TICK_SECONDS if self._pending else max(0.0, next_check - time.monotonic())
                    if wait:
                        self._lock.wait(wait)
                if self._stopping.is_set():
                    break
                if time.monotonic() >= next_check:
                    self._recheck(store)
                    next_check = time.monotonic() + RECHECK_SECONDS
                folders, targets = self._take_ready()
                try:
                    if targets:
                        self._ingest(store, targets, live=True)
                    if folders:  # after the ingest: files it has just read are known, not queued again
                        self._expand(store, folders)
                finally:
                    if folders or targets:
                        with self._lock:
                            self._busy = False
                            self._lock.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported, the service goes on serving searches
            log.exception("Surveillance des dossiers interrompue par une erreur")
            with self._lock:
                for folder in self._folders:
                    if folder.state != ABSENT:
                        folder.state, folder.detail = FAILED, f"indexation arrêtée ({type(exc).__name__}: {exc})"
        finally:
            if store is not None:
                store.close()
            with self._lock:
                self._busy = False
                self._lock.notify_all()

    def _catch_up(self, store: Store, roots: list[str]) -> None:
        """Whatever arrived while the helper was not running: an incremental ingest of every folder."""
        try:
            if roots and not self._stopping.is_set():
                self._ingest(store, roots, live=False)
        finally:
            with self._lock:
                self._busy = False
                self._lock.notify_all()

    def _recheck(self, store: Store) -> None:
        """Folders created or removed since, and changes that no event reported."""
        try:
            fresh = self._refresh_folders()
        except Exception:  # noqa: BLE001
            log.exception("Surveillance : nouvel examen des dossiers impossible")
            return
        roots = self._readable_roots()
        if fresh:
            log.info("Surveillance : %d nouveau(x) dossier(s) à lire", len(fresh))
        self._expand(store, roots)

    def _expand(self, store: Store, folders: list[str]) -> None:
        """Queue the new or changed files under ``folders`` (each then waits until it is complete)."""
        known = store.file_signatures()
        now = time.monotonic()
        roots = self._readable_roots()
        added = 0
        for found in discover([Path(f) for f in folders], known):
            if store.known_signature(known, found.path) == (found.size, found.mtime_ns) or self._stopping.is_set():
                continue
            root = next((r for r in roots if found.path.startswith(r.rstrip(os.sep) + os.sep)), None)
            target = target_of(root, found.path, False, self._data_keys) if root else found.path
            if target is None:
                continue
            with self._lock:
                if found.path not in self._pending:
                    self._pending[found.path] = Pending(target, False, now, now)
                    added += 1
        if added:
            log.debug("Surveillance : %d fichier(s) à lire dans %d dossier(s)", added, len(folders))

    def _take_ready(self) -> tuple[list[str], list[str]]:
        """Pending entries that are complete: (folders to expand, targets to read). Removed from pending."""
        now = time.monotonic()
        with self._lock:
            folders, ready = take_ready(self._pending, self._last_event, now)
            if ready is None:
                return folders, []
            if ready or folders:
                self._busy = True
        return folders, list(dict.fromkeys(e.target for e in ready))

    def _ingest(self, store: Store, targets: list[str], *, live: bool) -> None:
        """One ingest run over ``targets`` (files, Maildirs, or whole folders for the catch-up)."""
        with self._lock:
            self._busy = True
        small = live and len(targets) < POOL_MIN_ITEMS and not any(os.path.isdir(t) for t in targets)
        # Small live batches are read inline; a big one (a catch-up, a folder dropped at once) may use
        # the process pool, by the ingest's own thresholds. Spawned workers: this process has threads.
        ingester = Ingester(store, self.settings.trust(), workers=1 if small else None, start_method="spawn",
                            retention_days=self.settings.retention_days)
        try:
            report = ingester.run(
                [Path(t) for t in targets],
                progress=False,
                defer_partial_seconds=DEFER_PARTIAL_SECONDS,
                should_stop=self._stopping.is_set,
            )
        except Exception:  # noqa: BLE001 - a failed run is retried by the next re-check
            log.exception("Surveillance : échec de l'indexation de %s", self._describe(targets))
            return
        self._reported(report, targets, live)

    def _describe(self, targets: list[str]) -> str:
        """Where ``targets`` are, for the logs: the watched folders, never the file names."""
        roots = self._readable_roots()
        where = sorted(
            {next((r for r in roots if t == r or t.startswith(r.rstrip(os.sep) + os.sep)), "?") for t in targets}
        )
        return f"{len(targets)} élément(s) dans {', '.join(where)}"

    def _reported(self, report: Report, targets: list[str], live: bool) -> None:
        counts = report.counts()
        what = "Indexation" if live else "Rattrapage au démarrage"
        if sum(counts.values()) or report.deferred:
            log.info(
                "%s (%s) : %d nouveau(x), %d déjà connu(s), %d ignoré(s), %d en quarantaine, "
                "%d expiré(s) non conservé(s), %d incomplet(s) relu(s) plus tard, en %.2f s",
                what, self._describe(targets), report.new, report.duplicates, report.ignored,
                report.quarantined, report.expired, report.deferred, report.elapsed,
            )
        if report.stopped:
            log.info("%s interrompu(e) par l'arrêt : la suite sera lue au prochain démarrage", what)
        if sum(counts.values()):
            with self._lock:
                self._last_ingest = {"at": now_iso(), **counts}
        elif not report.deferred:
            return
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # noqa: BLE001 - the caller's problem, not the watcher's
                log.exception("Surveillance : erreur dans on_report")
