"""The index's SQLite schema, and the migrations from earlier versions.

1. ``create`` makes every table that is missing (a new index, or tables added since the index
   was written: ``CREATE … IF NOT EXISTS``) and records the schema version of a new index.
2. When the recorded version is older, ``migrate`` brings it up to date in one transaction,
   step by step (v1 → v2 → v3), then records the new version.
3. ``LATE_INDEXES`` are made last (``CREATE INDEX IF NOT EXISTS``: an index that has them is unchanged).
"""

from __future__ import annotations

import sqlite3

DB_NAME = "index.sqlite3"
SCHEMA_VERSION = 4

FTS_TABLE = """CREATE VIRTUAL TABLE IF NOT EXISTS certificates_fts USING fts5 (
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
""" + FTS_TABLE + """
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
-- v3: PDFs a purge committed to remove (a purge killed before it removed them: the next one does)
CREATE TABLE IF NOT EXISTS pdf_removals (sha256 TEXT PRIMARY KEY) WITHOUT ROWID;
-- v3: what is left of a purged (or expired-at-ingest) certificate: keyed hashes, never a name.
CREATE TABLE IF NOT EXISTS tombstones (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    created TEXT NOT NULL
) WITHOUT ROWID;
"""


#: Indexes on columns older versions lacked: made after ``migrate`` (``create`` runs before it).
#: ``certificates_state`` covers the status counts and the « à remettre » lists: counted from a small
#: index instead of every (wide) certificate row — 215 ms → 16 ms at 100,000 certificates.
LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS certificates_state ON certificates (superseded, delivered_at, pdf_only);
"""


def create(db: sqlite3.Connection) -> int:
    """Create what is missing; returns the schema version the index was written with."""
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def migrate(db: sqlite3.Connection, found: int) -> None:
    """Bring an index written by an older version up to date (inside the caller's transaction)."""
    if found < 2:
        # v2: hand-over columns; prefix indexes up to 6 letters (the FTS table is rebuilt).
        have = {r[1] for r in db.execute("PRAGMA table_info(certificates)")}
        for column, decl in (("printed_at", "TEXT"), ("print_count", "INTEGER NOT NULL DEFAULT 0"),
                             ("delivered_at", "TEXT"), ("delivered_by", "TEXT")):
            if column not in have:
                db.execute(f"ALTER TABLE certificates ADD COLUMN {column} {decl}")
        db.execute("ALTER TABLE certificates_fts RENAME TO certificates_fts_old")
        db.execute(FTS_TABLE)
        db.execute(
            "INSERT INTO certificates_fts (rowid, names, site, dossier, birth, ins) "
            "SELECT rowid, names, site, dossier, birth, ins FROM certificates_fts_old"
        )
        db.execute("DROP TABLE certificates_fts_old")
        # Early v1 indexes kept the typo vocabulary without ids, plus a deletion table.
        if "id" not in {r[1] for r in db.execute("PRAGMA table_info(vocab)")}:
            db.execute("ALTER TABLE vocab RENAME TO vocab_old")
            db.execute("CREATE TABLE vocab (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE)")
            db.execute("INSERT INTO vocab (token) SELECT token FROM vocab_old")
            db.execute("DROP TABLE vocab_old")
        db.execute("DROP TABLE IF EXISTS vocab_deletes")
    # v3: the tombstones and pdf_removals tables, made by ``create`` above (nothing to convert).
    if found < 4:
        # v4: the barcode verification (helper/parse/verify.py), JSON; NULL = not checked.
        if "verification" not in {r[1] for r in db.execute("PRAGMA table_info(certificates)")}:
            db.execute("ALTER TABLE certificates ADD COLUMN verification TEXT")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
