"""Request parameters and bodies, checked exactly as ``helper/openapi.json`` says.

- a certificate id is 1 to 2^63-1 written in ASCII digits; anything else names no certificate (404);
- ``site`` is a FINESS: 9 characters, two digits or ``2A``/``2B`` then seven digits (400 otherwise);
- ``limit`` is an integer from 1 to 500, ``status`` is ``all`` or ``to_deliver``, ``q`` at most 200
  characters (400 otherwise);
- a JSON body is at most 64 KB, refused (413) from its Content-Length before it is read, or while
  reading a chunked one; it is UTF-8, at most 16 levels deep, integers of at most 18 digits, no
  NaN/Infinity, and an object (400 otherwise). Nothing here can raise past the caller.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from helper.service.api.errors import error, too_large

ID_MAX = 2**63 - 1
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
MAX_INT_DIGITS = 18
MAX_QUERY = 200
MAX_LIMIT = 500

_ID = re.compile(r"[0-9]{1,19}")
_FINESS = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{7}")
_LIMIT = re.compile(r"[0-9]{1,4}")


class BadParameter(Exception):
    """A parameter outside the contract; ``response`` is the French answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def text_field(value: object, max_length: int, *, empty: bool = True) -> bool:
    """A JSON string field as the contract says: no control character, valid Unicode, length bounds."""
    if not isinstance(value, str) or len(value) > max_length or (not empty and not value.strip()):
        return False
    if _CONTROL.search(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from "\ud800"
        return False
    return True


def cert_id(text: str) -> int | None:
    """The certificate id in a path, or None when it cannot name one."""
    if not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= ID_MAX else None


def site(text: str | None) -> str | None:
    if text is None:
        return None
    value = text.upper()
    if not _FINESS.fullmatch(value):
        raise BadParameter(error(400, "bad_site", "« site » doit être un FINESS de 9 caractères (chiffres, ou 2A/2B)."))
    return value


def limit(text: str | None, default: int = 20) -> int:
    if text is None:
        return default
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParameter(error(400, "bad_limit", f"« limit » doit être un nombre entier de 1 à {MAX_LIMIT}."))
    return int(text)


def query(text: str | None) -> str:
    value = text or ""
    if len(value) > MAX_QUERY:
        raise BadParameter(error(400, "bad_parameter", f"Recherche trop longue ({MAX_QUERY} caractères au plus)."))
    return value


def status(text: str | None) -> str:
    value = "all" if text is None else text
    if value not in ("all", "to_deliver"):
        raise BadParameter(error(400, "bad_parameter", "« status » doit valoir « all » ou « to_deliver »."))
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body), read within the limits above."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise BadParameter(too_large("64 Ko"))
    data = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise BadParameter(too_large("64 Ko"))
    if not data.strip():
        return {}
    try:
        body = parse_json(bytes(data))
    except ValueError as exc:
        raise BadParameter(error(400, "bad_json", "Corps JSON invalide.")) from exc
    if not isinstance(body, dict):
        raise BadParameter(error(400, "bad_json", "Le corps doit être un objet JSON."))
    return body


def parse_json(data: bytes) -> Any:
    """``json.loads`` with bounded depth and integer size; raises ValueError for anything else."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if _depth(text) > MAX_JSON_DEPTH:
        raise ValueError("too deep")
    return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _depth(text: str) -> int:
    """Deepest nesting of arrays and objects, outside strings (one linear pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest
