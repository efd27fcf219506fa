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
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT = 15.0  # seconds, for every call to the spooler
WINDOWS_MAX_DPI = 300  # rendering resolution cap on Windows (an A4 page at 300 dpi is about 35 MB in memory)
_TITLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CUPS_HELP = "Contactez le service informatique."


class PrintError(Exception):
    """Printing failed; ``message`` is French and safe to show to a secretary."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NoPrinterError(PrintError):
    """No printer to print on (not installed, not running, unknown, refusing jobs, no default)."""


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
# CUPS (Linux, macOS)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class _Queue:
    accepting: bool = True
    enabled: bool = True
    reason: str = ""


@dataclass
class _CupsState:
    default: str | None = None
    queues: dict[str, _Queue] = field(default_factory=dict)


_NOT_INSTALLED = (
    "Le système d'impression CUPS n'est pas installé sur ce poste (commande « {tool} » introuvable). "
    + _CUPS_HELP
)
_NOT_RUNNING = (
    "Le service d'impression (CUPS) ne répond pas : il est arrêté ou injoignable. Redémarrez le poste ; "
    "si le problème persiste, contactez le service informatique."
)
_FALLBACK_BIN = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")  # when PATH is minimal (services)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in _FALLBACK_BIN:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise NoPrinterError(_NOT_INSTALLED.format(tool=name), f"{name} not found in PATH")


def _cups_env() -> dict[str, str]:
    # the process environment (CUPS_SERVER, LPDEST, PRINTER, HOME for lpoptions…) with stable English output
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _cups_run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [_tool(args[0]), *args[1:]]
    try:
        return subprocess.run(
            command, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True, env=_cups_env(), timeout=TIMEOUT, check=False,
        )
    except FileNotFoundError as exc:
        raise NoPrinterError(_NOT_INSTALLED.format(tool=args[0]), str(exc)) from exc
    except subprocess.TimeoutExpired as exc:
        if args[0] == "lp":
            raise PrintError(
                f"Le service d'impression n'a pas répondu à temps ({TIMEOUT:.0f} s). Vérifiez la file "
                f"d'impression avant de relancer, pour ne pas imprimer le certificat deux fois.",
                f"lp timed out after {TIMEOUT} s",
            ) from exc
        raise NoPrinterError(_NOT_RUNNING, f"{args[0]} timed out after {TIMEOUT} s") from exc
    except OSError as exc:
        raise NoPrinterError(_NOT_INSTALLED.format(tool=args[0]), str(exc)) from exc


_ACCEPTING = re.compile(r"^(\S+) (not )?accepting requests")
_PRINTER = re.compile(r"^printer (\S+) ")
_DEFAULT = re.compile(r"^system default destination: (\S+)")
_DEFAULT_MISSING = re.compile(r"names non-existent destination \"([^\"]*)\"")


def _cups_state() -> _CupsState:
    proc = _cups_run(["lpstat", "-r", "-d", "-a", "-p"])
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    first = out.splitlines()[0] if out else ""
    if first != "scheduler is running":
        raise NoPrinterError(_NOT_RUNNING, (first or err).strip())
    state = _CupsState()
    missing = _DEFAULT_MISSING.search(out) or _DEFAULT_MISSING.search(err)
    if missing:  # $PRINTER / $LPDEST / lpoptions name a destination that does not exist
        state.default = missing.group(1)
    last: _Queue | None = None
    for line in out.splitlines()[1:]:
        if line.startswith(("\t", " ")):
            if last is not None and not last.reason:
                last.reason = line.strip()
            continue
        last = None
        if match := _DEFAULT.match(line):
            state.default = match.group(1)
        elif match := _ACCEPTING.match(line):
            last = state.queues.setdefault(match.group(1), _Queue())
            last.accepting = not match.group(2)
        elif match := _PRINTER.match(line):
            last = state.queues.setdefault(match.group(1), _Queue())
            last.enabled = " disabled since " not in line
    return state


_REQUEST_ID = re.compile(r"request id is (\S+)")


def _cups_print(data: bytes, name: str, title: str) -> str:
    proc = _cups_run(
        ["lp", "-d", name, "-t", title, "-o", "document-format=application/pdf", "-"], stdin=data
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace").strip()
    match = _REQUEST_ID.search(out)
    if proc.returncode == 0 and match:
        log.info("print job %s queued on %s (%d bytes)", match.group(1), name, len(data))
        return match.group(1)
    detail = f"lp exited {proc.returncode}: {err or out.strip()}"
    lowered = err.lower()
    if "not accepting" in lowered:
        raise NoPrinterError(f"L'imprimante « {name} » refuse les impressions pour le moment. {_CUPS_HELP}", detail)
    if "does not exist" in lowered or "not found" in lowered:
        raise NoPrinterError(f"L'imprimante « {name} » n'existe plus sur ce poste. {_CUPS_HELP}", detail)
    if "scheduler" in lowered or "connect" in lowered:
        raise NoPrinterError(_NOT_RUNNING, detail)
    raise PrintError(f"L'impression sur « {name} » a échoué. {_CUPS_HELP}", detail)


# ----------------------------------------------------------------------------------------------------------------
# Windows (GDI)
# ----------------------------------------------------------------------------------------------------------------
_PRINTER_ENUM_LOCAL = 2
_PRINTER_ENUM_CONNECTIONS = 4
# GetDeviceCaps indexes
_LOGPIXELSX, _LOGPIXELSY = 88, 90
_PHYSICALWIDTH, _PHYSICALHEIGHT = 110, 111
_PHYSICALOFFSETX, _PHYSICALOFFSETY = 112, 113

_NO_WIN32 = (
    "Les composants d'impression de sidep-helper (pywin32, pypdfium2) sont absents : réinstallez "
    "sidep-helper. " + _CUPS_HELP
)


def _win_modules() -> tuple[Any, Any]:
    # win32gui, not win32ui: win32ui needs MFC (mfc140u.dll), which neither pywin32's wheel nor the
    # installers ship (it comes with the Visual C++ redistributable, absent from many PCs)
    try:
        import win32gui
        import win32print
    except ImportError as exc:
        raise NoPrinterError(_NO_WIN32, str(exc)) from exc
    return win32print, win32gui


def _win_printers() -> list[str]:
    win32print, _ = _win_modules()
    try:
        found = win32print.EnumPrinters(_PRINTER_ENUM_LOCAL | _PRINTER_ENUM_CONNECTIONS, None, 4)
    except Exception as exc:  # pywintypes.error: the spooler service is stopped
        raise NoPrinterError(
            "Le service d'impression de Windows (spouleur) ne répond pas. Redémarrez le poste. " + _CUPS_HELP,
            repr(exc),
        ) from exc
    return sorted({p["pPrinterName"] for p in found})


def _win_default() -> str | None:
    win32print, _ = _win_modules()
    try:
        return win32print.GetDefaultPrinter() or None
    except Exception:  # pywintypes.error when the user has no default printer
        return None


def _win_print(data: bytes, name: str, title: str) -> str:
    try:
        import pypdfium2
    except ImportError as exc:
        raise NoPrinterError(_NO_WIN32, str(exc)) from exc
    win32print, win32gui = _win_modules()
    try:
        pdf = pypdfium2.PdfDocument(data)
    except Exception as exc:
        raise PrintError("Le certificat est illisible : impossible de l'imprimer.", repr(exc)) from exc
    hdc = None
    started = False
    try:
        hdc = win32gui.CreateDC("WINSPOOL", name, None)

        def caps(index: int) -> int:
            return win32print.GetDeviceCaps(hdc, index)

        dpi_x, dpi_y = caps(_LOGPIXELSX), caps(_LOGPIXELSY)
        sheet_w, sheet_h = caps(_PHYSICALWIDTH), caps(_PHYSICALHEIGHT)
        off_x, off_y = caps(_PHYSICALOFFSETX), caps(_PHYSICALOFFSETY)
        job = win32print.StartDoc(hdc, (title, None, None, 0))
        started = True
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                width_pt, height_pt = page.get_size()
                # true size, shrunk only if the page is larger than the sheet; origin = sheet corner
                fit = min(1.0, sheet_w / (width_pt / 72 * dpi_x), sheet_h / (height_pt / 72 * dpi_y))
                dest_w = round(width_pt / 72 * dpi_x * fit)
                dest_h = round(height_pt / 72 * dpi_y * fit)
                scale = min(dpi_x, dpi_y, WINDOWS_MAX_DPI) / 72
                bitmap = page.render(scale=scale, prefer_bgrx=True, optimize_mode="print")
                try:
                    win32print.StartPage(hdc)
                    _win_blit(hdc, bitmap, -off_x, -off_y, dest_w, dest_h)
                    win32print.EndPage(hdc)
                finally:
                    bitmap.close()
            finally:
                page.close()
        win32print.EndDoc(hdc)
        started = False
        log.info("print job %s queued on %s (%d page(s))", job, name, len(pdf))
        return str(job)
    except PrintError:
        raise
    except Exception as exc:
        raise PrintError(f"L'impression sur « {name} » a échoué. {_CUPS_HELP}", repr(exc)) from exc
    finally:
        if started and hdc is not None:
            try:
                win32print.AbortDoc(hdc)
            except Exception:
                log.warning("AbortDoc failed", exc_info=True)
        if hdc is not None:
            try:
                win32gui.DeleteDC(hdc)
            except Exception:
                log.warning("DeleteDC failed", exc_info=True)
        pdf.close()


def _win_blit(hdc: int, bitmap: Any, x: int, y: int, width: int, height: int) -> None:
    """Draw a pypdfium2 BGRx bitmap on the printer DC with StretchDIBits (top-down 32-bit DIB)."""
    import ctypes
    from ctypes import wintypes

    class BITMAPINFOHEADER(ctypes.Structure):
        _fields_ = [
            ("biSize", wintypes.DWORD), ("biWidth", wintypes.LONG), ("biHeight", wintypes.LONG),
            ("biPlanes", wintypes.WORD), ("biBitCount", wintypes.WORD), ("biCompression", wintypes.DWORD),
            ("biSizeImage", wintypes.DWORD), ("biXPelsPerMeter", wintypes.LONG),
            ("biYPelsPerMeter", wintypes.LONG), ("biClrUsed", wintypes.DWORD), ("biClrImportant", wintypes.DWORD),
        ]

    header = BITMAPINFOHEADER()
    header.biSize = ctypes.sizeof(BITMAPINFOHEADER)
    header.biWidth = bitmap.stride // 4  # rows are stride bytes long; the extra pixels are not drawn
    header.biHeight = -bitmap.height  # negative: top-down rows, as pdfium renders them
    header.biPlanes = 1
    header.biBitCount = 32
    header.biCompression = 0  # BI_RGB
    gdi32 = ctypes.WinDLL("gdi32", use_last_error=True)
    gdi32.StretchDIBits.argtypes = [
        wintypes.HDC, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, wintypes.UINT, wintypes.DWORD,
    ]
    gdi32.StretchDIBits.restype = ctypes.c_int
    gdi32.SetStretchBltMode(hdc, 4)  # HALFTONE: good downscaling of text
    gdi32.SetBrushOrgEx(hdc, 0, 0, None)  # required after choosing HALFTONE
    lines = gdi32.StretchDIBits(
        hdc, x, y, width, height, 0, 0, bitmap.width, bitmap.height,
        ctypes.cast(bitmap.buffer, ctypes.c_void_p), ctypes.byref(header), 0, 0x00CC0020,  # DIB_RGB_COLORS, SRCCOPY
    )
    if lines == 0:
        raise OSError(ctypes.get_last_error(), "StretchDIBits failed")
