"""Read the text of a certificate PDF, bounded in time and memory.

pypdf has had many denial-of-service fixes; a hostile or broken PDF must not hang or exhaust
the helper. Extraction runs in a short-lived child process with an address-space limit
(POSIX) and a wall-clock timeout; a PDF that exceeds them is kept but not read.

With ``barcodes=True`` the Data Matrix and QR codes of the first pages are read too, and the
2D-DOC and DCC signatures checked against the trust list (:func:`helper.parse.verify.read_barcodes`).
Where, step by step (:func:`extract`):

1. In a parse-pool worker (:func:`read_codes_in_this_process`, called by the worker's initializer,
   :func:`helper.index.worker._init_pool_worker`), the fast path of :mod:`helper.parse.pdfcodes`
   runs in the worker itself: a bounded scan of the PDF's bytes for plain image streams, inflated
   to at most the image's own size, read by zxing on a bounded pixel buffer (no pdfium, no pypdf).
   When it found a 2D-DOC or a DCC, its signatures are checked there too, and that is the answer:
   no child, no pipe, no JSON, and the worker's caches stay warm. The worker is itself bounded:
   the pool gives each message a time budget (a worker over it is killed, the message
   quarantined ``too_slow``), a worker that dies has its message quarantined, and the worker has
   an address-space limit (:data:`WORKER_EXTRA_BYTES` above what it held when it started): an
   allocation past it raises ``MemoryError``, and the worker quarantines that message
   ``too_large`` and goes on (:func:`helper.index.worker.process_item`). Only where that limit can
   be set (Linux): elsewhere (Windows) the worker reads no code itself and step 2 does it all.
2. Otherwise (no code in a plain image: a code drawn as vector paths, an image the fast path does
   not take; or not in a pool worker: the service's own process, an inline run) the PDF goes to a
   long-lived child with the limits below (:mod:`helper.parse.pdfworker`, started only then),
   which reads the codes with pdfium (:mod:`helper.parse.pdfcodes`: embedded images first,
   rendering only when needed) and checks the signatures; a worker that already tried the fast
   path tells the child not to try it again. pdfium and pypdf only ever run in that child.

Either way a garbage or huge barcode costs at most these bounds, never the service.

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
#: How far a parse-pool worker's address space may grow past its size when it started (step 1):
#: far more than a 50 MB message's parse needs, far less than what would hurt the machine.
WORKER_EXTRA_BYTES = 768 * 1024 * 1024

_in_process = False  # step 1 allowed: this is a bounded parse-pool worker


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
    if barcodes:
        fast = _fast_barcodes(data, trust_list) if _in_process else None
        if fast is not None and not text:
            return PdfInfo(text=None, created=None, barcodes=fast)
        # rendering needs pypdfium2 and zxing-cpp: a long-lived child saves their start-up
        from helper.parse.pdfworker import ask

        info = _info(ask(data, trust_list or "-", text, timeout=timeout, memory=memory,
                         codes=fast is None, fast=not _in_process))
        if fast is not None:  # the child read the text only
            return PdfInfo(text=None, created=None, barcodes=fast) if info is None else \
                PdfInfo(text=info.text, created=info.created, barcodes=fast)
        return info
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


def read_codes_in_this_process(extra: int = WORKER_EXTRA_BYTES) -> bool:
    """Step 1 of the module docstring, for the rest of this process's life, where this parse-pool
    worker (time budget, crash quarantined) can also be bounded in memory: its address space to
    ``extra`` bytes past its present size (Linux, where that size can be read). Elsewhere (Windows,
    where there is no such limit) it does not read codes itself: every PDF goes to the reader child,
    as before. Returns whether step 1 is on.

    Only the soft limit is set (the hard one stays): the reader child this worker may still start
    sets its own, lower, limit at start-up, which it could not if the hard one were lower. Imports
    the fast path's libraries now, so that the first PDF does not pay for them."""
    global _in_process
    try:
        import resource
    except ImportError:
        return False
    if not _address_space():
        return False
    import zxingcpp  # noqa: F401

    from helper.parse.verify import _crypto

    _crypto()
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _address_space() + extra
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        return False
    _in_process = True
    return True


def _address_space() -> int:
    """This process's address-space size in bytes (``VmSize``; 0 where it cannot be read)."""
    return proc_status_bytes(b"VmSize")


def proc_status_bytes(field: bytes) -> int:
    """A size from this process's /proc/self/status (Linux), in bytes; 0 where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for row in status:
                if row.startswith(field + b":"):
                    return int(row.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _fast_barcodes(data: bytes, trust_list: str | None) -> list[dict] | None:
    """Step 1: the checked barcodes when the fast path found a 2D-DOC or DCC in a plain image, else
    None (the child then reads the PDF). A ``MemoryError`` (the worker's limit) goes up; any other
    failure also hands the PDF to the child, which gives what it always gave for such a PDF (an
    unreadable one: no barcodes), rather than quarantine the whole message here."""
    from helper.parse.pdfcodes import fast_payloads, signed
    from helper.parse.trustlist import TrustList
    from helper.parse.verify import read_barcodes

    try:
        found = fast_payloads(data)
        if not signed(found):
            return None
        return read_barcodes(found, TrustList.shared(None if trust_list in (None, "", "-") else trust_list))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a library failing on this PDF: the bounded child reads it
        return None


def _child(memory: int, trust_list: str | None = None, read_text: bool = True) -> int:
    limit_memory(memory)
    out = read_pdf(sys.stdin.buffer.read(), trust_list, read_text)
    if out is None:
        return 1
    sys.stdout.write(json.dumps(out))
    return 0


def read_pdf(data: bytes, trust_list: str | None, read_text: bool = True, fast: bool = True) -> dict | None:
    """What the child answers: ``text`` (None if unreadable), ``created``, and ``barcodes`` when
    ``trust_list`` is given (``-`` for an empty list; ``fast``: try the fast path first, unless the
    worker already did); None when nothing at all could be read."""
    import io

    found = _barcodes(data, None if trust_list in (None, "-") else trust_list, fast) if trust_list else None
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


def _barcodes(data: bytes, trust_list: str | None, fast: bool = True) -> list[dict]:
    """Checked barcodes of the first pages (an unrenderable PDF simply has none)."""
    from helper.parse.pdfcodes import payloads
    from helper.parse.trustlist import TrustList
    from helper.parse.verify import read_barcodes

    return read_barcodes(payloads(data, fast=fast), TrustList.shared(trust_list))


if __name__ == "__main__":
    raise SystemExit(_child(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_BYTES,
                            sys.argv[2] if len(sys.argv) > 2 else None, "notext" not in sys.argv[3:]))
