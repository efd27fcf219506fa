"""The localhost HTTP API used by the webmail and Thunderbird extensions.

Small explicit endpoints (like Zotero's connector server), one aiohttp ``Application`` wired with
``on_startup``/``on_cleanup``. The contract is ``helper/openapi.json``; tests validate responses
against it.

Security, in the order the middleware applies it:
1. ``Host`` must name the loopback on our port (DNS rebinding);
2. an ``Origin``, when present, must be an allowed extension origin (``null`` is refused);
3. preflights are answered only for allowed origins; never ``Access-Control-Allow-Origin: *``;
4. a token in the query string is refused (it would end up in histories and logs);
5. every route but ``/api/v1/health`` needs ``Authorization: Bearer <token>`` (constant time);
6. request bodies are JSON (raw mail for ``/messages``); no GET changes state.
Every response carries ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff`` and the
``X-Sidep-Helper`` version header, so the extension can tell us from another program on the port.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from helper import __version__
from helper.config import Settings
from helper.index.store import Store
from helper.service.audit import Audit
from helper.service.token import matches

log = logging.getLogger("sidep_helper.api")

VERSION_HEADER = "X-Sidep-Helper"
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
EXTENSION_SCHEMES = ("chrome-extension://", "moz-extension://")
MOZ_EXTENSION_ORIGIN = re.compile(r"moz-extension://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TOKEN_PARAMS = frozenset({"token", "access_token", "auth", "authorization", "bearer", "key", "api_key"})

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _log_audit_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("échec d'écriture dans le journal de traçabilité : %s", type(exc).__name__)


# --- errors ------------------------------------------------------------------------------------

def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


# --- security middleware ---------------------------------------------------------------------------

def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


def origin_allowed(origin: str, settings: Settings) -> bool:
    origin = origin.rstrip("/")
    if origin in settings.allowed_origins:
        return True
    if MOZ_EXTENSION_ORIGIN.fullmatch(origin):  # random UUID per profile: the token protects these
        return True
    if settings.allow_any_extension_origin and origin.startswith(EXTENSION_SCHEMES):
        rest = origin.split("://", 1)[1]
        return bool(rest) and "/" not in rest and all(c.isalnum() or c in "-_" for c in rest)
    return False


def _cors_headers(origin: str | None) -> dict[str, str]:
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    settings = ctx.settings
    origin = request.headers.get("Origin")
    response: web.StreamResponse
    cors_origin: str | None = None
    if request.headers.get("Host", "") not in allowed_hosts(settings.port):
        response = error(403, "forbidden_host", "Hôte non autorisé : utilisez 127.0.0.1 ou localhost.")
    elif origin is not None and not origin_allowed(origin, settings):
        response = error(403, "forbidden_origin", "Origine non autorisée.")
    else:
        cors_origin = origin
        response = await _guarded(request, handler, ctx)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers[VERSION_HEADER] = __version__
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    for key, value in _cors_headers(cors_origin).items():
        response.headers[key] = value
    return response


async def _guarded(request: web.Request, handler: Handler, ctx: Context) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204)
    if TOKEN_PARAMS & {k.lower() for k in request.query}:
        return error(400, "token_in_url", "Le jeton ne doit jamais figurer dans l'adresse : utilisez l'en-tête Authorization.")
    if request.path != "/api/v1/health":
        auth = request.headers.get("Authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not presented or not matches(ctx.token(), presented.strip()):
            return error(
                401, "unauthorized", "Jeton absent ou invalide : vérifiez le jeton dans les réglages de l'extension.",
                {"WWW-Authenticate": 'Bearer realm="sidep-helper"'},
            )
    if request.method == "POST":
        expected = "message/rfc822" if request.path == "/api/v1/messages" else "application/json"
        if request.can_read_body and request.content_type != expected:
            return error(415, "unsupported_media_type", f"Corps attendu au format {expected}.")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 405:
            return error(405, "method_not_allowed", "Méthode non autorisée sur cette adresse.",
                         {"Allow": exc.headers.get("Allow", "")})
        if exc.status == 404:
            return error(404, "not_found", "Adresse inconnue.")
        raise
    except Exception:  # noqa: BLE001 - never leak a trace to the client
        log.exception("erreur interne sur %s %s", request.method, request.path)
        return error(500, "internal", "Erreur interne du service ; voir le journal.")


# --- handlers -------------------------------------------------------------------------------------------

def _client(request: web.Request) -> str:
    return request.headers.get("Origin") or "local"


def _with_site(settings: Settings, cert: dict[str, Any]) -> dict[str, Any]:
    cert["site_name"] = settings.sites.get(cert.get("site_finess") or "")
    return cert


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "sidep-helper", "version": __version__})


async def search(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    q = request.query.get("q", "")
    site = request.query.get("site") or None
    status = request.query.get("status", "all")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return error(400, "bad_limit", "« limit » doit être un nombre entier.")
    if not 1 <= limit <= 500 or status not in ("all", "to_deliver") or len(q) > 200:
        return error(400, "bad_parameter", "Paramètre de recherche invalide.")

    def run(store: Store) -> dict[str, Any]:
        from helper.index.search import Searcher

        return Searcher(store.db).search(q, site=site, limit=limit, to_deliver=status == "to_deliver")

    result = await ctx.read(run)
    for cert in result["results"]:
        _with_site(ctx.settings, cert)
    ctx.trace("search", [c["id"] for c in result["results"]], _client(request),
                     f"total={result['total']}")
    return web.json_response(result)


def _cert_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["id"])
    except ValueError:
        return None


NOT_FOUND = "Certificat introuvable (il a peut-être été purgé)."


async def _certificate_answer(
    request: web.Request, run: Callable[[Store, int], dict[str, Any] | None], action: str, *, write: bool
) -> web.Response:
    """Run ``run(store, id)`` for the certificate named in the path, audit it, answer the certificate."""
    ctx = request.app[CTX]
    cert_id = _cert_id(request)
    call = ctx.write if write else ctx.read
    cert = await call(lambda s: run(s, cert_id)) if cert_id is not None else None
    if cert is None or cert_id is None:
        return error(404, "not_found", NOT_FOUND)
    ctx.trace(action, [cert_id], _client(request))
    return web.json_response(_with_site(ctx.settings, cert))


async def get_certificate(request: web.Request) -> web.Response:
    return await _certificate_answer(request, lambda s, i: s.get(i), "view", write=False)


async def get_pdf(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cert_id = _cert_id(request)
    data = await ctx.read(lambda s: s.pdf(cert_id)) if cert_id is not None else None
    if data is None:
        return error(404, "not_found", "PDF introuvable pour ce certificat.")
    ctx.trace("pdf", [cert_id] if cert_id is not None else [], _client(request))
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="certificat-{cert_id}.pdf"',
            "Content-Security-Policy": "sandbox",
        },
    )


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "bad_json", "Corps JSON invalide.")
    if not isinstance(body, dict):
        return error(400, "bad_json", "Le corps doit être un objet JSON.")
    return body


async def print_certificate(request: web.Request) -> web.Response:
    from helper.service import printguard, printing

    ctx = request.app[CTX]
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    cert_id = _cert_id(request)
    data = await ctx.read(lambda s: s.pdf(cert_id)) if cert_id is not None else None
    if data is None or cert_id is None:
        return error(404, "not_found", NOT_FOUND)
    current = await ctx.read(lambda s: s.get(cert_id))
    allowed, confirmed = printguard.check(current or {}, body)
    if not allowed:
        return error(409, "confirmation_required", printguard.MESSAGE)
    printer = str(body.get("printer") or ctx.settings.printer or "")
    loop = asyncio.get_running_loop()
    try:
        job, used = await loop.run_in_executor(
            ctx.writer, lambda: _print(printing, data, printer, cert_id)
        )
    except printing.PrintError as exc:
        status = 503 if isinstance(exc, printing.NoPrinterError) else 502
        return error(status, "no_printer" if status == 503 else "print_failed", exc.message)
    cert = await ctx.write(lambda s: s.mark_printed(cert_id))
    ctx.trace("print", [cert_id], _client(request), f"imprimante={used}" + (f" {confirmed}" if confirmed else ""))
    assert cert is not None
    return web.json_response({"certificate": _with_site(ctx.settings, cert), "job": job, "printer": used})


def _print(printing: Any, data: bytes, printer: str, cert_id: int) -> tuple[str, str]:
    used = printing.select_printer(printer)
    job = printing.print_pdf(data, printer=used, title=f"certificat-{cert_id}")
    return job, used


async def mark_delivered(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    initials = body.get("initials")
    if set(body) - {"initials"}:
        return error(400, "bad_parameter", "Champ inconnu dans la requête.")
    if initials is not None and (not isinstance(initials, str) or len(initials) > 12):
        return error(400, "bad_initials", "Initiales invalides (12 caractères au plus).")
    who = (initials or "").strip() or None
    return await _certificate_answer(request, lambda s, i: s.mark_delivered(i, who), "delivered", write=True)


async def undo_delivered(request: web.Request) -> web.Response:
    return await _certificate_answer(request, lambda s, i: s.undo_delivered(i), "undelivered", write=True)


async def ingest_message(request: web.Request) -> web.Response:
    from helper.index.ingest import ingest_message as ingest

    ctx = request.app[CTX]
    if request.content_length is not None and request.content_length > MAX_MESSAGE_BYTES:
        return error(413, "too_large", "Message trop volumineux (50 Mo au plus).")
    raw = await request.read()
    if not raw.strip():
        return error(400, "empty", "Message vide.")
    outcomes = await ctx.write(lambda s: ingest(s, raw, ctx.settings.trust(), "api"))
    results = [
        {"status": o.status, "certificate_id": o.certificate_id, "reason": o.reason, "detail": o.detail}
        for o in outcomes
    ]
    ids = [o.certificate_id for o in outcomes if o.certificate_id is not None]
    ctx.trace("ingest", ids, _client(request), ",".join(o.status for o in outcomes))
    return web.json_response({"results": results})


async def status(request: web.Request) -> web.Response:
    from helper.service import printing

    ctx = request.app[CTX]

    def collect(store: Store) -> dict[str, Any]:
        counts = store.counts()
        counts["to_deliver"] = store.db.execute(
            "SELECT count(*) FROM certificates WHERE delivered_at IS NULL"
        ).fetchone()[0]
        return {"counts": counts, "quarantine": store.quarantined(), "last_ingest": store.meta("last_ingest")}

    data = await ctx.read(collect)
    watcher = ctx.watcher
    loop = asyncio.get_running_loop()
    printer = await loop.run_in_executor(ctx.readers, lambda: printing.describe(ctx.settings.printer))
    last = (watcher.last_ingest() if watcher else None) or data["last_ingest"]
    return web.json_response(
        {
            "version": __version__,
            "counts": data["counts"],
            "watched": watcher.folders() if watcher else [],
            "quarantine": data["quarantine"],
            "last_ingest": last,
            "printer": printer,
            "retention_days": ctx.settings.retention_days,
            "sites": ctx.settings.sites,
        }
    )


def openapi_document() -> dict[str, Any]:
    return json.loads(resources.files("helper").joinpath("openapi.json").read_text(encoding="utf-8"))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# --- application ---------------------------------------------------------------------------------------------

def make_app(settings: Settings, token: Callable[[], str], *, audit: Audit | None = None, watcher: Any = None) -> web.Application:
    """The API application. ``token`` is read at each request so that a rotation applies at once."""
    app = web.Application(middlewares=[security], client_max_size=MAX_MESSAGE_BYTES + 1024)
    app[CTX] = Context(settings=settings, token=token, audit=audit or Audit(settings.data_dir), watcher=watcher)
    app.router.add_get("/api/v1/health", health, allow_head=False)
    app.router.add_get("/api/v1/certificates", search, allow_head=False)
    app.router.add_get("/api/v1/certificates/{id}", get_certificate, allow_head=False)
    app.router.add_get("/api/v1/certificates/{id}/pdf", get_pdf, allow_head=False)
    app.router.add_post("/api/v1/certificates/{id}/print", print_certificate)
    app.router.add_post("/api/v1/certificates/{id}/delivered", mark_delivered)
    app.router.add_delete("/api/v1/certificates/{id}/delivered", undo_delivered)
    app.router.add_post("/api/v1/messages", ingest_message)
    app.router.add_get("/api/v1/status", status, allow_head=False)
    app.router.add_get("/api/v1/openapi.json", openapi, allow_head=False)
    app.router.add_route("OPTIONS", "/api/v1/{tail:.*}", _preflight)
    app.on_cleanup.append(_cleanup)
    return app


async def _preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _cleanup(app: web.Application) -> None:
    ctx = app[CTX]
    ctx.close()
    ctx.audit.close()


def purge_due(store: Store, audit: Audit, retention_days: int, origin: str = "service") -> list[int]:
    """Remove certificates past the retention period and record the purge (ids only)."""
    limit = (dt.date.today() - dt.timedelta(days=retention_days)).isoformat()
    ids = store.purge(limit)
    store.sweep_orphan_pdfs()
    audit.record("purge", ids, origin, f"avant={limit} nombre={len(ids)}")
    return ids


def data_dir_of(app: web.Application) -> Path:
    return app[CTX].settings.data_dir
