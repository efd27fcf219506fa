"""An index written by an earlier version opens, is brought up to date, and keeps its certificates."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import sqlite3
import subprocess
from pathlib import Path

import mailgen
from conftest import Cli, stored_pdfs

ROOT = Path(__file__).resolve().parent.parent


def old_store_source(commit: str) -> str:
    return subprocess.run(["git", "show", f"{commit}:helper/store.py"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_index_of_the_first_release_is_migrated(cli: Cli, tmp_path: Path) -> None:
    # Build an index with the first version's schema (commit 90d17ef: no hand-over columns,
    # prefix indexes 2-4, vocabulary without ids) by running that version's SQL.
    source = old_store_source("90d17ef")
    schema = source.split('SCHEMA = """', 1)[1].split('"""', 1)[0]
    cli.home.mkdir(parents=True)
    db = sqlite3.connect(cli.home / "index.sqlite3")
    db.executescript(schema)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    spec = mailgen.random_spec(random.Random(1), last_name="LEFÈVRE", first_name="Émilie")
    db.execute(
        "INSERT INTO certificates (id, kind, site_finess, dossier, last_name, first_name, outcome, source, added_at) "
        "VALUES (7, 'sidep-certificate', ?, ?, 'LEFÈVRE', 'Émilie', 'negative', 'eml', '2026-01-01T00:00:00')",
        (spec.finess, spec.dossier),
    )
    db.execute("INSERT INTO certificates_fts (rowid, names, site, dossier, birth, ins) VALUES "
               "(7, 'lefevre emilie', ?, ?, '', '')", (spec.finess.lower(), spec.dossier.lower()))
    db.execute("INSERT INTO vocab (token) VALUES ('lefevre'), ('emilie')")
    db.commit()
    db.close()

    found = cli.search("lefevre emi")
    assert found["total"] == 1 and found["results"][0]["id"] == 7
    assert found["results"][0]["delivered_at"] is None and found["results"][0]["print_count"] == 0
    assert found["results"][0]["verification"] is None  # v3: not checked before the upgrade
    assert cli.search("lefebvre")["results"][0]["match"] == "typo"  # vocabulary carried over
    # New certificates go into the migrated index.
    other = mailgen.random_spec(random.Random(2))
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(other)])
    assert cli.ingest(tmp_path / "eml")["new"] == 1
    assert cli.search(other.dossier)["total"] == 1
    db = sqlite3.connect(cli.home / "index.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "4"
    assert db.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 0  # v3: the table exists
    columns = {r[1] for r in db.execute("PRAGMA table_info(certificates)")}
    assert "verification" in columns  # v4: the barcode verification column
    assert "prefix = '2 3 4 5 6'" in db.execute("SELECT sql FROM sqlite_master WHERE name = 'certificates_fts'").fetchone()[0]
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'vocab_deletes'").fetchone()[0] == 0
    # The status counts and « à remettre » read a small covering index, not every certificate row
    # (at 100,000 certificates: 215 ms per status call without it, the API's callers poll it).
    plans = [" ".join(str(r[-1]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}")) for sql in (
        "SELECT count(*), coalesce(sum(superseded), 0), coalesce(sum(pdf_only), 0) FROM certificates",
        "SELECT count(*) FROM certificates WHERE delivered_at IS NULL")]
    assert all("COVERING INDEX certificates_state" in plan for plan in plans), plans


def test_pdf_files_of_an_earlier_version_are_served_then_purged(cli: Cli, tmp_path: Path) -> None:
    """Earlier versions wrote each PDF as a file, pdf/ab/<sha256>.pdf: an upgraded helper still hands
    it out (verified against its hash), and the purge removes it with its certificate, leaving no trace."""
    from test_lifecycle import traces

    from helper.index.store import Store

    old = mailgen.random_spec(random.Random(3), last_name="ANCIENFORMAT", first_name="Clothilde")
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(old)])
    assert cli.ingest(tmp_path / "eml")["new"] == 1
    (sha256, pdf), = stored_pdfs(cli.home).items()
    # The data directory as an earlier version left it: the PDF in its own file.
    (cli.home / "pdf" / "pdfs.sqlite3").unlink()
    legacy = cli.home / "pdf" / sha256[:2] / f"{sha256}.pdf"
    legacy.parent.mkdir()
    legacy.write_bytes(pdf)

    cert_id = cli.search(old.dossier)["results"][0]["id"]
    store = Store(cli.home)
    try:
        assert store.pdf(cert_id) == pdf
        legacy.write_bytes(pdf[:-1] + b"#")  # a damaged file is not handed out
        assert store.pdf(cert_id) is None
        legacy.write_bytes(pdf)
    finally:
        store.close()
    assert hashlib.sha256(legacy.read_bytes()).hexdigest() == sha256

    db = sqlite3.connect(cli.home / "index.sqlite3")  # 200 days pass
    long_ago = (dt.date.today() - dt.timedelta(days=200)).isoformat()
    db.execute("UPDATE certificates SET integrated_at = ?, sampled_at = ?, added_at = ?", (long_ago, long_ago, long_ago))
    db.commit()
    db.close()
    (cli.home / "config.toml").write_text("retention_days = 90\n", encoding="utf-8")
    assert cli.json("purge")["ids"] == [cert_id]
    assert not legacy.exists()
    assert traces(cli.home, [old.last_name, old.first_name]) == []
