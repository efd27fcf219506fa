"""The checks every request passes before a handler runs, in this order:

1. ``Host`` must name the loopback on our port (DNS rebinding);
2. an ``Origin``, when present, must be a well-formed extension origin (``chrome-extension://`` and
   32 letters a-p, or ``moz-extension://`` and a lower-case UUID) that the settings allow; ``null``,
   web origins and anything else are refused (403);
3. the token never travels in the address: a query parameter named like a token, or whose value
   holds the token, is refused (400), and so is a path holding it;
4. preflights (OPTIONS) are answered only for known addresses; never ``Access-Control-Allow-Origin: *``;
5. an unknown address is 404, a known one with another method 405 (before the token check: the
   routes are public, in ``openapi.json``);
6. every route but ``/api/v1/health`` needs ``Authorization: Bearer <token>`` (constant time);
7. a POST that names a content type, even with no body, or that has a body, must be JSON (raw mail
   for ``/messages``), else 415: the types a web page may send without a preflight never pass;
8. the handler runs; a parameter outside the contract answers its 4xx, an aiohttp HTTP error its
   French JSON twin, anything else a 500 logged with the route template and no message.
Every answer then gets the safety headers, and the CORS headers when the origin was allowed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from helper.config import Settings
from helper.service.api.context import CTX, Context
from helper.service.api.errors import error, for_status, secure
from helper.service.api.params import BadParameter
from helper.service.token import matches

log = logging.getLogger("sidep_helper.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_PARAMS = frozenset({"token", "access_token", "auth", "authorization", "bearer", "key", "api_key"})
HEALTH = "/api/v1/health"
MESSAGES = "/api/v1/messages"

_CHROMIUM_ORIGIN = re.compile(r"chrome-extension://[a-p]{32}")
_MOZ_ORIGIN = re.compile(r"moz-extension://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


def well_formed_origin(origin: str) -> bool:
    """A Chromium extension origin (32 letters a-p) or a Firefox/Thunderbird one (a UUID)."""
    return bool(_CHROMIUM_ORIGIN.fullmatch(origin) or _MOZ_ORIGIN.fullmatch(origin))


def origin_allowed(origin: str, settings: Settings) -> bool:
    if not well_formed_origin(origin):
        return False
    if _MOZ_ORIGIN.fullmatch(origin):  # Firefox/Thunderbird: a random UUID per profile; the token protects these
        return True
    return origin in settings.allowed_origins or settings.allow_any_extension_origin


def route_template(request: web.BaseRequest) -> str:
    """The matched route's template (``/api/v1/certificates/{id}``), ``-`` when none matched.

    Logs name this, never the raw path, which may carry a token or a name typed in the wrong place."""
    try:
        resource = request.match_info.route.resource  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a request the parser refused has no match at all
        return "-"
    return resource.canonical if resource is not None else "-"


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    origins = request.headers.getall("Origin", [])
    origin = origins[0] if len(origins) == 1 else None
    response: web.StreamResponse
    if request.headers.get("Host", "") not in allowed_hosts(ctx.settings.port):
        response = error(403, "forbidden_host", "Hôte non autorisé : utilisez 127.0.0.1 ou localhost.")
    elif len(origins) > 1 or (origin is not None and not origin_allowed(origin, ctx.settings)):
        response = error(403, "forbidden_origin", "Origine non autorisée.")
    else:
        response = await _checked(request, handler, ctx)
        if origin is not None:
            response.headers.update(cors_headers(origin))
    return secure(response)


async def _checked(request: web.Request, handler: Handler, ctx: Context) -> web.StreamResponse:
    if _token_in_url(request, ctx.token()):
        return error(400, "token_in_url",
                     "Le jeton ne doit jamais figurer dans l'adresse : utilisez l'en-tête Authorization.")
    missing = request.match_info.http_exception
    if request.method == "OPTIONS":
        return web.Response(status=204) if missing is None or missing.status == 405 else for_status(404)
    if missing is not None:
        allow = {"Allow": missing.headers["Allow"]} if "Allow" in missing.headers else None
        return for_status(missing.status if missing.status in (404, 405) else 404, allow)
    template = route_template(request)
    if template != HEALTH and not _authorized(request, ctx.token()):
        return error(401, "unauthorized", "Jeton absent ou invalide : vérifiez le jeton dans les réglages de l'extension.",
                     {"WWW-Authenticate": 'Bearer realm="sidep-helper"'})
    if request.method == "POST":
        expected = "message/rfc822" if template == MESSAGES else "application/json"
        if ("Content-Type" in request.headers or request.body_exists) and request.content_type != expected:
            return error(415, "unsupported_media_type", f"Corps attendu au format {expected}.")
    try:
        return await handler(request)
    except BadParameter as bad:
        return bad.response
    except web.HTTPException as exc:
        return for_status(exc.status)
    except Exception as exc:  # noqa: BLE001 - never leak a trace to the client
        log.error("erreur interne sur %s %s (%s)", request.method, template, type(exc).__name__, exc_info=exc)
        return for_status(500)


def _authorized(request: web.Request, token: str) -> bool:
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return False
    scheme, _, presented = values[0].partition(" ")
    return scheme.lower() == "bearer" and bool(presented) and matches(token, presented.strip())


def _token_in_url(request: web.Request, token: str) -> bool:
    if token and (token in request.raw_path or token in request.path):
        return True
    for name, value in request.query.items():
        if name.lower() in TOKEN_PARAMS or (token and (token in value or token in name)):
            return True
    return False
