"""The local store: one SQLite database (WAL, FTS5 index) and content-addressed PDF files.

Layout of the data directory (folders 0700, files 0600)::

    index.sqlite3        certificates, full-text index, name vocabulary, file states, quarantine,
                         tombstones (schema and migrations: helper.index.schema)
    pdf/pdfs.sqlite3     each certificate PDF once, by its SHA-256 (helper.index.blobs; older
                         versions wrote pdf/ab/abcdef….pdf files, still read)
    quarantine/…eml      pushed messages that could not be used (helper.index.quarantine)
    keyed-hash.key       the secret of the keyed hashes left by a purge (helper.index.lifecycle)

Certificate ids are chosen so that id order is sampling order: ``minutes since epoch << 16``
plus a counter. The full-text index shares the ids as rowids, so "most recent first" is a
plain ``ORDER BY rowid DESC`` that SQLite walks backwards and stops after ``LIMIT`` rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helper.index import lifecycle, quarantine, schema
from helper.index.blobs import BlobStore, secure_dir
from helper.index.schema import DB_NAME, SCHEMA_VERSION
from helper.parse.text import name_tokens

if TYPE_CHECKING:  # the parser is not needed to read the index (keeps `search` start-up light)
    from helper.parse.message import Certificate

ID_SHIFT = 16  # ids per sampling minute
TYPO_MIN_TOKEN = 3

PUBLIC_FIELDS = (
    "id", "site_finess", "dossier", "last_name", "first_name", "sex", "birth_date", "ins",
    "analysis_code", "analysis_label", "sampled_at", "integrated_at", "result", "outcome",
    "message_id", "source", "superseded", "warnings", "pdf_only", "pdf_sha256", "raw",
    "printed_at", "print_count", "delivered_at", "delivered_by", "verification",
)


@dataclass
class FileState:
    path: str
    size: int
    mtime_ns: int
    kind: str
    offset: int = 0
    tail: str | None = None


def now_iso() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class Store:
    """Access to the index. One instance per thread; writes happen in :meth:`transaction`."""

    def __init__(self, data_dir: Path, *, readonly: bool = False) -> None:
        self.data_dir = data_dir
        self.readonly = readonly
        self._key: bytes | None = None
        self._key_checked = False
        self.blobs = BlobStore(data_dir / "pdf", readonly=readonly)
        db_path = data_dir / DB_NAME
        if readonly:
            if not db_path.exists():
                raise FileNotFoundError(db_path)
            self.db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            secure_dir(data_dir)
            secure_dir(data_dir / "pdf")
            self.db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA secure_delete = ON")
            self._init_schema()
            for suffix in ("", "-wal", "-shm"):
                p = Path(f"{db_path}{suffix}")
                if os.name == "posix" and p.exists() and (p.stat().st_mode & 0o777) != 0o600:
                    os.chmod(p, 0o600)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA secure_delete = ON")
        self.db.execute("PRAGMA cache_size = -16000")
        self._vocab: set[str] = set()
        #: PDFs a completed PDF-alone record no longer uses (the mail's own PDF replaced it).
        self.dropped_pdfs: set[str] = set()

    def _init_schema(self) -> None:
        found = schema.create(self.db)
        if found < SCHEMA_VERSION:
            with self.transaction():
                schema.migrate(self.db, found)
        self.db.executescript(schema.LATE_INDEXES)

    def hash_key(self, *, create: bool = False) -> bytes | None:
        """The data directory's secret for keyed hashes (tombstones, anonymised file paths)."""
        if self._key is None and (create or not self._key_checked):
            self._key = lifecycle.load_key(self.data_dir, create=create and not self.readonly)
            self._key_checked = True
        return self._key

    def close(self) -> None:
        self.blobs.close()
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self._vocab.clear()
            raise
        else:
            self.db.execute("COMMIT")

    def commit(self) -> None:
        """Commit the open transaction and open the next one."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    # --- certificates -----------------------------------------------------------------------

    def add(self, cert: Certificate, source: str, source_path: str | None) -> tuple[str, int]:
        """Store a parsed certificate (inside a transaction). Returns (``new`` or ``duplicate``, id).

        The same certificate seen again — same Message-ID, same site/dossier/integration date,
        or the same PDF bytes — is one record; a PDF-alone record is completed by the mail that
        carried it. A re-issue (same site and dossier, later integration) is a new record and
        the older ones are marked superseded.
        """
        existing = self._find_same(cert)
        if existing is not None:
            if existing["pdf_only"] and not cert.pdf_only:
                if existing["pdf_sha256"] and existing["pdf_sha256"] != cert.pdf_sha256:
                    self.dropped_pdfs.add(existing["pdf_sha256"])  # removed after the commit if unused
                self._replace(existing["id"], cert, source, source_path)
            return "duplicate", existing["id"]
        cert_id = self._allocate_id(cert)
        row = self._row(cert, source, source_path)
        row["id"] = cert_id
        row["added_at"] = now_iso()
        cols = ", ".join(row)
        self.db.execute(
            f"INSERT INTO certificates ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
        )
        self._index(cert_id, cert)
        self._update_superseded(cert.site_finess, cert.dossier)
        return "new", cert_id

    def pdf(self, cert_id: int) -> bytes | None:
        """The certificate's PDF, verified against its hash."""
        row = self.db.execute("SELECT pdf_sha256 FROM certificates WHERE id = ?", (cert_id,)).fetchone()
        return self.blobs.get(row[0]) if row and row[0] else None

    def _find_same(self, cert: Certificate) -> sqlite3.Row | None:
        """The stored record this certificate is another copy of, preferring a mail record."""
        return self.db.execute(
            "SELECT id, pdf_only, pdf_sha256 FROM certificates WHERE message_id = ?1 OR pdf_sha256 = ?2 "
            "OR (site_finess = ?3 AND dossier = ?4 AND integrated_at = ?5) ORDER BY pdf_only LIMIT 1",
            (cert.message_id, cert.pdf_sha256, cert.site_finess, cert.dossier, cert.integrated_at),
        ).fetchone()

    def _row(self, cert: Certificate, source: str, source_path: str | None) -> dict[str, Any]:
        from helper.parse import sidep

        return {
            "kind": sidep.KIND,
            "site_finess": cert.site_finess,
            "dossier": cert.dossier,
            "last_name": cert.last_name,
            "first_name": cert.first_name,
            "sex": cert.sex,
            "birth_date": cert.birth_date,
            "ins": cert.ins,
            "analysis_code": cert.analysis_code,
            "analysis_label": cert.analysis_label,
            "sampled_at": cert.sampled_at,
            "integrated_at": cert.integrated_at,
            "result": cert.result,
            "outcome": cert.outcome,
            "message_id": cert.message_id,
            "recipient": cert.recipient,
            "mail_date": cert.mail_date,
            "source": source,
            "source_path": source_path,
            "pdf_only": int(cert.pdf_only),
            "pdf_sha256": cert.pdf_sha256,
            "pdf_size": cert.pdf_size,
            "warnings": json.dumps(cert.warnings, ensure_ascii=False),
            "raw": json.dumps(cert.raw, ensure_ascii=False),
            "verification": json.dumps(cert.verification, ensure_ascii=False) if cert.verification else None,
        }

    def _replace(self, cert_id: int, cert: Certificate, source: str, source_path: str | None) -> None:
        row = self._row(cert, source, source_path)
        sets = ", ".join(f"{k} = ?" for k in row)
        self.db.execute(f"UPDATE certificates SET {sets} WHERE id = ?", (*row.values(), cert_id))
        self.db.execute("DELETE FROM certificates_fts WHERE rowid = ?", (cert_id,))
        self._index(cert_id, cert)
        self._update_superseded(cert.site_finess, cert.dossier)

    def _allocate_id(self, cert: Certificate) -> int:
        when = cert.sampled_at or cert.integrated_at or cert.mail_date
        try:
            moment = dt.datetime.fromisoformat(when) if when else dt.datetime.now()
        except ValueError:
            moment = dt.datetime.now()
        minutes = int(moment.replace(tzinfo=None).timestamp() // 60) if moment.year >= 1971 else 0
        base = max(minutes, 1) << ID_SHIFT
        top = self.db.execute(
            "SELECT max(id) FROM certificates WHERE id >= ? AND id < ?", (base, base + (1 << ID_SHIFT))
        ).fetchone()[0]
        return base if top is None else top + 1

    def _index(self, cert_id: int, cert: Certificate) -> None:
        tokens = name_tokens(cert.last_name) + [t for t in name_tokens(cert.first_name)]
        self.db.execute(
            "INSERT INTO certificates_fts (rowid, names, site, dossier, birth, ins) VALUES (?, ?, ?, ?, ?, ?)",
            (
                cert_id,
                " ".join(dict.fromkeys(tokens)),
                (cert.site_finess or "").lower(),
                dossier_key(cert.dossier or ""),
                (cert.birth_date or "").replace("-", ""),
                (cert.ins or "").lower(),
            ),
        )
        self._add_vocab(tokens)

    def _add_vocab(self, tokens: Iterable[str]) -> None:
        """Remember every name word once: the typo fallback searches this vocabulary."""
        for token in tokens:
            if len(token) < TYPO_MIN_TOKEN or token in self._vocab or not token.isalpha():
                continue
            self._vocab.add(token)
            self.db.execute("INSERT OR IGNORE INTO vocab (token) VALUES (?)", (token,))

    def _update_superseded(self, site: str | None, dossier: str | None) -> None:
        if not site or not dossier:
            return
        rows = self.db.execute(
            "SELECT id, integrated_at, pdf_only, superseded FROM certificates WHERE site_finess = ? AND dossier = ?",
            (site, dossier),
        ).fetchall()
        if len(rows) < 2:
            return
        latest = max(rows, key=lambda r: (r["integrated_at"] or "", not r["pdf_only"], r["id"]))["id"]
        for r in rows:
            flag = int(r["id"] != latest)
            if r["superseded"] != flag:
                self.db.execute("UPDATE certificates SET superseded = ? WHERE id = ?", (flag, r["id"]))

    # --- hand-over to the patient ---------------------------------------------------------

    def mark_printed(self, cert_id: int) -> dict[str, Any] | None:
        with self.transaction():
            self.db.execute(
                "UPDATE certificates SET printed_at = ?, print_count = print_count + 1 WHERE id = ?",
                (now_iso(), cert_id),
            )
        return self.get(cert_id)

    def mark_delivered(self, cert_id: int, initials: str | None) -> dict[str, Any] | None:
        with self.transaction():
            self.db.execute(
                "UPDATE certificates SET delivered_at = ?, delivered_by = ? WHERE id = ?",
                (now_iso(), initials or None, cert_id),
            )
        return self.get(cert_id)

    def undo_delivered(self, cert_id: int) -> dict[str, Any] | None:
        with self.transaction():
            self.db.execute("UPDATE certificates SET delivered_at = NULL, delivered_by = NULL WHERE id = ?", (cert_id,))
        return self.get(cert_id)

    # --- retention (helper.index.lifecycle) ----------------------------------------------------

    def purge(self, older_than: str, retention_days: int | None = None) -> list[int]:
        """Remove what is past ``older_than`` (ISO date); see :func:`helper.index.lifecycle.purge`."""
        return lifecycle.purge(self, older_than, retention_days)

    def sweep_orphan_pdfs(self, min_age_seconds: float = 3600) -> int:
        return lifecycle.sweep_orphan_pdfs(self, min_age_seconds)

    def get(self, cert_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM certificates WHERE id = ?", (cert_id,)).fetchone()
        return public(row) if row else None

    # --- files and quarantine ---------------------------------------------------------------

    def file_signatures(self) -> dict[str, tuple[int, int]]:
        """path → (size, mtime_ns) of every file read before: enough to skip unchanged files."""
        return {r[0]: (r[1], r[2]) for r in self.db.execute("SELECT path, size, mtime_ns FROM files")}

    def file_state(self, path: str) -> FileState | None:
        r = self.db.execute("SELECT path, size, mtime_ns, kind, offset, tail FROM files WHERE path = ?", (path,)).fetchone()
        return FileState(r[0], r[1], r[2], r[3], r[4], r[5]) if r else None

    def known_signature(self, known: dict[str, tuple[int, int]], path: str) -> tuple[int, int] | None:
        """``path``'s entry in ``file_signatures()``, under its name or under the keyed hash a purge left."""
        signature = known.get(path)
        if signature is None and self.hash_key() is not None:
            signature = known.get(self.file_path_key(path) or "")
        return signature

    def file_path_key(self, path: str) -> str | None:
        """The keyed hash a purge put in place of ``path`` (None before any purge)."""
        key = self.hash_key()
        return lifecycle.path_key(key, path) if key else None

    def save_file_state(self, state: FileState, *, anonymous: bool = False) -> None:
        """Record how far a file was read. ``anonymous``: under the keyed hash of its path (a file
        that gave nothing to keep, e.g. only expired certificates: its name may be the patient's)."""
        key = self.hash_key(create=anonymous)
        if key is not None:
            hashed = lifecycle.path_key(key, state.path)
            self.db.execute("DELETE FROM files WHERE path = ?", (state.path if anonymous else hashed,))
            if anonymous:
                state = FileState(hashed, state.size, state.mtime_ns, state.kind, state.offset, state.tail)
        self.db.execute(
            "INSERT INTO files (path, size, mtime_ns, kind, offset, tail, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "kind = excluded.kind, offset = excluded.offset, tail = excluded.tail, seen_at = excluded.seen_at",
            (state.path, state.size, state.mtime_ns, state.kind, state.offset, state.tail, now_iso()),
        )

    def clear_quarantine(self, path: str, from_offset: int | None = None) -> None:
        if from_offset is None or from_offset == 0:
            self.db.execute("DELETE FROM quarantine WHERE path = ?", (path,))
        else:
            self.db.execute(
                "DELETE FROM quarantine WHERE path = ? AND item LIKE '@%' AND CAST(substr(item, 2) AS INTEGER) >= ?",
                (path, from_offset),
            )

    def quarantine(self, path: str, item: str, reason: str, detail: str) -> None:
        now = now_iso()
        self.db.execute(
            "INSERT INTO quarantine (path, item, reason, detail, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (path, item) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, "
            "last_seen = excluded.last_seen",
            (path, item, reason, detail, now, now),
        )

    def quarantined(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.db.execute(
                "SELECT path, item, reason, detail, first_seen, last_seen FROM quarantine ORDER BY path, item"
            )
        ]

    # --- status ---------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        row = self.db.execute(
            "SELECT count(*), coalesce(sum(superseded), 0), coalesce(sum(pdf_only), 0) FROM certificates"
        ).fetchone()
        files = self.db.execute("SELECT count(*) FROM files").fetchone()[0]
        quarantined = self.db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        try:
            expired = self.db.execute(
                "SELECT count(*) FROM tombstones WHERE kind = 'expired' AND key LIKE 'd:%'"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # an index from before v3, opened read-only
            expired = 0
        return {
            "certificates": row[0],
            "superseded": row[1],
            "pdf_only": row[2],
            "files": files,
            "quarantined": quarantined,
            "expired": expired,
            "quarantine_bytes": quarantine.size(self.data_dir),
            "quarantine_evicted": int(self.meta("quarantine_evicted") or 0),
        }


def public(row: sqlite3.Row) -> dict[str, Any]:
    """The public JSON object of a certificate row (the search contract)."""
    keys = row.keys()
    out = {k: row[k] if k in keys else None for k in PUBLIC_FIELDS}  # an index opened read-only before v3
    out["superseded"] = bool(out["superseded"])
    out["pdf_only"] = bool(out["pdf_only"])
    out["warnings"] = json.loads(out["warnings"])
    out["raw"] = json.loads(out["raw"])
    out["verification"] = json.loads(out["verification"]) if out["verification"] else None
    return out


def dossier_key(dossier: str) -> str:
    """The form a dossier number is indexed and searched in: letters and digits, lower case."""
    return "".join(ch for ch in dossier.lower() if ch.isalnum() and ch.isascii())
