"""Every answer the API gives carries the same safety headers; every error is French JSON.

``error`` builds ``{"error": code, "message": "..."}``: the code is for programs, the message is
shown to the secretary. Nothing from the request is ever echoed back. ``for_status`` gives the
answer for a status aiohttp itself decided (unknown route, wrong method, bad request line, header
too long, internal error), so these look like our own errors.
"""

from __future__ import annotations

from aiohttp import web

from helper import __version__

VERSION_HEADER = "X-Sidep-Helper"
DEMO_HEADER = "X-Sidep-Helper-Demo"  # on every answer of « serve --demo » (fictitious certificates)

SAFETY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: status → (code, French message) for errors not raised by one of our handlers.
GENERIC: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Requête invalide."),
    401: ("unauthorized", "Jeton absent ou invalide : vérifiez le jeton dans les réglages de l'extension."),
    403: ("forbidden", "Accès refusé."),
    404: ("not_found", "Adresse inconnue."),
    405: ("method_not_allowed", "Méthode non autorisée sur cette adresse."),
    408: ("timeout", "Requête trop lente : délai dépassé."),
    413: ("too_large", "Requête trop volumineuse."),
    414: ("uri_too_long", "Adresse trop longue."),
    415: ("unsupported_media_type", "Type de contenu non pris en charge."),
    431: ("headers_too_large", "En-têtes ou ligne de requête trop longs."),
    500: ("internal", "Erreur interne du service ; voir le journal."),
    503: ("unavailable", "Service momentanément indisponible."),
    504: ("timeout", "Le service a mis trop de temps à répondre."),
}


def secure(response: web.StreamResponse, *, demo: bool = False) -> web.StreamResponse:
    """Add the headers every response carries (``no-store``, ``nosniff``, the helper's version, and
    the demo mark in « serve --demo »)."""
    for key, value in SAFETY_HEADERS.items():
        response.headers[key] = value
    response.headers[VERSION_HEADER] = __version__
    if demo:
        response.headers[DEMO_HEADER] = "1"
    return response


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response({"error": code, "message": message}, status=status, headers=headers)
    secure(response)
    return response


def for_status(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """The French JSON error for a bare HTTP status (4xx, else 500)."""
    if status not in GENERIC:
        status = status if 400 <= status < 500 else 500
    code, message = GENERIC.get(status, GENERIC[400] if status < 500 else GENERIC[500])
    return error(status, code, message, headers)


def too_large(limit_text: str) -> web.Response:
    return error(413, "too_large", f"Corps de requête trop volumineux ({limit_text} au plus).")
