"""Retention: what a purge removes, what it leaves (keyed hashes only), and how it erases.

``purge(store, older_than, retention_days)``, in one transaction:

1. certificates integrated before ``older_than``: rows and full-text entries deleted;
2. for each, tombstones: keyed hashes (HMAC-SHA256 with a random key kept 0600 in the data
   directory, ``keyed-hash.key``) of site + dossier and of the dossier alone, with the retention
   in force; a later search for that dossier can say "purgé après N jours" from them, and
   nothing readable is kept. Tombstones are themselves deleted ``TOMBSTONE_DAYS`` after they
   were made (at the next purge past that);
3. quarantine rows first seen before ``older_than`` deleted, and the messages kept under
   ``quarantine/`` since before it removed;
4. .eml and PDF file rows nothing refers to any more (no certificate read from the file, no
   quarantine entry): their path (which, for a PDF or an .eml saved from the webmail, carries
   the patient's name) is replaced by its keyed hash, so an unchanged file is still recognised
   and not read again, and no name is left;

Then, outside the transaction (the PDFs to remove are listed in ``pdf_removals`` and
``scrub_pending`` is set in it, so that a purge killed before the end is finished by the next
one): PDFs no certificate uses any more removed; ``scrub``: FTS segments merged (``optimize``, which drops deleted entries), name words no longer indexed
removed from the typo vocabulary (and its generation bumped, so search caches rebuild), and the
write-ahead logs (the index's and the PDFs', helper.index.blobs) checkpointed and truncated.
``secure_delete`` zeroes every freed page.

Certificates already past the limit when ingested are not stored at all (``is_expired``): the
ingest counts them ``expired`` and leaves the same tombstones (``bury``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helper.index.blobs import write_private
from helper.index.quarantine import remove_older
from helper.sources.files import EML, PDF

if TYPE_CHECKING:
    from helper.index.store import Store
    from helper.parse.message import Certificate

KEY_FILE = "keyed-hash.key"
TOMBSTONE_DAYS = 365
PATH_PREFIX = "k:"  # a files row whose path was replaced by its keyed hash


# --- keyed hashes ---------------------------------------------------------------------------------

def load_key(data_dir: Path, *, create: bool) -> bytes | None:
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    if not create:
        return None
    write_private(path, secrets.token_bytes(32))
    return path.read_bytes()


def keyed(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def dossier_keys(key: bytes, site: str | None, dossier: str | None) -> list[str]:
    """Tombstone keys of a certificate: site + dossier, and the dossier alone (a search may omit the site)."""
    from helper.index.store import dossier_key

    d = dossier_key(dossier or "")
    if not d:
        return []
    keys = ["d:" + keyed(key, "dossier\x00" + d)]
    s = (site or "").strip().lower()
    if s:
        keys.append("sd:" + keyed(key, "site-dossier\x00" + s + "\x00" + d))
    return keys


def path_key(key: bytes, path: str) -> str:
    return PATH_PREFIX + keyed(key, "path\x00" + path)


# --- expiry at ingest -------------------------------------------------------------------------------

def cutoff(retention_days: int, today: dt.date | None = None) -> str:
    """The ISO date before which a certificate is past retention."""
    return ((today or dt.date.today()) - dt.timedelta(days=retention_days)).isoformat()


def is_expired(cert: Certificate, limit: str | None) -> bool:
    """Integrated (or, lacking that, sampled) before ``limit``: the purge would remove it at once."""
    when = cert.integrated_at or cert.sampled_at
    return bool(limit and when and when < limit)


def bury(store: Store, site: str | None, dossier: str | None, kind: str, retention_days: int) -> None:
    """Leave tombstones for a certificate not kept (inside the caller's transaction)."""
    key = store.hash_key(create=True)
    assert key is not None
    today = dt.date.today().isoformat()
    for k in dossier_keys(key, site, dossier):
        store.db.execute(
            "INSERT INTO tombstones (key, kind, retention_days, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, retention_days = excluded.retention_days, "
            "created = excluded.created",
            (k, kind, retention_days, today),
        )


def tombstone(db: Any, key: bytes | None, site: str | None, dossiers: list[str]) -> dict[str, int] | None:
    """``{"retention_days": N}`` when one of ``dossiers`` (with ``site`` if given) was purged or expired."""
    if key is None or not dossiers:
        return None
    for dossier in dossiers:
        keys = dossier_keys(key, site, dossier)
        wanted = keys[-1] if site else keys[0] if keys else None
        if wanted is None:
            continue
        try:
            row = db.execute("SELECT retention_days FROM tombstones WHERE key = ?", (wanted,)).fetchone()
        except Exception:  # noqa: BLE001 - an index from before v3 has no tombstones
            return None
        if row is not None:
            return {"retention_days": int(row[0])}
    return None


# --- purge ----------------------------------------------------------------------------------------

def purge(store: Store, older_than: str, retention_days: int | None = None) -> list[int]:
    """Remove what is past ``older_than`` (see the module docstring). Returns the certificate ids
    removed (the audit trail keeps them)."""
    db = store.db
    with store.transaction():
        rows = db.execute(
            "SELECT id, pdf_sha256, site_finess, dossier FROM certificates "
            "WHERE coalesce(integrated_at, sampled_at, added_at) < ?",
            (older_than,),
        ).fetchall()
        ids = [r[0] for r in rows]
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM certificates WHERE id IN ({marks})", chunk)
            db.execute(f"DELETE FROM certificates_fts WHERE rowid IN ({marks})", chunk)
        if retention_days is not None:
            for r in rows:
                bury(store, r[2], r[3], "purged", retention_days)
        hashes = {r[1] for r in rows if r[1]}
        still_used = {
            r[0]
            for chunk in _chunks(sorted(hashes), 500)
            for r in db.execute(
                f"SELECT pdf_sha256 FROM certificates WHERE pdf_sha256 IN ({','.join('?' * len(chunk))})", chunk
            )
        }
        quarantined = store.db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        remove_older(store, older_than)
        removed = quarantined - store.db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        anonymised = _anonymise_files(store) if ids or removed else 0
        db.execute("DELETE FROM tombstones WHERE created < ?", (cutoff(TOMBSTONE_DAYS),))
        if ids or anonymised or removed:
            store.set_meta("scrub_pending", "1")  # a kill before the scrub ends: the next purge does it
        db.executemany("INSERT OR IGNORE INTO pdf_removals (sha256) VALUES (?)", [(h,) for h in hashes - still_used])
    # PDFs committed for removal (by this purge, or by one killed before it removed them all).
    pending = [r[0] for r in db.execute("SELECT sha256 FROM pdf_removals").fetchall()]
    if pending:
        remove_if_unused(store, set(pending))
        with store.transaction():
            db.execute("DELETE FROM pdf_removals")
    if store.meta("scrub_pending"):
        scrub(store)
    return ids


def _anonymise_files(store: Store) -> int:
    """Replace by its keyed hash the path of every .eml or PDF file row nothing in the index refers
    to any more (no certificate read from it, no quarantine entry): the file is still recognised,
    its name is gone. Those are the files a browser names after the message (subject, attachment
    name: the patient's name); mailbox files (mbox, Maildir) are named by the mail software.

    The certificates are scanned once (no index on their source path: it would cost every ingest),
    against the small set of candidate rows; only when a purge removed something.
    """
    key = store.hash_key(create=True)
    assert key is not None
    rows = store.db.execute(
        "WITH cand AS (SELECT path FROM files WHERE kind IN (?, ?) AND substr(path, 1, 2) != ?) "
        "SELECT path FROM cand WHERE path NOT IN "
        "(SELECT source_path FROM certificates WHERE source_path IN (SELECT path FROM cand)) "
        "AND path NOT IN (SELECT path FROM quarantine)",
        (EML, PDF, PATH_PREFIX),
    ).fetchall()
    for (path,) in rows:
        hashed = path_key(key, path)
        store.db.execute("DELETE FROM files WHERE path = ?", (hashed,))
        store.db.execute("UPDATE files SET path = ? WHERE path = ?", (hashed, path))
    return len(rows)


def scrub(store: Store) -> None:
    """Physically erase what was deleted (see the module docstring)."""
    db = store.db
    with store.transaction():
        db.execute("INSERT INTO certificates_fts (certificates_fts) VALUES ('optimize')")
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_terms USING fts5vocab(main, certificates_fts, 'row')")
        db.execute("DELETE FROM vocab WHERE token NOT IN (SELECT term FROM temp.fts_terms)")
        store.set_meta("vocab_generation", secrets.token_hex(8))
    # Readers of the service may hold the log for a moment: retry until it is truncated (else the
    # scrub stays pending, and the next purge tries again).
    for _ in range(50):
        busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy and store.blobs.checkpoint():
            with store.transaction():
                db.execute("DELETE FROM meta WHERE key = 'scrub_pending'")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            break
        time.sleep(0.1)


def sweep_orphan_pdfs(store: Store, min_age_seconds: float = 3600) -> int:
    """Remove the PDFs no certificate refers to (left by an interrupted run) once ``min_age_seconds``
    old (a younger one may belong to a row being committed). Returns how many."""
    used = {r[0] for r in store.db.execute("SELECT DISTINCT pdf_sha256 FROM certificates WHERE pdf_sha256 IS NOT NULL")}
    removed = 0
    limit = time.time() - min_age_seconds
    for sha256 in store.blobs.older_than(limit):
        if sha256 not in used:
            store.blobs.remove(sha256)
            removed += 1
    for folder in store.blobs.root.glob("??"):
        for path in folder.iterdir():
            sha256 = path.name.split(".")[0]
            try:
                if sha256 not in used and path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def remove_if_unused(store: Store, hashes: set[str]) -> None:
    """Remove the blobs among ``hashes`` that no committed certificate uses (duplicates, expired)."""
    for sha256 in hashes:
        used = store.db.execute("SELECT 1 FROM certificates WHERE pdf_sha256 = ? LIMIT 1", (sha256,)).fetchone()
        if used is None:
            store.blobs.remove(sha256)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

