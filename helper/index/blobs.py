"""Private files of the data directory (0700 folders, 0600 files) and the certificate PDFs.

``BlobStore`` keeps each certificate PDF once, under its SHA-256 (never a mail-given name), in
its own SQLite database, ``pdf/pdfs.sqlite3`` (0600, write-ahead log), apart from the index so
that parse workers write into it while the main process holds the index's write transaction:

1. a worker inserts the bytes (one short transaction each; a second writer waits its turn);
2. the database row that refers to the hash is committed afterwards, by the main process;
3. a PDF whose row was never committed (a run killed in between, a duplicate whose row was not
   kept) is an orphan: the next run finds it already there, and the purge's sweep removes it once
   it is an hour old (``added``; a younger one may belong to a row being committed);
4. removing deletes the row; ``secure_delete`` zeroes the freed pages, and the purge truncates the
   write-ahead log (:meth:`BlobStore.checkpoint`).

Versions before this one wrote one file per PDF (``pdf/ab/abcdef….pdf``): a file creation each,
the largest part of indexing a message on an ordinary disk (about 0.3 to 1 ms of system time
measured here, more with an antivirus watching the folder). Such files are still read, and
removed with their certificate.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from pathlib import Path


def secure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 and make sure it stays so."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` as a 0600 file, atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


DB_FILE = "pdfs.sqlite3"
SCHEMA = "CREATE TABLE IF NOT EXISTS pdfs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL, added REAL NOT NULL)"


class BlobStore:
    """Certificate PDFs stored once each under their SHA-256 (see above). One instance per thread
    or process: its connection is opened at first use."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    def _conn(self) -> sqlite3.Connection | None:
        """The connection to the PDF database; None when read-only and there is none yet."""
        if self._db is None:
            if self.readonly:
                if not self.db_path.exists():
                    return None
                self._db = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True,
                                           isolation_level=None, timeout=30, check_same_thread=False)
            else:
                secure_dir(self.root)
                if not self.db_path.exists():  # created 0600 (SQLite gives its log files the same mode)
                    os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600))
                db = sqlite3.connect(self.db_path, isolation_level=None, timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.execute(SCHEMA)
                self._db = db
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA busy_timeout = 30000")
        return self._db

    def legacy_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def put(self, sha256: str, data: bytes) -> None:
        """Store ``data`` under its hash unless already there."""
        db = self._conn()
        assert db is not None
        if db.execute("SELECT 1 FROM pdfs WHERE sha256 = ?", (sha256,)).fetchone() is None:
            db.execute("INSERT OR IGNORE INTO pdfs (sha256, data, added) VALUES (?, ?, ?)", (sha256, data, time.time()))

    def get(self, sha256: str) -> bytes | None:
        """The PDF bytes, verified against their hash; None if absent or damaged."""
        db = self._conn()
        row = db.execute("SELECT data FROM pdfs WHERE sha256 = ?", (sha256,)).fetchone() if db is not None else None
        if row is not None:
            data = bytes(row[0])
        else:
            try:
                data = self.legacy_path(sha256).read_bytes()
            except OSError:
                return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def remove(self, sha256: str) -> None:
        db = self._conn()
        if db is not None:
            db.execute("DELETE FROM pdfs WHERE sha256 = ?", (sha256,))
        self.legacy_path(sha256).unlink(missing_ok=True)

    def older_than(self, timestamp: float) -> list[str]:
        """Hashes of the PDFs stored before ``timestamp`` (``time.time()``)."""
        db = self._conn()
        return [r[0] for r in db.execute("SELECT sha256 FROM pdfs WHERE added < ?", (timestamp,))] if db else []

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database and truncate it (what a purge deleted is then
        nowhere but in zeroed pages). False when a reader kept it from completing."""
        db = self._conn()
        if db is None:
            return True
        busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
