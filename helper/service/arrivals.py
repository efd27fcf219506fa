"""When a changed path is ready to be read: the file-stability rules of the folder watcher.

1. :class:`Handler` receives watchdog's events for one watched folder (created, written, closed,
   renamed into place) and hands the path to the watcher;
2. :func:`target_of` says what to read for it: nothing for hidden files, our own data directory,
   editor backups, Thunderbird's compaction files and browser downloads in progress; the Maildir
   for a message delivered into ``cur/`` or ``new/``; the file itself otherwise;
3. each path then waits as a :class:`Pending` entry; :func:`file_state` calls it ready once its
   size and modification time stayed unchanged ``STABLE_SECONDS``, no browser is still writing it
   under a temporary name and it is not empty (a mailbox written to without pause is ready anyway
   after ``MAX_WAIT_SECONDS``);
4. :func:`take_ready` takes the ready entries out of the pending ones, holding them back at most
   ``BURST_HOLD_SECONDS`` while a burst of events is still arriving.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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

from helper.service.folders import path_id
from helper.sources.files import _SKIP_SUFFIXES

log = logging.getLogger("sidep_helper.watch")

#: A file is complete once its size and modification time stay the same this long.
STABLE_SECONDS = 0.5
#: A mailbox written to without pause is read anyway after this long (a cut last message waits).
MAX_WAIT_SECONDS = 10.0
#: While a burst of events goes on, files already complete wait at most this long for the others.
BURST_HOLD_SECONDS = 1.0

#: Browsers download under a temporary name, then rename: wait for the final name.
DOWNLOAD_SUFFIXES = (".part", ".crdownload", ".download", ".partial", ".opdownload")
_IGNORED_SUFFIXES = frozenset(_SKIP_SUFFIXES) | frozenset(DOWNLOAD_SUFFIXES)
_READY_AS_IS = (".eml", ".pdf")  # never read before they are stable (not mailboxes)


@dataclass
class Pending:
    target: str  # what the ingest is given: the file, or the Maildir it was delivered to
    is_dir: bool  # a folder that appeared: expanded into its files once quiet
    first_seen: float
    last_event: float
    sig: tuple[int, int] | None = None
    since: float = 0.0  # when ``sig`` was last seen to change
    ready_at: float | None = None


def target_of(root: str, path: str, is_dir: bool, data_keys: Iterable[str]) -> str | None:
    """What to read for a changed path, or None for what is not mail (or is ours)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, root)
    if rel == os.curdir or rel.startswith(os.pardir):
        return None
    parts = rel.split(os.sep)
    if any(p.startswith(".") for p in parts):  # hidden files and folders are never read
        return None
    key = os.path.normcase(path)
    if any(key == d or key.startswith(d.rstrip(os.sep) + os.sep) for d in data_keys):
        return None  # our own files, should the data directory sit in a watched folder
    name = parts[-1]
    parent = os.path.dirname(path)
    if is_dir:
        if name == "tmp" and is_maildir(parent):
            return None
        return path
    if name.endswith("~") or name.startswith("nstmp"):  # editor backups, Thunderbird compaction
        return None
    if os.path.splitext(name)[1].lower() in _IGNORED_SUFFIXES:
        return None
    if len(parts) >= 2 and parts[-2] in ("cur", "new", "tmp") and is_maildir(os.path.dirname(parent)):
        # A Maildir message (delivered whole into cur/ or new/; tmp/ holds deliveries in progress):
        # the Maildir is read, so that the message keeps its kind and known ones are skipped.
        return None if parts[-2] == "tmp" else os.path.dirname(parent)
    return path



def file_state(path: str, entry: Pending, now: float) -> str:
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
    if download_running(path):
        return "wait"
    if now - max(entry.since, entry.last_event) >= STABLE_SECONDS:
        return "ready"
    mailbox = not path.lower().endswith(_READY_AS_IS)
    if mailbox and now - entry.first_seen >= MAX_WAIT_SECONDS:
        return "ready"  # a mailbox written to without pause: read what is complete
    return "wait"


def take_ready(pending: dict[str, Pending], last_event: float, now: float) -> tuple[list[str], list[Pending] | None]:
    """(folders to expand, entries to read) taken out of ``pending``; entries None while a burst is held.

    Folders are taken once no event came for them for ``STABLE_SECONDS``; the caller holds the lock.
    """
    folders: list[str] = []
    ready: list[tuple[str, Pending]] = []
    waiting = 0
    for path, entry in list(pending.items()):
        if entry.is_dir:
            if now - entry.last_event >= STABLE_SECONDS:
                folders.append(path)
                del pending[path]
            continue
        state = file_state(path, entry, now)
        if state == "gone":
            del pending[path]
        elif state == "ready":
            if entry.ready_at is None:
                entry.ready_at = now
            ready.append((path, entry))
        else:
            waiting += 1
    if ready and waiting and now - last_event < STABLE_SECONDS:
        # A burst is still arriving: let the complete files wait a little for the others.
        oldest = min(e.ready_at or now for _, e in ready)
        if now - oldest < BURST_HOLD_SECONDS:
            return folders, None
    for path, _ in ready:
        del pending[path]
    return folders, [e for _, e in ready]


def is_maildir(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "cur")) and os.path.isdir(os.path.join(folder, "new"))


def download_running(path: str) -> bool:
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
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent,
]


class Handler(FileSystemEventHandler):
    """watchdog event handler for one watched folder (runs in the observer's thread)."""

    def __init__(self, note: Callable[[str, str, bool], None], root: str) -> None:
        super().__init__()
        self.note = note  # the watcher's: (watched folder, changed path, is a folder)
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
            self.note(self.root, path, event.is_directory)
        except Exception:  # noqa: BLE001 - never kill the observer thread
            log.exception("Surveillance : événement non traité (fichier %s)", path_id(path))
