"""Printing through GDI on Windows, with only what the installers ship (pypdfium2, pywin32).

1. ``win32print`` lists the printers (local and connections) and the user's default one;
2. pypdfium2 renders each page of the PDF in memory (at most ``WINDOWS_MAX_DPI``);
3. ``win32gui.CreateDC`` opens a device context on the printer (not win32ui, which needs MFC),
   ``StartDoc`` starts the job (its id is returned) and ``StretchDIBits`` draws each page at its
   true size relative to the physical sheet;
4. a failure aborts the job and frees the device context; it becomes a French ``PrintError``.
"""

from __future__ import annotations

import logging
from typing import Any

from helper.service.printing_errors import _CUPS_HELP, NoPrinterError, PrintError

log = logging.getLogger("helper.service.printing")

WINDOWS_MAX_DPI = 300  # rendering resolution cap on Windows (an A4 page at 300 dpi is about 35 MB in memory)


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
