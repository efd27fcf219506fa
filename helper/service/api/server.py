"""The HTTP server around the API application, for errors aiohttp answers before our code runs.

aiohttp's parser refuses some requests before any middleware sees them (bad request line, bare LF,
header or line too long, too many headers) and its default answer is plain text that quotes the
request. ``SafeRequestHandler.handle_error`` replaces that answer, and the one for any exception
escaping the application, with our French JSON error and safety headers, echoing nothing; it logs
the exception's type only. ``RouteAccessLogger`` writes one access line per request with the method,
the route template (never the raw path or query), the status and the time. ``run`` serves the
application on already-bound sockets until SIGTERM/SIGINT, then shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from helper.service.api.context import CTX
from helper.service.api.errors import error, for_status, secure
from helper.service.api.guards import route_template

log = logging.getLogger("sidep_helper.http")
access = logging.getLogger("sidep_helper.access")

_METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})


class SafeRequestHandler(RequestHandler):  # type: ignore[misc]
    """aiohttp's connection handler with our own error answers (see the module docstring)."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "-"
        if status >= 500:
            log.error("erreur interne du serveur HTTP (%s)", kind, exc_info=exc)
        else:
            log.info("requête refusée par l'analyseur HTTP (%s)", kind)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        if isinstance(exc, LineTooLong) and _raised_in(exc, "url"):
            response = error(400, "uri_too_long", "Adresse trop longue.")
        elif isinstance(exc, LineTooLong) or (exc is not None and "Too many headers" in str(exc)):
            response = error(431, "headers_too_large", "En-têtes trop longs ou trop nombreux.")
        elif status == 400:
            response = error(400, "bad_request", "Requête HTTP mal formée.")
        else:
            response = for_status(status)
        if getattr(self._manager, "demo", False):
            secure(response, demo=True)
        response.force_close()
        return response


def _raised_in(exc: BaseException, word: str) -> bool:
    """Whether the parser raised ``exc`` in a callback whose name holds ``word`` (``cb_on_url``)."""
    tb = exc.__traceback__
    while tb is not None:
        if word in tb.tb_frame.f_code.co_name:
            return True
        tb = tb.tb_next
    return False


class _SafeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return SafeRequestHandler(self, loop=self._loop, **self._kwargs)


class SafeAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections use ``SafeRequestHandler``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _SafeServer
        ctx = self.app.get(CTX)
        server.demo = bool(ctx and ctx.settings.demo)  # type: ignore[attr-defined]
        return server


class RouteAccessLogger(AbstractAccessLogger):
    """``METHOD /route/{template} status time`` in our own logger; nothing else of the request."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(access, log_format)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        method = request.method if request.method in _METHODS else "?"
        access.info("%s %s %s %.1f ms", method, route_template(request), response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return access.isEnabledFor(logging.INFO)


def run(app: web.Application, sockets: list[socket.socket], *, shutdown_timeout: float = 10) -> None:
    """Serve ``app`` on ``sockets`` until SIGTERM or SIGINT (Ctrl+C), then clean up."""
    asyncio.run(_serve(app, sockets, shutdown_timeout))


async def _serve(app: web.Application, sockets: list[socket.socket], shutdown_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows: the plain signal module
            try:
                signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
            except ValueError:  # not the main thread: whoever started us stops us
                pass
    runner = SafeAppRunner(app, access_log_class=RouteAccessLogger, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        await stop.wait()
    finally:
        await runner.cleanup()


