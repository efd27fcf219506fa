"""``POST /api/v1/messages``: a raw message pushed by an extension, indexed as a file would be.

What happens, step by step:
1. a Content-Length over 50 MB is refused (413) before anything is read;
2. the body is streamed, 256 KB at a time, into a temporary file (0600) in the data folder's
   ``envois/`` (0700); past 50 MB the upload stops with 413 and the file is deleted: the service
   never holds an upload in memory while it arrives, however many arrive at once;
3. an empty (or blank) body is 400;
4. the writer thread (one message at a time) reads the file and ingests it: certificate, duplicate,
   ignored, or quarantined with its reason; the answer comes after the transaction committed, so a
   2xx means the message is in the index;
5. the temporary file is deleted whatever happened; files left by a crash are deleted at start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from aiohttp import web

from helper.index.store import secure_dir
from helper.service.api.context import CTX, client
from helper.service.api.errors import error

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
CHUNK = 256 * 1024
SPOOL = "envois"


def _too_large() -> web.Response:
    return error(413, "too_large", "Message trop volumineux (50 Mo au plus).")


def spool_dir(data_dir: Path) -> Path:
    return secure_dir(data_dir / SPOOL)


def sweep_spool(data_dir: Path) -> int:
    """Delete uploads a crash left behind; returns how many."""
    folder = data_dir / SPOOL
    removed = 0
    if folder.is_dir():
        for leftover in folder.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
    return removed


async def ingest_message(request: web.Request) -> web.Response:
    from helper.index.ingest import ingest_message as ingest

    ctx = request.app[CTX]
    if request.content_length is not None and request.content_length > MAX_MESSAGE_BYTES:
        return _too_large()
    fd, name = tempfile.mkstemp(prefix="envoi-", suffix=".eml", dir=spool_dir(ctx.settings.data_dir))
    path = Path(name)
    try:
        size = 0
        blank = True
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > MAX_MESSAGE_BYTES:
                    return _too_large()
                blank = blank and not chunk.strip()
                fh.write(chunk)
        if blank:
            return error(400, "empty", "Message vide.")
        settings = ctx.settings
        outcomes = await ctx.write(lambda s: ingest(
            s, path.read_bytes(), settings.trust(), "api",
            retention_days=settings.retention_days, quarantine_max_mb=settings.quarantine_max_mb,
        ))
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    results = [
        {"status": o.status, "certificate_id": o.certificate_id, "reason": o.reason, "detail": o.detail}
        for o in outcomes
    ]
    ids = [o.certificate_id for o in outcomes if o.certificate_id is not None]
    ctx.trace("ingest", ids, client(request), ",".join(o.status for o in outcomes))
    return web.json_response({"results": results})
