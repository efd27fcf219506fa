"""Logs for IT that never carry patient data, the token, a query string or a raw request.

What happens, step by step:
1. ``setup_logging`` gives the root logger two handlers, a rotating file in the data folder (0600)
   and stderr, both with one ``SafeFormatter``. Every logger ends there: ours (``sidep_helper.*``)
   and the libraries' (``aiohttp.*``, ``asyncio``, ``py.warnings``...). Uncaught exceptions in any
   thread and Python's own "--- Logging error ---" report go through it too, never straight to stderr.
2. A record from our own code is formatted as usual: our messages carry ids, counts, route
   templates (``/api/v1/certificates/{id}``), statuses and folder paths, never a query or a header.
3. A record from any other logger is reduced to its logger name and the fixed part of its template
   (cut before the first argument, quote or bracket): libraries put raw request lines, headers and
   exception messages quoting them in their arguments.
4. A traceback keeps its frames (file, line, function) and the exception type names, never the
   exception's message, which may quote the request or a patient's name.
5. Control characters (CR, LF, escape...) are escaped in the whole record, so nothing logged can
   forge a line.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from helper.index.store import secure_dir

OURS = "sidep_helper"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CUT = re.compile(r"""[%{}<>()\[\]'"`:=\r\n]""")


def escape(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (one log record, one line)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)


def _ours(name: str) -> bool:
    return name == OURS or name.startswith(OURS + ".")


def _fixed_part(msg: object) -> str:
    """The constant words of a library's message template, before anything it may have quoted."""
    if not isinstance(msg, str):
        return f"<{type(msg).__name__}>"
    cut = _CUT.search(msg)
    return (msg[: cut.start()] if cut else msg).strip()[:80]


class SafeFormatter(logging.Formatter):
    """Formats every record by the rules in the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        if _ours(record.name):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not print its arguments
                message = _fixed_part(record.msg)
        else:
            message = f"[{record.name}] {_fixed_part(record.msg)}"
        record.message = escape(message)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + self.formatException(record.exc_info)
        return text

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return format_exception_safely(ei[1], ei[2])


def format_exception_safely(exc: BaseException | None, tb: TracebackType | None) -> str:
    """Frames and exception types of ``exc`` and its causes; no exception message."""
    lines = ["Traceback (messages d'exception masqués) :"]
    seen: set[int] = set()
    chain: list[tuple[BaseException, TracebackType | None]] = []
    current: BaseException | None = exc
    current_tb = tb
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, current_tb))
        current = current.__cause__ or current.__context__
        current_tb = current.__traceback__ if current is not None else None
    for error, error_tb in reversed(chain):
        for frame in traceback.extract_tb(error_tb):
            lines.append(f"  {escape(frame.filename)}:{frame.lineno} in {escape(frame.name)}")
        kind = type(error)
        lines.append(f"{escape(kind.__module__)}.{escape(kind.__qualname__)}")
    return "\n".join(lines)


def setup_logging(data_dir: Path) -> Path:
    """Install the safe handlers (see the module docstring); returns the log file's path."""
    folder = secure_dir(data_dir / "logs")
    path = folder / "sidep-helper.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=5, encoding="utf-8")
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler, console]
    root.setLevel(logging.INFO)
    for name in (OURS, "aiohttp", "aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.client",
                 "aiohttp.internal", "aiohttp.websocket", "asyncio", "watchdog", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET if name == OURS else logging.WARNING)
    logging.getLogger(OURS).setLevel(logging.INFO)
    logging.captureWarnings(True)
    logging.raiseExceptions = False  # never "--- Logging error ---" with the record's arguments on stderr
    _route_uncaught_exceptions()
    if os.name == "posix" and path.exists():
        os.chmod(path, 0o600)
    return path


def _route_uncaught_exceptions() -> None:
    crash = logging.getLogger(OURS + ".crash")

    def on_main(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        crash.error("exception non rattrapée (%s)", kind.__name__, exc_info=(kind, exc, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        crash.error("exception non rattrapée dans un fil d'exécution (%s)", args.exc_type.__name__,
                    exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))

    sys.excepthook = on_main
    threading.excepthook = on_thread
