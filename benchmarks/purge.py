"""Purge cost at scale: an index of N certificates, half of them past retention, purged once.

Builds the index directly through the store (fast: no parsing), with one watched-file row per
certificate (a fifth of them .eml/PDF files from a Downloads folder, the rest Maildir files),
then times ``Store.purge`` (rows, tombstones, file-name anonymisation, FTS optimize, vocabulary,
WAL truncation) and prints the figures, and the index size before and after. Not part of CI.

    .venv/bin/python benchmarks/purge.py --certs 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import mailgen  # noqa: E402

from helper.index.store import FileState, Store  # noqa: E402
from helper.parse.message import Certificate  # noqa: E402


def build(store: Store, n: int, rng: random.Random) -> None:
    today = dt.datetime.now().replace(microsecond=0)
    with store.transaction():
        for i in range(n):
            age = 120 if i % 2 else 10  # every other one past a 90-day retention
            spec = mailgen.random_spec(rng, sampled_at=today - dt.timedelta(days=age, minutes=i % 1440))
            downloads = i % 5 == 0  # half of them purged
            path = (f"/home/lab/Téléchargements/{mailgen.pdf_filename(spec)}" if downloads
                    else f"/home/lab/Maildir/cur/{i}.host:2,S")
            cert = Certificate(
                site_finess=spec.finess, dossier=f"{spec.dossier}{i}", last_name=spec.last_name,
                first_name=spec.first_name, sex=spec.sex, birth_date=spec.birth_date.isoformat(),
                sampled_at=spec.sampled_at.isoformat(), integrated_at=spec.integrated_at.isoformat(),
                outcome="negative", message_id=spec.message_id,
            )
            store.add(cert, "pdf" if downloads else "maildir", path)
            store.save_file_state(FileState(path, 1000 + i, i, "pdf" if downloads else "maildir"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = Store(data)
        started = time.perf_counter()
        build(store, args.certs, random.Random(args.seed))
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        built = time.perf_counter() - started
        size_before = (data / "index.sqlite3").stat().st_size
        limit = (dt.date.today() - dt.timedelta(days=90)).isoformat()
        started = time.perf_counter()
        ids = store.purge(limit, 90)
        took = time.perf_counter() - started
        hashed = store.db.execute("SELECT count(*) FROM files WHERE path LIKE 'k:%'").fetchone()[0]
        tombstones = store.db.execute("SELECT count(*) FROM tombstones").fetchone()[0]
        left = store.db.execute("SELECT count(*) FROM certificates").fetchone()[0]
        wal = (data / "index.sqlite3-wal").stat().st_size
        size_after = (data / "index.sqlite3").stat().st_size
        store.close()
    print(f"index of {args.certs} certificates built in {built:.1f} s ({size_before / 1e6:.1f} MB)")
    print(f"purge: {len(ids)} certificates removed in {took:.2f} s; {left} left; "
          f"{hashed} file names replaced by keyed hashes; {tombstones} tombstones; WAL after: {wal} bytes; "
          f"index {size_after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
