"""What the API handlers share: settings, the token, the audit trail and the database threads.

Database work runs in threads, each with its own connection: reads on a small pool, every write on
one thread (SQLite has one writer), audit events appended in order from their own thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from helper.config import Settings
from helper.index.store import Store
from helper.service.audit import Audit

log = logging.getLogger("sidep_helper.api")

T = TypeVar("T")


@dataclass
class Context:
    """What the handlers share. Database work runs in threads, each with its own connection."""

    settings: Settings
    token: Callable[[], str]
    audit: Audit
    readers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="lecture"))
    writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="ecriture"))
    auditor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="audit"))
    watcher: Any = None  # helper.watch.Watcher when serving
    local: threading.local = field(default_factory=threading.local)
    stores: list[Store] = field(default_factory=list)
    stores_lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> Store:
        """The calling thread's connection to the index."""
        store = getattr(self.local, "store", None)
        if store is None:
            store = Store(self.settings.data_dir)
            self.local.store = store
            with self.stores_lock:
                self.stores.append(store)
        return store

    async def read(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.readers, lambda: fn(self.store()))

    async def write(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.writer, lambda: fn(self.store()))

    def trace(self, action: str, ids: list[int], origin: str, detail: str = "") -> None:
        """Append to the audit trail from its own thread, so a WAL checkpoint never stalls a reply.

        One thread keeps the events in order; a failure is logged (ids and action only)."""
        future = self.auditor.submit(self.audit.record, action, ids, origin, detail)
        future.add_done_callback(_log_audit_failure)

    def close(self) -> None:
        self.readers.shutdown(wait=True)
        self.writer.shutdown(wait=True)
        self.auditor.shutdown(wait=True)
        with self.stores_lock:
            for store in self.stores:
                try:
                    store.close()
                except Exception:  # noqa: BLE001 - closing another thread's connection may refuse
                    pass
            self.stores.clear()


CTX = web.AppKey("ctx", Context)


def client(request: web.Request) -> str:
    """Who asked, for the audit trail: the extension's origin, else ``local``."""
    return request.headers.get("Origin") or "local"


def _log_audit_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("échec d'écriture dans le journal de traçabilité : %s", type(exc).__name__)
