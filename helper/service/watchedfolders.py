"""The folder list of the watcher: which folders are watched, and in what state.

1. the folders wanted are the defaults (:func:`helper.service.folders.default_folders`) plus the
   service's ``--watch`` folders, each real path once;
2. each is checked: absent (reported once, tried again at every re-check), the downloads folder
   being the home folder (refused: the whole home would be read), inside another watched folder
   (covered by the parent's watch), or given a recursive watchdog watch of its own (a folder
   deleted and created again gets a new one; a watch that cannot be set up leaves the folder
   re-scanned at every re-check);
3. the folders that just became readable are returned, for the watcher to read them.

:class:`WatchedFolders` is a part of :class:`helper.service.watch.Watcher`: it uses the watcher's
lock, observer and settings.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helper.config import Settings
from helper.service.arrivals import EVENTS, Handler
from helper.service.folders import CLI, DOWNLOADS, _inside, _key, _unique_folders, default_folders

log = logging.getLogger("sidep_helper.watch")

#: Folder list re-evaluated, watched folders re-scanned.
RECHECK_SECONDS = 60.0

WATCHED, ABSENT, FAILED = "surveillé", "absent", "erreur"


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



class WatchedFolders:
    """The watcher's folders: computed, watched, unwatched; their state for ``folders()``."""

    settings: Settings
    extra_folders: list[Path]
    _lock: threading.Condition
    _observer: Any
    _folders: list[_Folder]

    def _note(self, root: str, path: str, is_dir: bool) -> None:
        raise NotImplementedError

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
                    Handler(self._note, folder.path), folder.path, recursive=True, event_filter=EVENTS
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
