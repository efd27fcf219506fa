"""The local store: one SQLite database (WAL, FTS5 index) and content-addressed PDF files.

Layout of the data directory (folders 0700, files 0600)::

    index.sqlite3        certificates, full-text index, name vocabulary, file states, quarantine
    pdf/ab/abcdef….pdf   each certificate PDF once, named by its SHA-256, never by a mail-given name

Certificate ids are chosen so that id order is sampling order: ``minutes since epoch << 16``
plus a counter. The full-text index shares the ids as rowids, so "most recent first" is a
plain ``ORDER BY rowid DESC`` that SQLite walks backwards and stops after ``LIMIT`` rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helper.parse.text import name_tokens

if TYPE_CHECKING:  # the parser is not needed to read the index (keeps `search` start-up light)
    from helper.parse.message import Certificate

DB_NAME = "index.sqlite3"
SCHEMA_VERSION = 3
ID_SHIFT = 16  # ids per sampling minute
TYPO_MIN_TOKEN = 3

_FTS_TABLE = """CREATE VIRTUAL TABLE IF NOT EXISTS certificates_fts USING fts5 (
    names, site, dossier, birth, ins,
    tokenize = 'ascii', prefix = '2 3 4 5 6', detail = 'column'
);"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS certificates (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    site_finess TEXT,
    dossier TEXT,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    sex TEXT,
    birth_date TEXT,
    ins TEXT,
    analysis_code TEXT,
    analysis_label TEXT,
    sampled_at TEXT,
    integrated_at TEXT,
    result TEXT,
    outcome TEXT NOT NULL,
    message_id TEXT UNIQUE,
    recipient TEXT,
    mail_date TEXT,
    source TEXT NOT NULL,
    source_path TEXT,
    pdf_only INTEGER NOT NULL DEFAULT 0,
    pdf_sha256 TEXT,
    pdf_size INTEGER,
    superseded INTEGER NOT NULL DEFAULT 0,
    warnings TEXT NOT NULL DEFAULT '[]',
    raw TEXT NOT NULL DEFAULT '{}',
    verification TEXT,
    added_at TEXT NOT NULL,
    printed_at TEXT,
    print_count INTEGER NOT NULL DEFAULT 0,
    delivered_at TEXT,
    delivered_by TEXT
);
CREATE INDEX IF NOT EXISTS certificates_site_dossier ON certificates (site_finess, dossier);
CREATE INDEX IF NOT EXISTS certificates_pdf ON certificates (pdf_sha256);
""" + _FTS_TABLE + """
CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    offset INTEGER NOT NULL DEFAULT 0,
    tail TEXT,
    seen_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    UNIQUE (path, item)
);
"""

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


def secure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 and make sure it stays so."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


class BlobStore:
    """PDF files stored once each under their SHA-256 (files 0600, folders 0700).

    Workers write blobs in parallel (temporary file, then atomic rename); the database records
    which certificate uses which hash. A blob written by a run killed before its commit is an
    orphan with a correct name: the next run reuses it, and purge removes orphans.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[str] = set()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def put(self, sha256: str, data: bytes) -> None:
        """Write ``data`` under its hash unless already there."""
        folder = os.path.join(self.root, sha256[:2])
        target = os.path.join(folder, f"{sha256}.pdf")
        if folder not in self._dirs:
            secure_dir(Path(folder))
            self._dirs.add(folder)
        try:
            if os.path.getsize(target) == len(data):
                return
        except OSError:
            pass
        tmp = os.path.join(folder, f".{sha256}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, sha256: str) -> bytes | None:
        """The PDF bytes, verified against their hash; None if absent or damaged."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class Store:
    """Access to the index. One instance per thread; writes happen in :meth:`transaction`."""

    def __init__(self, data_dir: Path, *, readonly: bool = False) -> None:
        self.data_dir = data_dir
        self.blobs = BlobStore(data_dir / "pdf")
        db_path = data_dir / DB_NAME
        if readonly:
            if not db_path.exists():
                raise FileNotFoundError(db_path)
            self.db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            secure_dir(data_dir)
            secure_dir(data_dir / "pdf")
            self.db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
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

    def _init_schema(self) -> None:
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        found = int(self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if found < SCHEMA_VERSION:
            self._migrate(found)

    def _migrate(self, found: int) -> None:
        """Bring an index written by an older version up to date, in one transaction."""
        with self.transaction():
            if found < 2:
                # v2: hand-over columns; prefix indexes up to 6 letters (the FTS table is rebuilt).
                have = {r[1] for r in self.db.execute("PRAGMA table_info(certificates)")}
                for column, decl in (("printed_at", "TEXT"), ("print_count", "INTEGER NOT NULL DEFAULT 0"),
                                     ("delivered_at", "TEXT"), ("delivered_by", "TEXT")):
                    if column not in have:
                        self.db.execute(f"ALTER TABLE certificates ADD COLUMN {column} {decl}")
                self.db.execute("ALTER TABLE certificates_fts RENAME TO certificates_fts_old")
                self.db.execute(_FTS_TABLE)
                self.db.execute(
                    "INSERT INTO certificates_fts (rowid, names, site, dossier, birth, ins) "
                    "SELECT rowid, names, site, dossier, birth, ins FROM certificates_fts_old"
                )
                self.db.execute("DROP TABLE certificates_fts_old")
                # Early v1 indexes kept the typo vocabulary without ids, plus a deletion table.
                if "id" not in {r[1] for r in self.db.execute("PRAGMA table_info(vocab)")}:
                    self.db.execute("ALTER TABLE vocab RENAME TO vocab_old")
                    self.db.execute("CREATE TABLE vocab (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE)")
                    self.db.execute("INSERT INTO vocab (token) SELECT token FROM vocab_old")
                    self.db.execute("DROP TABLE vocab_old")
                self.db.execute("DROP TABLE IF EXISTS vocab_deletes")
            if found < 3:
                # v3: the barcode verification (helper/parse/verify.py), JSON; NULL = not checked.
                if "verification" not in {r[1] for r in self.db.execute("PRAGMA table_info(certificates)")}:
                    self.db.execute("ALTER TABLE certificates ADD COLUMN verification TEXT")
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
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
            "SELECT id, pdf_only FROM certificates WHERE message_id = ?1 OR pdf_sha256 = ?2 "
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

    # --- retention --------------------------------------------------------------------------

    def purge(self, older_than: str) -> list[int]:
        """Remove certificates integrated before ``older_than`` (ISO date): rows, index entries, PDFs.

        Returns the ids removed (the audit trail keeps them). A PDF shared by a remaining record
        (the same certificate seen as a PDF alone) is kept.
        """
        with self.transaction():
            rows = self.db.execute(
                "SELECT id, pdf_sha256 FROM certificates WHERE coalesce(integrated_at, sampled_at, added_at) < ?",
                (older_than,),
            ).fetchall()
            ids = [r[0] for r in rows]
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM certificates WHERE id IN ({marks})", chunk)
                self.db.execute(f"DELETE FROM certificates_fts WHERE rowid IN ({marks})", chunk)
            hashes = {r[1] for r in rows if r[1]}
            still_used = {
                r[0]
                for chunk in _chunks(sorted(hashes), 500)
                for r in self.db.execute(
                    f"SELECT pdf_sha256 FROM certificates WHERE pdf_sha256 IN ({','.join('?' * len(chunk))})", chunk
                )
            }
        for sha256 in hashes - still_used:
            self.blobs.remove(sha256)
        if ids:
            self._scrub()
        return ids

    def _scrub(self) -> None:
        """Physically erase what was deleted: FTS segments rewritten, unused name words dropped,
        freed pages zeroed (secure_delete) and the write-ahead log truncated."""
        with self.transaction():
            self.db.execute("INSERT INTO certificates_fts (certificates_fts) VALUES ('optimize')")
            self.db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_terms USING fts5vocab(main, certificates_fts, 'row')"
            )
            self.db.execute("DELETE FROM vocab WHERE token NOT IN (SELECT term FROM temp.fts_terms)")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def sweep_orphan_pdfs(self, min_age_seconds: float = 3600) -> int:
        """Remove PDF files no certificate refers to (left by an interrupted run). Returns how many."""
        used = {r[0] for r in self.db.execute("SELECT DISTINCT pdf_sha256 FROM certificates WHERE pdf_sha256 IS NOT NULL")}
        removed = 0
        limit = dt.datetime.now().timestamp() - min_age_seconds
        for folder in self.blobs.root.glob("??"):
            for path in folder.iterdir():
                sha256 = path.name.split(".")[0].lstrip(".")
                try:
                    if sha256 not in used and path.stat().st_mtime < limit:
                        path.unlink()
                        removed += 1
                except OSError:
                    continue
        return removed

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

    def save_file_state(self, state: FileState) -> None:
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
        return {
            "certificates": row[0],
            "superseded": row[1],
            "pdf_only": row[2],
            "files": files,
            "quarantined": quarantined,
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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def dossier_key(dossier: str) -> str:
    """The form a dossier number is indexed and searched in: letters and digits, lower case."""
    return "".join(ch for ch in dossier.lower() if ch.isalnum() and ch.isascii())
