"""Messages kept in quarantine under ``quarantine/`` in the data directory, and their bounds.

A pushed message (API) that cannot be used is kept whole so that nothing is lost:

1. ``keep`` writes it as ``quarantine/<sha256>.eml`` (0600, named by its hash, never by its
   subject), then enforces the size cap;
2. ``enforce_cap``: while the folder holds more than ``quarantine_max_mb``, the oldest files go
   first (never the one just kept), with their quarantine rows; the count of evicted messages is
   kept in ``meta`` (``quarantine_evicted``) and said by ``status``;
3. ``remove_older`` (called by the purge): messages and rows quarantined before the retention
   limit are removed, like the certificates they might have been.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from helper.index.blobs import secure_dir, write_private

if TYPE_CHECKING:
    from helper.index.store import Store

FOLDER = "quarantine"
DEFAULT_MAX_MB = 500


def folder(data_dir: Path) -> Path:
    return data_dir / FOLDER


def _files(data_dir: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of every kept message, oldest first."""
    out = []
    try:
        entries = list(os.scandir(folder(data_dir)))
    except OSError:
        return []
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.is_file():
            out.append((st.st_mtime, st.st_size, Path(entry.path)))
    out.sort()
    return out


def size(data_dir: Path) -> int:
    return sum(s for _, s, _ in _files(data_dir))


def keep(store: Store, raw: bytes, max_bytes: int) -> Path:
    """Keep ``raw`` under its hash (inside the caller's transaction) and hold the cap."""
    path = secure_dir(folder(store.data_dir)) / f"{hashlib.sha256(raw).hexdigest()}.eml"
    if path.exists():
        os.utime(path)  # seen again: the newest, last to be evicted
    else:
        write_private(path, raw)
    enforce_cap(store, max_bytes, keep=path)
    return path


def enforce_cap(store: Store, max_bytes: int, keep: Path | None = None) -> int:
    """Evict the oldest kept messages until the folder fits ``max_bytes``. Returns how many."""
    files = _files(store.data_dir)
    total = sum(s for _, s, _ in files)
    evicted = 0
    for _, nbytes, path in files:
        if total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        _remove(store, path)
        total -= nbytes
        evicted += 1
    if evicted:
        before = int(store.meta("quarantine_evicted") or 0)
        store.set_meta("quarantine_evicted", str(before + evicted))
    return evicted


def remove_older(store: Store, older_than: str) -> None:
    """Remove messages and rows quarantined before ``older_than`` (ISO date)."""
    store.db.execute("DELETE FROM quarantine WHERE first_seen < ?", (older_than,))
    limit = dt.datetime.combine(dt.date.fromisoformat(older_than), dt.time()).timestamp()
    for mtime, _, path in _files(store.data_dir):
        if mtime < limit:
            _remove(store, path)


def _remove(store: Store, path: Path) -> None:
    path.unlink(missing_ok=True)
    store.db.execute("DELETE FROM quarantine WHERE path = ?", (str(path),))
