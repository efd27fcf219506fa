"""Worker processes that run ``ingest_message`` for the IMAP source's large backlogs.

Each worker opens its own connection to the index (``_init``) and ingests whole messages through the
same entry point as a pushed message (``_ingest``): parsing and the trust rules run in parallel, the
short write transactions are serialised by SQLite. Workers are *spawned*, never forked: a fork of the
multi-threaded service could copy a lock held by another thread (SQLite's, logging's) and hang the
child. A worker whose parent disappears (service killed) exits by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from helper.index.ingest import MessageOutcome, ingest_message
from helper.index.store import Store
from helper.parse.trust import TrustPolicy

_store: Store | None = None


def _init(data_dir: str) -> None:
    global _store
    _store = Store(Path(data_dir))
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def _ingest(raw: bytes, trusted: TrustPolicy, source: str, keep: dict[str, Any]) -> list[MessageOutcome]:
    assert _store is not None
    return ingest_message(_store, raw, trusted, source, **keep)


def start(data_dir: Path, workers: int) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` spawned processes, or None when none can be started (then work inline)."""
    try:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init, initargs=(str(data_dir),))
    except (OSError, RuntimeError):
        return None


def submit(
    pool: ProcessPoolExecutor, raw: bytes, trusted: TrustPolicy, source: str, keep: dict[str, Any]
) -> Future[list[MessageOutcome]]:
    """``ingest_message`` in a worker; ``keep``: its ``retention_days`` and ``quarantine_max_mb``."""
    return pool.submit(_ingest, raw, trusted, source, keep)
