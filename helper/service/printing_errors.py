"""The errors of printing, shared by the CUPS and Windows back ends.

1. ``PrintError.message`` is French and can be shown to the secretary as is;
2. ``NoPrinterError`` (a subclass) means there is nothing to print on: the API answers 503 with it;
3. ``.detail`` holds the technical detail, for the logs (English, no patient data).
"""

from __future__ import annotations

_CUPS_HELP = "Contactez le service informatique."


class PrintError(Exception):
    """Printing failed; ``message`` is French and safe to show to a secretary."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NoPrinterError(PrintError):
    """No printer to print on (not installed, not running, unknown, refusing jobs, no default)."""
