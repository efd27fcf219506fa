"""Read the text of a certificate PDF, bounded in time and memory.

pypdf has had many denial-of-service fixes; a hostile or broken PDF must not hang or exhaust
the helper. Extraction runs in a short-lived child process with an address-space limit
(POSIX) and a wall-clock timeout; a PDF that exceeds them is kept but not read.

Run as ``python -m helper.parse.pdftext`` with the PDF on standard input: prints the text.
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
    text: str
    created: str | None  # the PDF's /CreationDate, ISO 8601 local time, when it has one


def extract_text(data: bytes, *, timeout: float = TIMEOUT_SECONDS, memory: int = MEMORY_BYTES) -> str | None:
    """Text of the first pages of ``data``, or None if it cannot be read within the bounds."""
    info = extract(data, timeout=timeout, memory=memory)
    return info.text if info else None


def extract(data: bytes, *, timeout: float = TIMEOUT_SECONDS, memory: int = MEMORY_BYTES) -> PdfInfo | None:
    """Text and creation date of ``data``, or None if it cannot be read within the bounds."""
    if len(data) > MAX_PDF_BYTES:
        return None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "helper.parse.pdftext", str(memory)],
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
        out = json.loads(proc.stdout.decode("utf-8", errors="replace"))
        return PdfInfo(text=str(out["text"]), created=out.get("created"))
    except (ValueError, KeyError, TypeError):
        return None


def _child(memory: int) -> int:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):  # Windows: the timeout alone bounds us
        pass
    import io

    from pypdf import PdfReader

    data = sys.stdin.buffer.read()
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        texts = []
        for page in reader.pages[:MAX_PAGES]:
            texts.append(page.extract_text() or "")
    except Exception:  # noqa: BLE001 - any pypdf failure means "unreadable"
        return 1
    created = None
    try:
        when = reader.metadata.creation_date if reader.metadata else None
        if when is not None:
            created = when.replace(tzinfo=None).isoformat(timespec="seconds")  # wall-clock time, as SI-DEP wrote it
    except Exception:  # noqa: BLE001 - a bad date is just no date
        created = None
    sys.stdout.write(json.dumps({"text": "\n".join(texts), "created": created}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_BYTES))
