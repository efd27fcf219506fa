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
  Thunderbird sync) are read in one run of :class:`helper.ingest.Ingester`, in a background thread
  that owns its own :class:`helper.store.Store`. A grown mbox is read from the stored offset; a
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
"""

from __future__ import annotations

import configparser
import hashlib
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from helper.config import Settings
from helper.index.ingest import POOL_MIN_ITEMS, Ingester, Report
from helper.index.store import Store, now_iso
from helper.sources.files import _SKIP_SUFFIXES, discover

log = logging.getLogger("sidep_helper.watch")
T = TypeVar("T")

#: A file is complete once its size and modification time stay the same this long.
STABLE_SECONDS = 0.5
#: How often pending files are checked.
TICK_SECONDS = 0.2
#: A mailbox written to without pause is read anyway after this long (a cut last message waits).
MAX_WAIT_SECONDS = 10.0
#: While a burst of events goes on, files already complete wait at most this long for the others.
BURST_HOLD_SECONDS = 1.0
#: A message cut short in a file modified less than this long ago is retried, not quarantined.
DEFER_PARTIAL_SECONDS = 10.0
#: Folder list re-evaluated, watched folders re-scanned.
RECHECK_SECONDS = 60.0
#: wait_idle: no event for this long before calling the watcher idle.
QUIET_SECONDS = 0.2

#: Browsers download under a temporary name, then rename: wait for the final name.
DOWNLOAD_SUFFIXES = (".part", ".crdownload", ".download", ".partial", ".opdownload")
_IGNORED_SUFFIXES = frozenset(_SKIP_SUFFIXES) | frozenset(DOWNLOAD_SUFFIXES)
_READY_AS_IS = (".eml", ".pdf")  # never read before they are stable (not mailboxes)

DOWNLOADS, THUNDERBIRD, CONFIGURED, CLI = "downloads", "thunderbird", "configured", "cli"
WATCHED, ABSENT, FAILED = "surveillé", "absent", "erreur"


# --- where the mail is ---------------------------------------------------------------------------


def _thunderbird_roots() -> list[Path]:
    """Folders holding Thunderbird profiles (and their ``profiles.ini``) on this platform."""
    home = Path.home()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        return [Path(appdata) / "Thunderbird"] if appdata else []
    if sys.platform == "darwin":
        return [home / "Library" / "Thunderbird"]
    return [
        home / ".thunderbird",
        home / ".mozilla-thunderbird",
        home / "snap" / "thunderbird" / "common" / ".thunderbird",  # Ubuntu snap
        home / ".var" / "app" / "org.mozilla.Thunderbird" / ".thunderbird",  # Flatpak
    ]


def _profiles_from_ini(root: Path) -> list[Path]:
    """Profile folders listed in ``root/profiles.ini`` (``Path=``, relative when ``IsRelative=1``)."""
    ini = root / "profiles.ini"
    if not ini.is_file():
        return []
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    try:
        with open(ini, encoding="utf-8", errors="replace") as fh:
            parser.read_file(fh)
    except (OSError, configparser.Error) as exc:
        log.warning("profiles.ini de Thunderbird illisible (%s) : %s", ini, exc)
        return []
    profiles = []
    for section in parser.sections():
        if not section.lower().startswith("profile"):
            continue
        raw = parser.get(section, "path", fallback="").strip()
        if not raw:
            continue
        relative = parser.get(section, "isrelative", fallback="1").strip() != "0"
        profiles.append(root / raw if relative else Path(raw).expanduser())
    return profiles


def thunderbird_profiles() -> list[Path]:
    """Every Thunderbird profile folder found: listed in profiles.ini, or sitting in the usual places."""
    found: list[Path] = []
    for root in _thunderbird_roots():
        if not root.is_dir():
            continue
        found.extend(_profiles_from_ini(root))
        for parent in (root, root / "Profiles"):
            try:
                found.extend(sorted(p for p in parent.iterdir() if p.is_dir()))
            except OSError:
                continue
    return _unique(found)


def thunderbird_mail_folders() -> list[Path]:
    """The ``Mail/`` and ``ImapMail/`` folders of the Thunderbird profiles found (existing ones only)."""
    folders = []
    for profile in thunderbird_profiles():
        for name in ("Mail", "ImapMail"):
            folder = profile / name
            if folder.is_dir():
                folders.append(folder)
    return _unique(folders)


def default_folders(settings: Settings) -> list[tuple[Path, str]]:
    """(folder, kind) watched without ``--watch``: downloads, Thunderbird mail folders, configured ones.

    The downloads folder is listed even when missing (reported absent, picked up once created).
    """
    folders: list[tuple[Path, str]] = []
    if settings.watch_downloads:
        import platformdirs

        folders.append((Path(platformdirs.user_downloads_dir()), DOWNLOADS))
    if settings.watch_thunderbird:
        folders.extend((p, THUNDERBIRD) for p in thunderbird_mail_folders())
    folders.extend((Path(p).expanduser(), CONFIGURED) for p in settings.watch)
    return _unique_folders(folders)


def _unique_folders(folders: Iterable[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(folder, kind) pairs without repeats of a folder, the first kind given winning."""
    return _unique(folders, lambda pair: pair[0])


def _key(path: str | os.PathLike[str]) -> str:
    """Identity of a folder for de-duplication and nesting: real path, case-folded where the OS is."""
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _unique(items: Iterable[T], path_of: Callable[[T], Path] = lambda p: p) -> list[T]:  # type: ignore[assignment,return-value]
    """``items`` without repeats of the same real path, first one kept."""
    seen: set[str] = set()
    out = []
    for item in items:
        k = _key(path_of(item))
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _inside(key: str, parent_key: str) -> bool:
    return key != parent_key and key.startswith(parent_key.rstrip(os.sep) + os.sep)


def path_id(path: str) -> str:
    """What the logs show for a file: a short hash, never its name (PDF names carry patient names)."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:12]


# --- the watcher ---------------------------------------------------------------------------------


@dataclass
class _Folder:
    path: str  # absolute, as given: watched and read under this name
    kind: str
    key: str
    state: str = ABSENT
    detail: str = ""
    watch: Any = None  # watchdog ObservedWatch when this folder has its own observer watch
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) when scheduled: notices a re-created folder
    readable: bool = False  # part of the catch-up and re-scans
    reported_absent: bool = False


@dataclass
class _Pending:
    target: str  # what the ingest is given: the file, or the Maildir it was delivered to
    is_dir: bool  # a folder that appeared: expanded into its files once quiet
    first_seen: float
    last_event: float
    sig: tuple[int, int] | None = None
    since: float = 0.0  # when ``sig`` was last seen to change
    ready_at: float | None = None


class Watcher:
    """Watches folders and indexes what arrives in them, in a background thread.

    ``on_report`` is called (in the watcher's thread) with the :class:`helper.ingest.Report` of
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
        self._pending: dict[str, _Pending] = {}
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

    # --- folders -----------------------------------------------------------------------------

    def _wanted(self) -> list[tuple[Path, str]]:
        return _unique_folders(default_folders(self.settings) + [(p, CLI) for p in self.extra_folders])

    def _set_folders(self, wanted: list[tuple[Path, str]], initial: bool = False) -> None:
        old = {f.key: f for f in self._folders}
        folders = []
        for path, kind in wanted:
            k = _key(path)
            folder = old.pop(k, None) or _Folder(os.path.abspath(path), kind, k)
            if initial:
                exists = os.path.isdir(folder.path)
                folder.state = WATCHED if exists else ABSENT
                folder.detail = "démarrage de la surveillance" if exists else "dossier introuvable"
            folders.append(folder)
        for gone in old.values():  # no longer wanted (a Thunderbird profile removed)
            self._unschedule(gone)
        with self._lock:
            self._folders = folders

    def _refresh_folders(self) -> list[str]:
        """(Re)compute the folder list and set up or drop watches. Returns folders newly readable."""
        self._set_folders(self._wanted())
        existing = [f for f in self._folders if os.path.isdir(f.path)]
        fresh: list[str] = []
        for folder in self._folders:
            if folder not in existing:
                if folder.readable:
                    log.warning("Dossier surveillé disparu : %s (%s)", folder.path, folder.kind)
                elif not folder.reported_absent:
                    log.warning("Dossier à surveiller absent : %s (%s) ; nouvel essai toutes les %.0f s",
                                folder.path, folder.kind, RECHECK_SECONDS)
                folder.reported_absent = True
                self._unschedule(folder)
                self._update(folder, ABSENT, "dossier introuvable", readable=False)
                continue
            folder.reported_absent = False
            if folder.kind == DOWNLOADS and folder.key in (_key(Path.home()), _key(os.path.abspath(os.sep))):
                # user-dirs.dirs may say "Downloads = $HOME": the whole home would be watched and read.
                if folder.state != FAILED:
                    log.warning("Dossier Téléchargements = dossier personnel (%s) : non surveillé", folder.path)
                self._unschedule(folder)
                self._update(folder, FAILED, "le dossier Téléchargements est le dossier personnel : non surveillé ; "
                             "indiquez le bon dossier dans « watch »", readable=False)
                continue
            parent = next((p for p in existing if _inside(folder.key, p.key)), None)
            if parent is not None:
                self._unschedule(folder)
                self._update(folder, WATCHED, f"inclus dans {parent.path}", readable=False)
                continue
            try:
                st = os.stat(folder.path)
                identity = (st.st_dev, st.st_ino)
            except OSError:
                identity = None
            if folder.watch is not None and folder.identity == identity:
                if not folder.readable:
                    fresh.append(folder.path)
                self._update(folder, WATCHED, "", readable=True)
                continue
            self._unschedule(folder)  # a folder deleted and created again needs a new watch
            try:
                folder.watch = self._observer.schedule(
                    _Handler(self, folder.path), folder.path, recursive=True, event_filter=_EVENTS
                )
                folder.identity = identity
            except Exception as exc:  # noqa: BLE001 - one folder must not stop the others
                if folder.state != FAILED:
                    log.warning("Impossible de surveiller %s : %s ; dossier relu toutes les %.0f s",
                                folder.path, exc, RECHECK_SECONDS)
                was_readable = folder.readable
                self._update(
                    folder, FAILED,
                    f"surveillance impossible ({exc}) ; dossier relu toutes les {RECHECK_SECONDS:.0f} s",
                    readable=True,
                )
                if not was_readable:
                    fresh.append(folder.path)
                continue
            log.info("Surveillance de %s (%s)", folder.path, folder.kind)
            if not folder.readable:
                fresh.append(folder.path)
            self._update(folder, WATCHED, "", readable=True)
        return fresh

    def _update(self, folder: _Folder, state: str, detail: str, *, readable: bool) -> None:
        with self._lock:
            folder.state, folder.detail, folder.readable = state, detail, readable

    def _unschedule(self, folder: _Folder) -> None:
        if folder.watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(folder.watch)
            except (KeyError, RuntimeError, OSError):
                pass
        folder.watch = None
        folder.identity = None

    def _readable_roots(self) -> list[str]:
        with self._lock:
            return [f.path for f in self._folders if f.readable]

    # --- events (observer threads) -----------------------------------------------------------

    def _note(self, root: str, path: str, is_dir: bool) -> None:
        """A file or folder under ``root`` was created, written or renamed into place."""
        target = self._target(root, path, is_dir)
        if target is None:
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                self._pending[path] = _Pending(target, is_dir, now, now)
            else:
                entry.last_event = now
                entry.ready_at = None
            self._last_event = now
            self._lock.notify_all()

    def _target(self, root: str, path: str, is_dir: bool) -> str | None:
        """What to read for a changed path, or None for what is not mail (or is ours)."""
        path = os.path.abspath(path)
        rel = os.path.relpath(path, root)
        if rel == os.curdir or rel.startswith(os.pardir):
            return None
        parts = rel.split(os.sep)
        if any(p.startswith(".") for p in parts):  # hidden files and folders are never read
            return None
        key = os.path.normcase(path)
        if any(key == d or key.startswith(d.rstrip(os.sep) + os.sep) for d in self._data_keys):
            return None  # our own files, should the data directory sit in a watched folder
        name = parts[-1]
        parent = os.path.dirname(path)
        if is_dir:
            if name == "tmp" and _is_maildir(parent):
                return None
            return path
        if name.endswith("~") or name.startswith("nstmp"):  # editor backups, Thunderbird compaction
            return None
        if os.path.splitext(name)[1].lower() in _IGNORED_SUFFIXES:
            return None
        if len(parts) >= 2 and parts[-2] in ("cur", "new", "tmp") and _is_maildir(os.path.dirname(parent)):
            # A Maildir message (delivered whole into cur/ or new/; tmp/ holds deliveries in progress):
            # the Maildir is read, so that the message keeps its kind and known ones are skipped.
            return None if parts[-2] == "tmp" else os.path.dirname(parent)
        return path

    # --- the background thread ---------------------------------------------------------------

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
            target = self._target(root, found.path, False) if root else found.path
            if target is None:
                continue
            with self._lock:
                if found.path not in self._pending:
                    self._pending[found.path] = _Pending(target, False, now, now)
                    added += 1
        if added:
            log.debug("Surveillance : %d fichier(s) à lire dans %d dossier(s)", added, len(folders))

    def _take_ready(self) -> tuple[list[str], list[str]]:
        """Pending entries that are complete: (folders to expand, targets to read). Removed from pending."""
        now = time.monotonic()
        folders: list[str] = []
        with self._lock:
            ready: list[tuple[str, _Pending]] = []
            waiting = 0
            for path, entry in list(self._pending.items()):
                if entry.is_dir:
                    if now - entry.last_event >= STABLE_SECONDS:
                        folders.append(path)
                        del self._pending[path]
                    continue
                state = self._file_state(path, entry, now)
                if state == "gone":
                    del self._pending[path]
                elif state == "ready":
                    if entry.ready_at is None:
                        entry.ready_at = now
                    ready.append((path, entry))
                else:
                    waiting += 1
            if ready and waiting and now - self._last_event < STABLE_SECONDS:
                # A burst is still arriving: let the complete files wait a little for the others.
                oldest = min(e.ready_at or now for _, e in ready)
                if now - oldest < BURST_HOLD_SECONDS:
                    return folders, []
            for path, _ in ready:
                del self._pending[path]
            if ready or folders:
                self._busy = True
        targets = list(dict.fromkeys(e.target for _, e in ready))
        return folders, targets

    def _file_state(self, path: str, entry: _Pending, now: float) -> str:
        """"ready", "wait" or "gone" (deleted, renamed away, or empty for too long)."""
        try:
            st = os.stat(path)
        except OSError:
            return "gone"
        if stat.S_ISDIR(st.st_mode):
            entry.is_dir = True
            return "wait"
        sig = (st.st_size, st.st_mtime_ns)
        if sig != entry.sig:
            entry.sig, entry.since = sig, now
        if st.st_size == 0:  # a placeholder (Firefox creates it before the download) or not written yet
            return "gone" if now - entry.first_seen >= MAX_WAIT_SECONDS else "wait"
        if _download_running(path):
            return "wait"
        if now - max(entry.since, entry.last_event) >= STABLE_SECONDS:
            return "ready"
        mailbox = not path.lower().endswith(_READY_AS_IS)
        if mailbox and now - entry.first_seen >= MAX_WAIT_SECONDS:
            return "ready"  # a mailbox written to without pause: read what is complete
        return "wait"

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


def _is_maildir(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "cur")) and os.path.isdir(os.path.join(folder, "new"))


def _download_running(path: str) -> bool:
    """A browser is still writing this file under a temporary name (recently changed)."""
    for suffix in DOWNLOAD_SUFFIXES:
        try:
            st = os.stat(path + suffix)
        except OSError:
            continue
        if time.time() - st.st_mtime < MAX_WAIT_SECONDS:
            return True
    return False


#: What a watch listens to (inotify: no open/access/close-without-write events, so our own reads are silent).
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent,
]


class _Handler(FileSystemEventHandler):
    """watchdog event handler for one watched folder (runs in the observer's thread)."""

    def __init__(self, watcher: Watcher, root: str) -> None:
        super().__init__()
        self.watcher = watcher
        self.root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind == "moved":
            path = event.dest_path
        elif kind in ("created", "modified", "closed"):
            path = event.src_path
        else:
            return
        if not path or (event.is_directory and kind == "modified"):
            return
        path = os.fsdecode(path)
        try:
            self.watcher._note(self.root, path, event.is_directory)
        except Exception:  # noqa: BLE001 - never kill the observer thread
            log.exception("Surveillance : événement non traité (fichier %s)", path_id(path))
