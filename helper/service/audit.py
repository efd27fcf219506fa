"""The append-only audit trail, kept apart from the index for the DPO.

Every search, view, PDF download, print, hand-over and purge is recorded with its time, action,
certificate ids and the client origin — never a name, a birth date, an INS, a query text or the
token. The table refuses updates and deletes (SQLite triggers); purging certificates leaves their
ids here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from helper.index.store import secure_dir

AUDIT_DB = "audit.sqlite3"
ACTIONS = frozenset(
    {"search", "view", "pdf", "print", "delivered", "undelivered", "purge", "ingest", "token_rotated"}
    # state seen on the shared mailbox (IMAP keywords set by another desk; issue 10)
    | {"printed_elsewhere", "delivered_elsewhere", "undelivered_elsewhere"}
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    certificate_ids TEXT NOT NULL DEFAULT '[]',
    origin TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
"""


class Audit:
    def __init__(self, data_dir: Path) -> None:
        secure_dir(data_dir)
        path = data_dir / AUDIT_DB
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        if os.name == "posix":
            for suffix in ("", "-wal", "-shm"):
                p = Path(f"{path}{suffix}")
                if p.exists():
                    os.chmod(p, 0o600)

    def record(self, action: str, certificate_ids: Iterable[int] = (), origin: str = "", detail: str = "") -> None:
        """Append one event. ``detail`` must never hold patient data (counts, codes only)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        self.db.execute(
            "INSERT INTO events (at, action, certificate_ids, origin, detail) VALUES (?, ?, ?, ?, ?)",
            (
                dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                action,
                json.dumps(sorted(set(certificate_ids))),
                origin,
                detail,
            ),
        )

    def export_csv(self, since: str | None = None) -> str:
        """The events since an ISO date (inclusive), as CSV with a header line."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["horodatage", "action", "certificats", "origine", "detail"])
        query = "SELECT at, action, certificate_ids, origin, detail FROM events"
        args: tuple[str, ...] = ()
        if since:
            query += " WHERE at >= ?"
            args = (since,)
        for at, action, ids, origin, detail in self.db.execute(query + " ORDER BY id", args):
            writer.writerow([at, action, " ".join(str(i) for i in json.loads(ids)), origin, detail])
        return out.getvalue()

    def close(self) -> None:
        self.db.close()
