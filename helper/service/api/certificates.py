"""Routes on certificates: search, one certificate, its PDF, print, delivered / not delivered.

Each handler checks its parameters (``params``), runs its database work on the reader pool or the
writer thread, records the action in the audit trail (ids only) and answers the certificate as the
contract describes it, with the configured site name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from helper.config import Settings
from helper.index import imapstate
from helper.index.store import Store
from helper.service.api import params, printguard
from helper.service.api.context import CTX, client
from helper.service.api.errors import error

NOT_FOUND = "Certificat introuvable (il a peut-être été purgé)."
MAX_PRINTER_NAME = 200


def _with_site(settings: Settings, cert: dict[str, Any]) -> dict[str, Any]:
    cert["site_name"] = settings.sites.get(cert.get("site_finess") or "")
    return cert


async def search(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    q = params.query(request.query.get("q"))
    site = params.site(request.query.get("site"))
    limit = params.limit(request.query.get("limit"))
    to_deliver = params.status(request.query.get("status")) == "to_deliver"

    def run(store: Store) -> dict[str, Any]:
        from helper.index.search import Searcher

        return Searcher(store.db).search(q, site=site, limit=limit, to_deliver=to_deliver)

    result = await ctx.read(run)
    for cert in result["results"]:
        _with_site(ctx.settings, cert)
    ctx.trace("search", [c["id"] for c in result["results"]], client(request), f"total={result['total']}")
    return web.json_response(result)


async def _certificate_answer(
    request: web.Request, run: Callable[[Store, int], dict[str, Any] | None], action: str, *, write: bool,
    detail: str = "",
) -> web.Response:
    """Run ``run(store, id)`` for the certificate named in the path, audit it, answer the certificate."""
    ctx = request.app[CTX]
    cert_id = params.cert_id(request.match_info["id"])
    if cert_id is None:
        return error(404, "not_found", NOT_FOUND)
    call = ctx.write if write else ctx.read
    cert = await call(lambda s: run(s, cert_id))
    if cert is None:
        return error(404, "not_found", NOT_FOUND)
    ctx.trace(action, [cert_id], client(request), detail)
    return web.json_response(_with_site(ctx.settings, cert))


async def get_certificate(request: web.Request) -> web.Response:
    return await _certificate_answer(request, lambda s, i: s.get(i), "view", write=False)


async def get_pdf(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cert_id = params.cert_id(request.match_info["id"])
    data = await ctx.read(lambda s: s.pdf(cert_id)) if cert_id is not None else None
    if data is None or cert_id is None:
        return error(404, "not_found", "PDF introuvable pour ce certificat.")
    ctx.trace("pdf", [cert_id], client(request))
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="certificat-{cert_id}.pdf"',
            "Content-Security-Policy": "sandbox",
        },
    )


def allowed_printers(settings: Settings) -> frozenset[str]:
    """The queues a request may name: the ``printers`` list and the configured ``printer``."""
    return frozenset(p for p in (*settings.printers, settings.printer) if p)


async def print_certificate(request: web.Request) -> web.Response:
    from helper.service import printing

    ctx = request.app[CTX]
    body = await params.json_object(request)
    if set(body) - {"printer", "confirm_unverified"}:
        return error(400, "bad_parameter",
                     "Champ inconnu dans la requête (seuls « printer » et « confirm_unverified » sont acceptés).")
    if not isinstance(body.get("confirm_unverified", False), bool):
        return error(400, "bad_parameter", "« confirm_unverified » doit valoir true ou false.")
    chosen = body.get("printer")
    if "printer" in body and not params.text_field(chosen, MAX_PRINTER_NAME, empty=False):
        return error(400, "bad_printer", "Nom d'imprimante invalide.")
    cert_id = params.cert_id(request.match_info["id"])
    data = await ctx.read(lambda s: s.pdf(cert_id)) if cert_id is not None else None
    if data is None or cert_id is None:
        return error(404, "not_found", NOT_FOUND)
    current = await ctx.read(lambda s: s.get(cert_id))
    allowed, confirmed = printguard.check(current or {}, body)
    if not allowed:
        return error(409, "confirmation_required", printguard.MESSAGE)
    loop = asyncio.get_running_loop()
    if chosen is not None and chosen.strip() not in allowed_printers(ctx.settings):
        default = await loop.run_in_executor(ctx.readers, _system_default, printing)
        if ctx.settings.printer or ctx.settings.printers or chosen.strip() != default:
            return error(403, "printer_not_allowed",
                         "Imprimante non autorisée : seules les imprimantes choisies par le service informatique "
                         "(réglage « printers ») peuvent être utilisées.")
    printer = (chosen or ctx.settings.printer or "").strip()
    try:
        job, used = await loop.run_in_executor(ctx.writer, lambda: _print(printing, data, printer, cert_id))
    except printing.PrintError as exc:
        status = 503 if isinstance(exc, printing.NoPrinterError) else 502
        return error(status, "no_printer" if status == 503 else "print_failed", exc.message)
    cert = await ctx.write(lambda s: _shared(s, cert_id, imapstate.PRINTED, True, s.mark_printed(cert_id)))
    if cert is None:  # purged between the PDF read and now
        return error(404, "not_found", NOT_FOUND)
    ctx.trace("print", [cert_id], client(request), f"imprimante={used}" + (f" {confirmed}" if confirmed else ""))
    return web.json_response({"certificate": _with_site(ctx.settings, cert), "job": job, "printer": used})


def _system_default(printing: Any) -> str | None:
    try:
        return printing.default_printer()
    except printing.PrintError:
        return None


def _print(printing: Any, data: bytes, printer: str, cert_id: int) -> tuple[str, str]:
    used = printing.select_printer(printer)
    job = printing.print_pdf(data, printer=used, title=f"certificat-{cert_id}")
    return job, used


async def mark_delivered(request: web.Request) -> web.Response:
    body = await params.json_object(request)
    if set(body) - {"initials"}:
        return error(400, "bad_parameter", "Champ inconnu dans la requête.")
    initials = body.get("initials")
    if initials is not None and not params.text_field(initials, 12):
        return error(400, "bad_initials", "Initiales invalides (12 caractères au plus).")
    who = (initials or "").strip() or None
    return await _certificate_answer(
        request, lambda s, i: _shared(s, i, imapstate.DELIVERED, True, s.mark_delivered(i, who)), "delivered", write=True,
        detail=f"initiales={who}" if who else "",  # the initials stay here, never on the mail server
    )


async def undo_delivered(request: web.Request) -> web.Response:
    return await _certificate_answer(
        request, lambda s, i: _shared(s, i, imapstate.DELIVERED, False, s.undo_delivered(i)), "undelivered", write=True
    )


def _shared(store: Store, cert_id: int, what: str, value: bool, cert: dict[str, Any] | None) -> dict[str, Any] | None:
    """After a print, hand-over or undo: owe the IMAP keyword write (no-op for certificates from files)."""
    if cert is not None:
        imapstate.queue_change(store, cert_id, what, value)
    return cert
