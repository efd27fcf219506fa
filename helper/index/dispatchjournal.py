"""The dispatch journal: which certificate went to which site's folder, recorded before and after each copy.

One table in the index's SQLite file (``CREATE TABLE IF NOT EXISTS``; the main schema is untouched),
one row per certificate, ids and file names only (no patient data):

- ``state``: ``pending`` (to do), ``started`` (the target name is recorded, the copy may or may not have
  happened: a crash here is resolved by looking at the folder), ``done``, ``retry`` (folder unreachable:
  ``next_try`` after a growing delay), ``unassigned`` (« à affecter »: FINESS not in the site directory),
  ``no_folder`` (the site has no output folder);
- ``finess``: the site it goes to (the certificate's own, or the one IT assigned);
- ``target``: the file name in the site's folder, recorded in ``started`` before any byte is written;
- ``print_state``: for a site with a printer, NULL (to print), ``started`` (recorded before the job is
  sent), ``done`` (job queued, ``print_job`` its id) or ``unknown`` (a crash came between the two: never
  printed again by itself, since a second paper copy is worse than a missing one; IT sees it in the list).

Steps (``helper.service.dispatch`` drives them): :func:`enqueue` adds every certificate with a PDF not
yet in the journal → :func:`due` lists the rows to work on → :func:`mark` records each state change in
its own committed transaction → :func:`assign` moves an « à affecter » row to a site.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from helper.index.store import Store, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch_journal (
    cert_id INTEGER PRIMARY KEY,
    finess TEXT,
    assigned INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    target TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try TEXT,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    done_at TEXT,
    print_state TEXT,
    print_job TEXT
);
CREATE INDEX IF NOT EXISTS dispatch_journal_state ON dispatch_journal (state);
"""

#: Delay before retrying an unreachable folder: 30 s, 1 min, 2 min… at most one hour.
FIRST_DELAY, MAX_DELAY = 30, 3600


def ensure(store: Store) -> None:
    store.db.executescript(SCHEMA)


def enqueue(store: Store) -> int:
    """Add every certificate with a PDF that the journal does not know yet. Returns how many."""
    with store.transaction():
        cur = store.db.execute(
            "INSERT OR IGNORE INTO dispatch_journal (cert_id, finess, updated_at) "
            "SELECT id, site_finess, ? FROM certificates WHERE pdf_sha256 IS NOT NULL "
            "AND id NOT IN (SELECT cert_id FROM dispatch_journal)", (now_iso(),))
        return cur.rowcount


def due(store: Store, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Rows to work on: pending, started (crash recovery), retry whose time has come."""
    when = (now or dt.datetime.now()).isoformat(timespec="seconds")
    rows = store.db.execute(
        "SELECT * FROM dispatch_journal WHERE state IN ('pending', 'started') "
        "OR (state = 'retry' AND (next_try IS NULL OR next_try <= ?)) ORDER BY cert_id", (when,)).fetchall()
    return [dict(r) for r in rows]


def mark(store: Store, cert_id: int, state: str, *, target: str | None = None, error: str | None = None) -> None:
    """Record a state change (committed at once: the journal is what survives a crash)."""
    now = dt.datetime.now()
    with store.transaction():
        if state == "retry":
            attempts = store.db.execute("SELECT attempts FROM dispatch_journal WHERE cert_id = ?",
                                        (cert_id,)).fetchone()[0] + 1
            first = float(os.environ.get("SIDEP_HELPER_TEST_RETRY_DELAY") or FIRST_DELAY)  # tests compress time
            delay = min(first * 2 ** (attempts - 1), MAX_DELAY)
            store.db.execute(
                "UPDATE dispatch_journal SET state = 'retry', attempts = ?, next_try = ?, last_error = ?, "
                "updated_at = ? WHERE cert_id = ?",
                (attempts, (now + dt.timedelta(seconds=delay)).isoformat(timespec="seconds"), error,
                 now.isoformat(timespec="seconds"), cert_id))
            return
        store.db.execute(
            "UPDATE dispatch_journal SET state = ?, target = COALESCE(?, target), last_error = ?, updated_at = ?, "
            "done_at = CASE WHEN ? = 'done' THEN ? ELSE done_at END WHERE cert_id = ?",
            (state, target, error, now.isoformat(timespec="seconds"), state, now.isoformat(timespec="seconds"),
             cert_id))


def assign(store: Store, cert_id: int, finess: str) -> bool:
    """Send a certificate to ``finess`` (an « à affecter » one, or one to re-route). False if unknown."""
    with store.transaction():
        cur = store.db.execute(
            "UPDATE dispatch_journal SET finess = ?, assigned = 1, state = 'pending', target = NULL, attempts = 0, "
            "next_try = NULL, last_error = NULL, updated_at = ? WHERE cert_id = ? AND state != 'done'",
            (finess, now_iso(), cert_id))
        return cur.rowcount == 1


def rows(store: Store, state: str) -> list[dict[str, Any]]:
    return [dict(r) for r in store.db.execute(
        "SELECT * FROM dispatch_journal WHERE state = ? ORDER BY cert_id", (state,)).fetchall()]


def counts(store: Store) -> dict[str, int]:
    exists = store.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dispatch_journal'").fetchone()
    if not exists:
        return {}
    return {r[0]: r[1] for r in store.db.execute("SELECT state, COUNT(*) FROM dispatch_journal GROUP BY state")}


def replay(store: Store, since: str, finess: str | None = None) -> int:
    """Queue again the certificates received since ``since`` (ISO date), for one site or all.

    A file still in the site's folder with the same bytes is not copied twice; a missing one is copied again.
    """
    with store.transaction():
        cur = store.db.execute(
            "UPDATE dispatch_journal SET state = 'pending', target = NULL, attempts = 0, next_try = NULL, "
            "last_error = NULL, updated_at = ? WHERE state IN ('done', 'no_folder', 'retry') "
            "AND (? IS NULL OR finess = ?) "
            "AND cert_id IN (SELECT id FROM certificates WHERE added_at >= ?)",
            (now_iso(), finess, finess, since))
        return cur.rowcount


def summary(store: Store) -> dict[str, Any]:
    """For ``status`` (CLI and API): counts per state, the « à affecter » certificates (ids, FINESS) and, per
    site whose folder cannot be written, how many wait for a retry, the latest reason and the next try."""
    by_state = counts(store)
    unassigned = rows(store, "unassigned") if by_state.get("unassigned") else []
    unreachable = store.db.execute(
        "SELECT finess, COUNT(*), MAX(updated_at || char(31) || COALESCE(last_error, '')), MIN(next_try) "
        "FROM dispatch_journal WHERE state = 'retry' GROUP BY finess ORDER BY finess").fetchall() \
        if by_state.get("retry") else []
    return {"counts": by_state, "unassigned": [{"id": r["cert_id"], "finess": r["finess"]} for r in unassigned],
            "unreachable": [{"finess": r[0], "count": r[1], "error": r[2].split("\x1f", 1)[1] or None,
                             "next_try": r[3]} for r in unreachable]}


def mark_print(store: Store, cert_id: int, state: str | None, job: str | None = None) -> None:
    with store.transaction():
        store.db.execute("UPDATE dispatch_journal SET print_state = ?, print_job = COALESCE(?, print_job), "
                         "updated_at = ? WHERE cert_id = ?", (state, job, now_iso(), cert_id))


def print_unknown(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in store.db.execute(
        "SELECT * FROM dispatch_journal WHERE print_state = 'unknown' ORDER BY cert_id").fetchall()]
