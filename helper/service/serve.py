"""``sidep-helper serve``: the API on the loopback, folder watching, daily purge, clean shutdown.

What happens, step by step:
1. the commented configuration file is written if missing; logging is set up so that nothing any
   library logs can carry a request line, a query, a header or the token (``logs``);
2. the port is bound on 127.0.0.1 and ::1 only (a clear French message and exit code 3 if taken);
3. the token, the audit trail and the index are created if missing; uploads a crash left in the
   spool are deleted when the application starts;
4. the watcher catches up with the watched folders, then follows them; the purge runs every day;
   when a site of the directory has an output folder, the dispatch (``dispatch``) runs every 10 s in
   its own thread and its own connection to the index;
5. the API is served (``api.server``: our own answers for errors aiohttp's parser raises) until
   SIGTERM/SIGINT, then the watcher lets an ingest in progress commit and everything closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
from pathlib import Path

from aiohttp import web

from helper import __version__
from helper.config import Settings, write_default
from helper.index.store import Store
from helper.service import logs
from helper.service.api import CTX, make_app, purge_due
from helper.service.api.server import run
from helper.service.audit import Audit
from helper.service.token import read_or_create, token_path

log = logging.getLogger("sidep_helper")
PURGE_EVERY_SECONDS = 24 * 3600
DISPATCH_EVERY_SECONDS = 10  # a pass costs one query when nothing is new


class PortBusy(Exception):
    pass


def bind_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1 and, where the system has it, ::1. Never another address."""
    sockets: list[socket.socket] = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if os.name == "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, getattr(errno, "WSAEADDRINUSE", -1)):
                for s in sockets:
                    s.close()
                raise PortBusy(port) from exc
            if family == socket.AF_INET:
                raise
            continue  # no IPv6 loopback here: 127.0.0.1 alone
        sockets.append(sock)
    return sockets


def port_busy_message(port: int, settings: Settings) -> str:
    return (
        f"Le port {port} est déjà utilisé par un autre programme (ou par un sidep-helper déjà lancé).\n"
        f"Pour utiliser un autre port : réglez « port = NNNNN » dans {settings.config_file}\n"
        f"ou lancez « sidep-helper serve --port NNNNN », puis indiquez la même adresse dans l'extension."
    )


def setup_logging(settings: Settings) -> Path:
    """Plain logs for IT, never patient data, a query string or a header (see ``logs``)."""
    return logs.setup_logging(settings.data_dir)


def serve(settings: Settings, *, watch_folders: list[Path], watch: bool = True) -> int:
    """Run the service until SIGTERM/SIGINT. Returns the process exit code."""
    created = False if settings.demo else write_default(settings.config_file)
    log_path = setup_logging(settings)
    try:
        sockets = bind_loopback(settings.port)
    except PortBusy:
        print(port_busy_message(settings.port, settings), file=sys.stderr)
        return 3
    token = read_or_create(settings.data_dir)
    audit = Audit(settings.data_dir)
    Store(settings.data_dir).close()  # create the index (schema, permissions) before anything reads it
    seeded = 0
    if settings.demo:
        from helper.service.demo import seed

        seeded = seed(settings.data_dir)

    watcher = None
    if watch:
        from helper.service.watch import Watcher

        watcher = Watcher(settings, watch_folders)

    def current_token() -> str:
        # Re-read on change so that « sidep-helper token --rotate » applies without a restart.
        return _TokenCache.get(settings.data_dir, token)

    app = make_app(settings, current_token, audit=audit, watcher=watcher)
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_stop_background)
    app["watcher"] = watcher

    addresses = ", ".join(f"http://{_fmt(s.getsockname())}" for s in sockets)
    log.info("sidep-helper %s en service sur %s (journal : %s)%s", __version__, addresses, log_path,
             " — MODE DÉMO" if settings.demo else "")
    print(welcome(settings, addresses, log_path, seeded), flush=True)
    for warning in settings.warnings:
        log.warning("%s", warning)
    if created:
        log.info("fichier de configuration créé avec les valeurs par défaut : %s", settings.config_file)
    run(app, sockets, shutdown_timeout=10)
    log.info("sidep-helper arrêté proprement")
    return 0


def welcome(settings: Settings, addresses: str, log_path: Path, seeded: int = 0) -> str:
    """What the person who started the service needs to know, in French, on standard output."""
    lines = [f"sidep-helper {__version__} en service sur {addresses.replace(', ', ' et ')} (Ctrl+C pour arrêter)."]
    if settings.demo:
        lines.append(
            f"MODE DÉMO : certificats fictifs ({seeded} ajoutés)" if seeded else "MODE DÉMO : certificats fictifs"
        )
        lines.append("  dans un dossier à part : vos données réelles ne sont ni lues ni modifiées.")
    lines.append(f"Données : {settings.data_dir}  (journal : {log_path})")
    if not settings.demo:
        lines.append(f"Configuration : {settings.config_file}  (« sidep-helper config » pour les réglages en vigueur)")
    lines.append(
        "Étape suivante : installez l'extension du webmail ou de Thunderbird (README, section « Extensions »).\n"
        "Elle s'appaire seule si l'hôte d'appairage est enregistré (fait par les installateurs ; depuis ce\n"
        "dossier, une fois : « python -m helper.service.nativehosts install --user ») ; sinon, collez dans\n"
        "ses réglages le jeton affiché par « sidep-helper token" + (" --demo" if settings.demo else "") + " »."
    )
    return "\n".join(lines)


def _fmt(name: tuple) -> str:  # type: ignore[type-arg]
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _TokenCache:
    """Token file re-read when its modification time changes."""

    _seen: tuple[float, str] | None = None

    @classmethod
    def get(cls, data_dir: Path, fallback: str) -> str:
        path = token_path(data_dir)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return fallback
        if cls._seen is None or cls._seen[0] != mtime:
            try:
                cls._seen = (mtime, path.read_text(encoding="ascii").strip())
            except OSError:
                return fallback
        return cls._seen[1]


async def _start_background(app: web.Application) -> None:
    watcher = app["watcher"]
    if watcher is not None:
        await asyncio.get_running_loop().run_in_executor(None, watcher.start)
    app["purge_task"] = asyncio.create_task(_purge_daily(app))
    if any(site.folder for site in app[CTX].settings.site_directory.values()):
        app["dispatch_task"] = asyncio.create_task(_dispatch_loop(app[CTX].settings))
    app["imap"] = None
    settings = app[CTX].settings
    if settings.imap_sources:  # [[sources.imap]] (issue 10)
        from helper.service.imapsync import ImapService

        app["imap"] = ImapService(settings)
        app["imap"].start()


async def _stop_background(app: web.Application) -> None:
    for name in ("purge_task", "dispatch_task"):
        task = app.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if app.get("imap") is not None:
        await asyncio.get_running_loop().run_in_executor(None, app["imap"].stop)
    watcher = app["watcher"]
    if watcher is not None:
        # Lets an ingest in progress commit its transaction before returning.
        await asyncio.get_running_loop().run_in_executor(None, watcher.stop)


async def _purge_daily(app: web.Application) -> None:
    ctx = app[CTX]
    while True:
        try:
            ids = await ctx.write(lambda s: purge_due(s, ctx.audit, ctx.settings.retention_days))
            if ids:
                log.info("purge : %d certificat(s) supprimé(s) (durée de conservation %d jours)",
                         len(ids), ctx.settings.retention_days)
        except Exception:  # noqa: BLE001 - a failed purge is logged and retried tomorrow
            log.exception("échec de la purge quotidienne")
        await asyncio.sleep(PURGE_EVERY_SECONDS)


def _dispatch_pass(settings: Settings) -> None:
    from helper.service import dispatch

    store = Store(settings.data_dir)
    try:
        report = dispatch.run_once(store, settings)
    finally:
        store.close()
    if report.done or report.unassigned or report.retry:
        log.info("répartition : %d copié(s), %d à affecter, %d à réessayer",
                 len(report.done), len(report.unassigned), len(report.retry))


async def _dispatch_loop(settings: Settings) -> None:
    while True:
        try:
            await asyncio.to_thread(_dispatch_pass, settings)
        except Exception:  # noqa: BLE001 - logged (no patient data in it) and retried at the next pass
            log.exception("échec de la répartition vers les sites")
        await asyncio.sleep(float(os.environ.get("SIDEP_HELPER_TEST_DISPATCH_EVERY") or DISPATCH_EVERY_SECONDS))
