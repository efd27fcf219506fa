"""The localhost HTTP API used by the webmail and Thunderbird extensions.

Small explicit endpoints (like Zotero's connector server), one aiohttp ``Application`` wired with
``on_startup``/``on_cleanup``. The contract is ``helper/openapi.json``; tests validate responses
against it, and schemathesis fuzzes a real ``serve`` from it.

The package, one job per module:
- ``guards``: the checks every request passes (Host, Origin, token, route, content type) in order;
- ``params``: parameters and JSON bodies checked as the contract says;
- ``errors``: French JSON errors and the safety headers every answer carries;
- ``certificates``, ``messages``, ``status``: the routes;
- ``context``: what handlers share (settings, token, audit, database threads);
- ``server``: the HTTP server, its own error answers and the access log (route templates only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from aiohttp import web

from helper.config import Settings
from helper.index.store import Store
from helper.service.api import certificates, messages, report, status
from helper.service.api.context import CTX, Context
from helper.service.api.errors import VERSION_HEADER, error, secure
from helper.service.api.guards import allowed_hosts, guard, origin_allowed, well_formed_origin
from helper.service.api.messages import MAX_MESSAGE_BYTES
from helper.service.api.status import openapi_document
from helper.service.audit import Audit

__all__ = [
    "CTX", "Context", "MAX_MESSAGE_BYTES", "VERSION_HEADER", "allowed_hosts", "error", "make_app",
    "openapi_document", "origin_allowed", "purge_due", "well_formed_origin",
]


def make_app(settings: Settings, token: Callable[[], str], *, audit: Audit | None = None, watcher: Any = None) -> web.Application:
    """The API application. ``token`` is read at each request so that a rotation applies at once."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[CTX] = Context(settings=settings, token=token, audit=audit or Audit(settings.data_dir), watcher=watcher)
    app.router.add_get("/api/v1/health", status.health, allow_head=False)
    app.router.add_get("/api/v1/certificates", certificates.search, allow_head=False)
    app.router.add_get("/api/v1/certificates/{id}", certificates.get_certificate, allow_head=False)
    app.router.add_get("/api/v1/certificates/{id}/pdf", certificates.get_pdf, allow_head=False)
    app.router.add_post("/api/v1/certificates/{id}/print", certificates.print_certificate)
    app.router.add_post("/api/v1/certificates/{id}/delivered", certificates.mark_delivered)
    app.router.add_delete("/api/v1/certificates/{id}/delivered", certificates.undo_delivered)
    app.router.add_post("/api/v1/messages", messages.ingest_message)
    app.router.add_get("/api/v1/status", status.status, allow_head=False)
    app.router.add_get("/api/v1/report", report.daily, allow_head=False)
    app.router.add_get("/api/v1/report/waiting", report.waiting, allow_head=False)
    app.router.add_get("/api/v1/openapi.json", status.openapi, allow_head=False)
    app.on_response_prepare.append(_secure_every_answer)
    app.on_startup.append(_sweep_uploads)
    app.on_cleanup.append(_cleanup)
    return app


async def _secure_every_answer(request: web.Request, response: web.StreamResponse) -> None:
    secure(response, demo=request.app[CTX].settings.demo)


async def _sweep_uploads(app: web.Application) -> None:
    messages.sweep_spool(app[CTX].settings.data_dir)


async def _cleanup(app: web.Application) -> None:
    ctx = app[CTX]
    ctx.close()
    ctx.audit.close()


def purge_due(store: Store, audit: Audit, retention_days: int, origin: str = "service") -> list[int]:
    """Remove certificates past the retention period and record the purge (ids only)."""
    limit = (dt.date.today() - dt.timedelta(days=retention_days)).isoformat()
    ids = store.purge(limit, retention_days)
    store.sweep_orphan_pdfs()
    audit.record("purge", ids, origin, f"avant={limit} nombre={len(ids)}")
    return ids
