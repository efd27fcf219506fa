"""Printing a certificate PDF on the lab's printer, without a dialog and without a temporary file.

Linux and macOS: CUPS, through its command-line clients
    ``lpstat -r -d -a -p`` tells in one call whether the scheduler answers, which queue is the
    default (``lpoptions -d`` of the user, ``$LPDEST``/``$PRINTER``, else the server default) and which
    queues exist, accept jobs and are enabled. ``lp -d QUEUE -t TITLE -`` receives the PDF on its
    standard input (``document-format=application/pdf``): no file with a patient name ever touches the
    disk on our side. The process environment is passed on, so ``CUPS_SERVER`` and friends apply.
    Every call has a timeout (``TIMEOUT`` seconds). CUPS keeps its own copy of the job in
    ``/var/spool/cups`` (root only) for ``PreserveJobFiles`` (a day by default).

Windows: GDI, with only what the NSIS and MSI installers ship in their embedded Python (the win_amd64
``pypdfium2`` and ``pywin32`` wheels pinned in uv.lock; pywin32.pth puts win32print/win32gui on the path)
    pypdfium2 renders each page in memory (at most ``WINDOWS_MAX_DPI``), ``win32gui.CreateDC`` opens a
    device context on the printer (not win32ui, which needs MFC), ``win32print.StartDoc`` starts the job (its id is returned) and
    ``StretchDIBits`` draws each page at its true size relative to the physical sheet. The printer is
    the one named in the settings, else the Windows default printer of the user running the helper.

Job titles appear in ``lpstat``, in the CUPS logs and in the Windows queue window: they must never
carry patient data. Callers pass ``certificat-<id>``; anything but ``[A-Za-z0-9._-]`` is refused.

Errors: ``PrintError.message`` is French and can be shown to the secretary as is;
``NoPrinterError`` (a subclass) means that there is nothing to print on (print system missing or
stopped, printer unknown or refusing jobs, no default printer): the API answers 503 with it. The
technical detail, if any, is in ``.detail`` (for the logs, English, no patient data).

This module chooses the printer and checks the job; the back ends are ``printing_cups`` and
``printing_windows``, the errors ``printing_errors``.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from helper.service.printing_cups import (  # noqa: F401 - TIMEOUT re-exported
    TIMEOUT,
    _cups_print,
    _cups_state,
    _Queue,
)
from helper.service.printing_errors import _CUPS_HELP, NoPrinterError, PrintError
from helper.service.printing_windows import (  # noqa: F401 - WINDOWS_MAX_DPI re-exported
    WINDOWS_MAX_DPI,
    _win_default,
    _win_print,
    _win_printers,
)

__all__ = ["NoPrinterError", "PrintError", "default_printer", "describe", "print_pdf", "printers", "select_printer"]

log = logging.getLogger(__name__)

_TITLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _system() -> str:
    return "windows" if sys.platform == "win32" else "cups"


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------
def default_printer() -> str | None:
    """The system default printer, or None when there is none.

    Raises NoPrinterError when the print system itself is missing or does not answer.
    """
    if _system() == "windows":
        return _win_default()
    return _cups_state().default


def printers() -> list[str]:
    """The printers (CUPS queues or classes, Windows printers) one can print on, sorted.

    Raises NoPrinterError when the print system itself is missing or does not answer.
    """
    if _system() == "windows":
        return _win_printers()
    return sorted(_cups_state().queues)


def select_printer(preferred: str = "") -> str:
    """The printer a job goes to: ``preferred`` when given (it must exist), else the system default.

    A configured printer that does not exist is an error naming it, never a silent fallback to
    another printer (which might be in another room). Raises NoPrinterError.
    """
    return _select(preferred)[0]


def _select(preferred: str) -> tuple[str, _Queue | None]:
    preferred = preferred.strip()
    if _system() == "windows":
        names = _win_printers()
        name = _choose(preferred, None if preferred else _win_default(), names)
        return name, None
    state = _cups_state()
    name = _choose(preferred, None if preferred else state.default, list(state.queues))
    queue = state.queues[name]
    if not queue.accepting:
        reason = f" ({queue.reason})" if queue.reason else ""
        raise NoPrinterError(
            f"L'imprimante « {name} » refuse les impressions pour le moment. {_CUPS_HELP}",
            f"{name} not accepting jobs{reason}",
        )
    return name, queue


def describe(preferred: str = "") -> dict[str, Any]:
    """The printer in force, for the status endpoint; never raises.

    ``{"available": bool, "name": str | None, "system": "cups" | "windows", "message": str}``
    """
    system = _system()
    try:
        name, queue = _select(preferred)
    except PrintError as exc:
        return {"available": False, "name": preferred.strip() or None, "system": system, "message": exc.message}
    except Exception as exc:  # a status endpoint must answer whatever happens
        log.exception("printer status failed")
        return {
            "available": False, "name": preferred.strip() or None, "system": system,
            "message": f"État de l'imprimante inconnu ({type(exc).__name__}). {_CUPS_HELP}",
        }
    how = "imprimante choisie dans la configuration" if preferred.strip() else "imprimante par défaut du système"
    message = f"Impression sur « {name} » ({how})."
    if queue is not None and not queue.enabled:
        message += " Elle est en pause : les certificats seront imprimés quand elle sera réactivée."
    return {"available": True, "name": name, "system": system, "message": message}


def print_pdf(data: bytes, *, printer: str = "", title: str = "certificat") -> str:
    """Send ``data`` (a PDF) to ``printer`` (empty: the system default); returns the spooler job id.

    The job is queued when this returns, not necessarily printed. ``title`` must not contain patient
    data (``certificat-<id>``). Raises NoPrinterError or PrintError (French ``message``).
    """
    if not _TITLE.fullmatch(title):
        raise ValueError(f"job title must match {_TITLE.pattern} (never patient data): {title!r}")
    if not isinstance(data, bytes | bytearray | memoryview) or b"%PDF-" not in bytes(data[:1024]):
        raise PrintError("Le document à imprimer n'est pas un PDF.", "no %PDF- header in the first 1024 bytes")
    name = select_printer(printer)
    if _system() == "windows":
        return _win_print(bytes(data), name, title)
    return _cups_print(bytes(data), name, title)


# ----------------------------------------------------------------------------------------------------------------
# Shared
# ----------------------------------------------------------------------------------------------------------------
def _choose(preferred: str, default: str | None, names: list[str]) -> str:
    if preferred:
        name = preferred
        if name not in names:
            raise NoPrinterError(
                f"L'imprimante « {name} » indiquée dans la configuration (réglage « printer ») n'existe pas "
                f"sur ce poste. {_available(names)} Corrigez le réglage ou videz-le pour utiliser "
                f"l'imprimante par défaut.",
                f"unknown printer {name!r}",
            )
    elif default:
        name = default
        if name not in names:
            raise NoPrinterError(
                f"L'imprimante par défaut « {name} » n'existe plus sur ce poste. {_available(names)} "
                f"Choisissez une autre imprimante par défaut ou indiquez-en une dans la configuration "
                f"(réglage « printer »).",
                f"default printer {name!r} not found",
            )
    elif names:
        raise NoPrinterError(
            f"Aucune imprimante par défaut n'est définie sur ce poste. {_available(names)} Définissez une "
            f"imprimante par défaut ou indiquez-en une dans la configuration (réglage « printer »).",
            "no default printer",
        )
    else:
        raise NoPrinterError(f"Aucune imprimante n'est installée sur ce poste. {_CUPS_HELP}", "no printer")
    return name


def _available(names: list[str]) -> str:
    if not names:
        return "Aucune imprimante n'est installée."
    shown = ", ".join(f"« {n} »" for n in sorted(names)[:10])
    more = f" et {len(names) - 10} autre(s)" if len(names) > 10 else ""
    return f"Imprimantes disponibles : {shown}{more}."


# ----------------------------------------------------------------------------------------------------------------
