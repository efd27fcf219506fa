"""Read the text of a certificate PDF, bounded in time and memory.

pypdf has had many denial-of-service fixes; a hostile or broken PDF must not hang or exhaust
the helper. Extraction runs in a short-lived child process with an address-space limit
(POSIX) and a wall-clock timeout; a PDF that exceeds them is kept but not read.

With ``barcodes=True`` the PDF goes instead to a long-lived child with the same limits
(:mod:`helper.parse.pdfworker`), which also reads the Data Matrix and QR codes of the first
pages (:mod:`helper.parse.pdfcodes`: embedded images first, rendering only when needed) and
checks the 2D-DOC and DCC signatures against the trust list
(:func:`helper.parse.verify.read_barcodes`): a garbage or huge barcode costs at most the same
bounds, never the service.

Run as ``python -m helper.parse.pdftext MEMORY [TRUST_LIST_DIR]`` with the PDF on standard input:
prints JSON (text, creation date, and the barcodes when a trust-list argument is given, ``-`` for none).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

TIMEOUT_SECONDS = 10.0
MEMORY_BYTES = 512 * 1024 * 1024
MAX_PAGES = 4
MAX_PDF_BYTES = 20 * 1024 * 1024


@dataclass
class PdfInfo:
    text: str | None  # None when the text could not be read (the barcodes may still have been)
    created: str | None  # the PDF's /CreationDate, ISO 8601 local time, when it has one
    barcodes: list[dict] | None = None  # see helper.parse.verify.read_barcodes; None when not looked for


def extract_text(data: bytes, *, timeout: float = TIMEOUT_SECONDS, memory: int = MEMORY_BYTES) -> str | None:
    """Text of the first pages of ``data``, or None if it cannot be read within the bounds."""
    info = extract(data, timeout=timeout, memory=memory)
    return info.text if info else None


def extract(data: bytes, *, timeout: float = TIMEOUT_SECONDS, memory: int = MEMORY_BYTES,
            barcodes: bool = False, trust_list: str | None = None, text: bool = True) -> PdfInfo | None:
    """Text and creation date of ``data`` (and its checked barcodes with ``barcodes=True``, keys
    from the ``trust_list`` folder), or None if it cannot be read within the bounds."""
    if len(data) > MAX_PDF_BYTES:
        return None
    if barcodes:  # rendering needs pypdfium2 and zxing-cpp: a long-lived child saves their start-up
        from helper.parse.pdfworker import ask

        return _info(ask(data, trust_list or "-", text, timeout=timeout, memory=memory))
    args = [sys.executable, "-m", "helper.parse.pdftext", str(memory)]
    try:
        proc = subprocess.run(
            args,
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    if proc.returncode != 0:
        return None
    try:
        return _info(json.loads(proc.stdout.decode("utf-8", errors="replace")))
    except ValueError:
        return None


def _info(out: object) -> PdfInfo | None:
    if not isinstance(out, dict):
        return None
    try:
        text = out["text"]
        found = out.get("barcodes")
        return PdfInfo(text=None if text is None else str(text), created=out.get("created"),
                       barcodes=list(found) if isinstance(found, list) else None)
    except (ValueError, KeyError, TypeError):
        return None


def limit_memory(memory: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):  # Windows: the timeout alone bounds us
        pass


def _child(memory: int, trust_list: str | None = None, read_text: bool = True) -> int:
    limit_memory(memory)
    out = read_pdf(sys.stdin.buffer.read(), trust_list, read_text)
    if out is None:
        return 1
    sys.stdout.write(json.dumps(out))
    return 0


def read_pdf(data: bytes, trust_list: str | None, read_text: bool = True) -> dict | None:
    """What the child answers: ``text`` (None if unreadable), ``created``, and ``barcodes`` when
    ``trust_list`` is given (``-`` for an empty list); None when nothing at all could be read."""
    import io

    found = _barcodes(data, None if trust_list in (None, "-") else trust_list) if trust_list else None
    text: str | None = None
    reader = None
    try:
        if not read_text:
            raise LookupError("text not asked for")
        from pypdf import PdfReader  # only when the text is asked for: it is the child's largest import

        reader = PdfReader(io.BytesIO(data), strict=False)
        texts = []
        for page in reader.pages[:MAX_PAGES]:
            texts.append(page.extract_text() or "")
        text = "\n".join(texts)
    except Exception:  # noqa: BLE001 - any pypdf failure means "unreadable"
        if found is None:
            return None
    created = None
    try:
        when = reader.metadata.creation_date if reader is not None and reader.metadata else None
        if when is not None:
            created = when.replace(tzinfo=None).isoformat(timespec="seconds")  # wall-clock time, as SI-DEP wrote it
    except Exception:  # noqa: BLE001 - a bad date is just no date
        created = None
    return {"text": text, "created": created, "barcodes": found}


def _barcodes(data: bytes, trust_list: str | None) -> list[dict]:
    """Checked barcodes of the first pages (an unrenderable PDF simply has none)."""
    from helper.parse.pdfcodes import payloads
    from helper.parse.trustlist import TrustList
    from helper.parse.verify import read_barcodes

    return read_barcodes(payloads(data), TrustList.shared(trust_list))


if __name__ == "__main__":
    raise SystemExit(_child(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_BYTES,
                            sys.argv[2] if len(sys.argv) > 2 else None, "notext" not in sys.argv[3:]))
