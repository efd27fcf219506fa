"""What the helper remembers of its IMAP folders, in the same SQLite file as the index.

Tables (created here, ``CREATE TABLE IF NOT EXISTS``, so the main schema is untouched):

- ``imap_folders``: per (source, folder) the UIDVALIDITY in force, the highest UID already read,
  the last HIGHESTMODSEQ whose keywords were read;
- ``imap_links``: which certificate(s) each message (source, folder, uidvalidity, uid) gave, with the
  last keyword state seen on the server (``printed``, ``delivered``: 1/0, NULL = never read);
- ``imap_pending``: keyword writes owed to the server after a print, a hand-over or an undo on this
  desk, one row per message location; written by the API, done by the folder's sync thread;
- ``imap_status``: each folder's connection state, last success and last error (French), for
  ``status`` in the CLI (another process) and the API.

Steps of a sync (``helper.service.imapsync``) that touch this module: :func:`folder_state` →
:func:`reset_folder` when UIDVALIDITY changed (the links of the old UIDs go; messages are matched
again by Message-ID, so nothing is added twice) → :func:`link_all` and :func:`advance` in one
transaction per batch → :func:`apply_remote` for keywords read back → :func:`take_pending` /
:func:`done_pending` for keywords to write. No column holds a name or any patient data: ids only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from helper.index.store import Store, now_iso

#: ``delivered_by`` of a certificate handed over at another desk (seen through the shared keyword).
REMOTE_DESK = "autre poste"

SCHEMA = """
CREATE TABLE IF NOT EXISTS imap_folders (
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER,
    PRIMARY KEY (source, folder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imap_links (
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    cert_id INTEGER NOT NULL,
    printed INTEGER,
    delivered INTEGER,
    PRIMARY KEY (source, folder, uidvalidity, uid, cert_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS imap_links_cert ON imap_links (cert_id);
CREATE TABLE IF NOT EXISTS imap_pending (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    cert_id INTEGER NOT NULL,
    keyword TEXT NOT NULL,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS imap_status (
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    state TEXT NOT NULL,
    last_success TEXT,
    last_error TEXT,
    last_error_at TEXT,
    error_code TEXT,
    messages INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    PRIMARY KEY (source, folder)
) WITHOUT ROWID;
"""

#: keyword column in imap_links ↔ what it means locally
PRINTED, DELIVERED = "printed", "delivered"


def ensure(store: Store) -> None:
    store.db.executescript(SCHEMA)


@dataclass
class FolderState:
    uidvalidity: int | None
    last_uid: int
    modseq: int | None


def folder_state(store: Store, source: str, folder: str) -> FolderState:
    row = store.db.execute(
        "SELECT uidvalidity, last_uid, modseq FROM imap_folders WHERE source = ? AND folder = ?", (source, folder)
    ).fetchone()
    return FolderState(row[0], row[1], row[2]) if row else FolderState(None, 0, None)


def reset_folder(store: Store, source: str, folder: str, uidvalidity: int) -> None:
    """A new UIDVALIDITY: forget the old UIDs (and writes owed to them); read the folder again."""
    with store.transaction():
        # rows already under the new UIDVALIDITY (a message moved here, linked by the mover) stay
        store.db.execute("DELETE FROM imap_links WHERE source = ? AND folder = ? AND uidvalidity <> ?",
                         (source, folder, uidvalidity))
        store.db.execute("DELETE FROM imap_pending WHERE source = ? AND folder = ? AND uidvalidity <> ?",
                         (source, folder, uidvalidity))
        store.db.execute(
            "INSERT INTO imap_folders (source, folder, uidvalidity, last_uid, modseq) VALUES (?, ?, ?, 0, NULL) "
            "ON CONFLICT (source, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = 0, modseq = NULL",
            (source, folder, uidvalidity),
        )


def link(store: Store, source: str, folder: str, uidvalidity: int, uid: int, cert_ids: Iterable[int]) -> None:
    """Record that a message gave these certificates (inside a transaction)."""
    link_all(store, source, folder, uidvalidity, {uid: cert_ids})


def link_all(store: Store, source: str, folder: str, uidvalidity: int, links: dict[int, Iterable[int]]) -> None:
    """:func:`link` for several messages (uid → certificates) in one statement (inside a transaction)."""
    store.db.executemany(
        "INSERT OR IGNORE INTO imap_links (source, folder, uidvalidity, uid, cert_id) VALUES (?, ?, ?, ?, ?)",
        [(source, folder, uidvalidity, uid, c) for uid, cert_ids in links.items() for c in cert_ids],
    )


def advance(store: Store, source: str, folder: str, uidvalidity: int, last_uid: int) -> None:
    """Every UID up to ``last_uid`` has been read (inside a transaction)."""
    store.db.execute(
        "UPDATE imap_folders SET last_uid = max(last_uid, ?) WHERE source = ? AND folder = ? AND uidvalidity = ?",
        (last_uid, source, folder, uidvalidity),
    )


def relocate(store: Store, source: str, folder: str, uidvalidity: int, target: str, target_validity: int,
             moved: dict[int, int], gone: Iterable[int]) -> None:
    """Messages moved to ``target`` (``moved``: old uid → new uid, from COPYUID): their links and the
    keyword writes owed to them follow; links of moved messages whose new UID is unknown (``gone``)
    are dropped (the target folder's sync links them again by Message-ID)."""
    with store.transaction():
        for old, new in moved.items():
            for table in ("imap_links", "imap_pending"):
                store.db.execute(
                    f"UPDATE OR IGNORE {table} SET folder = ?, uidvalidity = ?, uid = ? "
                    "WHERE source = ? AND folder = ? AND uidvalidity = ? AND uid = ?",
                    (target, target_validity, new, source, folder, uidvalidity, old),
                )
        store.db.executemany(
            "DELETE FROM imap_links WHERE source = ? AND folder = ? AND uidvalidity = ? AND uid = ?",
            [(source, folder, uidvalidity, u) for u in gone],
        )


def set_modseq(store: Store, source: str, folder: str, modseq: int | None) -> None:
    store.db.execute("UPDATE imap_folders SET modseq = ? WHERE source = ? AND folder = ?", (modseq, source, folder))


def certificates_of_message_id(store: Store, message_id: str) -> list[int]:
    return [r[0] for r in store.db.execute("SELECT id FROM certificates WHERE message_id = ?", (message_id,))]


def linked_uids(store: Store, source: str, folder: str, uidvalidity: int) -> list[int]:
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT uid FROM imap_links WHERE source = ? AND folder = ? AND uidvalidity = ?",
        (source, folder, uidvalidity),
    )]


def forget_purged(store: Store) -> int:
    """Drop links and owed writes of certificates no longer in the index (purged)."""
    with store.transaction():
        n = store.db.execute("DELETE FROM imap_links WHERE cert_id NOT IN (SELECT id FROM certificates)").rowcount
        store.db.execute("DELETE FROM imap_pending WHERE cert_id NOT IN (SELECT id FROM certificates)")
    return n


# --- shared hand-over state ----------------------------------------------------------------------------

def queue_change(store: Store, cert_id: int, what: str, value: bool) -> int:
    """A print, hand-over or undo on this desk: owe the keyword write at every place the message is.

    Returns the number of writes queued (0 for a certificate that did not come by IMAP)."""
    if not getattr(store, "_imap_tables", False):
        ensure(store)
        store._imap_tables = True  # type: ignore[attr-defined]
    rows = store.db.execute(
        "SELECT source, folder, uidvalidity, uid FROM imap_links WHERE cert_id = ?", (cert_id,)
    ).fetchall()
    if not rows:
        return 0
    with store.transaction():
        store.db.executemany(
            "INSERT INTO imap_pending (source, folder, uidvalidity, uid, cert_id, keyword, value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r[0], r[1], r[2], r[3], cert_id, what, int(value)) for r in rows],
        )
    return len(rows)


def has_pending(store: Store, source: str, folder: str) -> bool:
    return store.db.execute(
        "SELECT 1 FROM imap_pending WHERE source = ? AND folder = ? LIMIT 1", (source, folder)
    ).fetchone() is not None


def take_pending(store: Store, source: str, folder: str, uidvalidity: int) -> list[dict[str, Any]]:
    return [dict(r) for r in store.db.execute(
        "SELECT id, uid, cert_id, keyword, value FROM imap_pending WHERE source = ? AND folder = ? AND uidvalidity = ? "
        "ORDER BY id", (source, folder, uidvalidity),
    )]


def done_pending(store: Store, source: str, folder: str, uidvalidity: int, done: list[dict[str, Any]]) -> None:
    """Writes done on the server: the server now holds these values (they are the last seen)."""
    with store.transaction():
        for p in done:
            column = PRINTED if p["keyword"] == PRINTED else DELIVERED
            store.db.execute(
                f"UPDATE imap_links SET {column} = ? WHERE source = ? AND folder = ? AND uidvalidity = ? AND uid = ?",
                (p["value"], source, folder, uidvalidity, p["uid"]),
            )
            store.db.execute("DELETE FROM imap_pending WHERE id = ?", (p["id"],))


def reset_stale_pending(store: Store, source: str, folder: str, uidvalidity: int) -> None:
    """Writes owed to UIDs of an older UIDVALIDITY: those UIDs no longer exist."""
    store.db.execute(
        "DELETE FROM imap_pending WHERE source = ? AND folder = ? AND uidvalidity <> ?", (source, folder, uidvalidity)
    )


def drop_pending(store: Store, source: str, folder: str, uidvalidity: int) -> None:
    """Writes that cannot be done (the folder takes no keywords): kept local only."""
    with store.transaction():
        store.db.execute(
            "DELETE FROM imap_pending WHERE source = ? AND folder = ? AND uidvalidity = ?", (source, folder, uidvalidity)
        )


def apply_remote(
    store: Store, source: str, folder: str, uidvalidity: int, seen: dict[int, tuple[bool, bool]]
) -> list[tuple[int, str, bool]]:
    """Keywords read on the server: {uid: (printed, delivered)}. Applies what changed since last read.

    A change is applied to the local state only when this desk owes no write for that message (its
    own click wins until it reaches the server). Returns the changes applied: (cert id, what, value).
    """
    applied: list[tuple[int, str, bool]] = []
    if not seen:
        return applied
    pending = {r[0] for r in store.db.execute(
        "SELECT DISTINCT uid FROM imap_pending WHERE source = ? AND folder = ? AND uidvalidity = ?",
        (source, folder, uidvalidity),
    )}
    now = now_iso()
    with store.transaction():
        for uid, (printed, delivered) in seen.items():
            if uid in pending:
                continue
            links = store.db.execute(
                "SELECT cert_id, printed, delivered FROM imap_links WHERE source = ? AND folder = ? AND uidvalidity = ? "
                "AND uid = ?", (source, folder, uidvalidity, uid),
            ).fetchall()
            for cert_id, was_printed, was_delivered in links:
                cert = store.db.execute(
                    "SELECT printed_at, delivered_at FROM certificates WHERE id = ?", (cert_id,)
                ).fetchone()
                if cert is None:
                    continue
                if printed and was_printed != 1 and cert[0] is None:
                    store.db.execute(
                        "UPDATE certificates SET printed_at = ?, print_count = max(print_count, 1) WHERE id = ?", (now, cert_id)
                    )
                    applied.append((cert_id, PRINTED, True))
                if delivered and was_delivered != 1 and cert[1] is None:
                    store.db.execute(
                        "UPDATE certificates SET delivered_at = ?, delivered_by = ? WHERE id = ?", (now, REMOTE_DESK, cert_id)
                    )
                    applied.append((cert_id, DELIVERED, True))
                elif not delivered and was_delivered == 1 and cert[1] is not None:
                    store.db.execute(
                        "UPDATE certificates SET delivered_at = NULL, delivered_by = NULL WHERE id = ?", (cert_id,)
                    )
                    applied.append((cert_id, DELIVERED, False))
            store.db.execute(
                "UPDATE imap_links SET printed = ?, delivered = ? WHERE source = ? AND folder = ? AND uidvalidity = ? "
                "AND uid = ?", (int(printed), int(delivered), source, folder, uidvalidity, uid),
            )
    return applied


# --- status -------------------------------------------------------------------------------------------

def set_status(
    store: Store, source: str, folder: str, state: str, *, success: bool = False,
    error: str | None = None, code: str | None = None, messages: int | None = None,
) -> None:
    now = now_iso()
    store.db.execute(
        "INSERT INTO imap_status (source, folder, state, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (source, folder) DO UPDATE SET state = excluded.state, updated = excluded.updated",
        (source, folder, state, now),
    )
    if success:
        store.db.execute(
            "UPDATE imap_status SET last_success = ?, last_error = NULL, last_error_at = NULL, error_code = NULL WHERE source = ? AND folder = ?",
            (now, source, folder),
        )
    if error is not None:
        store.db.execute(
            "UPDATE imap_status SET last_error = ?, last_error_at = ?, error_code = ? WHERE source = ? AND folder = ?",
            (error, now, code, source, folder),
        )
    if messages is not None:
        store.db.execute(
            "UPDATE imap_status SET messages = ? WHERE source = ? AND folder = ?", (messages, source, folder)
        )


def statuses(store: Store) -> list[dict[str, Any]]:
    """Each IMAP folder's state for ``status`` (empty when no IMAP source ever ran)."""
    try:
        rows = store.db.execute(
            "SELECT source, folder, state, last_success, last_error, last_error_at, error_code, messages, updated "
            "FROM imap_status ORDER BY source, folder"
        ).fetchall()
    except Exception:  # noqa: BLE001 - table absent in an index that never had an IMAP source
        return []
    return [dict(r) for r in rows]
