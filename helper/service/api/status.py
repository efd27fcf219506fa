"""Routes about the service itself: health (no token), status, and the OpenAPI contract."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from aiohttp import web

from helper import __version__
from helper.index import dispatchjournal, imapstate
from helper.index.store import Store
from helper.service.api.context import CTX


async def health(request: web.Request) -> web.Response:
    demo = request.app[CTX].settings.demo
    return web.json_response({"status": "ok", "service": "sidep-helper", "version": __version__, "demo": demo})


async def status(request: web.Request) -> web.Response:
    from helper.service import printing

    ctx = request.app[CTX]

    def collect(store: Store) -> dict[str, Any]:
        counts = store.counts()
        counts["to_deliver"] = store.db.execute(
            "SELECT count(*) FROM certificates WHERE delivered_at IS NULL"
        ).fetchone()[0]
        return {"counts": counts, "quarantine": store.quarantined(), "last_ingest": store.meta("last_ingest"),
                "imap": imapstate.statuses(store), "dispatch": dispatchjournal.summary(store)}

    data = await ctx.read(collect)
    watcher = ctx.watcher
    loop = asyncio.get_running_loop()
    printer = await loop.run_in_executor(ctx.readers, lambda: printing.describe(ctx.settings.printer))
    last = (watcher.last_ingest() if watcher else None) or data["last_ingest"]
    return web.json_response(
        {
            "version": __version__,
            "demo": ctx.settings.demo,
            "counts": data["counts"],
            "watched": watcher.folders() if watcher else [],
            "quarantine": data["quarantine"],
            "last_ingest": last,
            "printer": printer,
            "retention_days": ctx.settings.retention_days,
            "quarantine_max_mb": ctx.settings.quarantine_max_mb,
            "sites": ctx.settings.sites,
            "imap": data["imap"],
            "dispatch": data["dispatch"],
        }
    )


def openapi_document() -> dict[str, Any]:
    return json.loads(resources.files("helper").joinpath("openapi.json").read_text(encoding="utf-8"))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
