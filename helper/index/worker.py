"""The worker side of the ingest: one item of work in, its parsed outcomes out.

1. :func:`_init_worker` runs once in each worker process (or in the main process for an inline
   run): it sets the parse configuration, the content-addressed PDF store and the retention cutoff;
   in a pool worker (:func:`_init_pool_worker`), when barcodes are verified, it also lets the
   worker read certificates' barcodes itself, under an address-space limit
   (:func:`helper.parse.pdftext.read_codes_in_this_process`);
2. :func:`process_item` reads its item (a whole file, or one message cut from an mbox, at most
   ``MAX_READ`` bytes), parses it (a certificate PDF by its name and content, anything else as a
   message) and writes the certificates' PDFs into the store (not the expired ones), sending back
   only the outcomes, never the PDF bytes;
3. whatever goes wrong with one item becomes a quarantined outcome with its reason (unreadable,
   too large, malformed; ``too_large`` too when parsing it ran into the worker's memory limit: the
   memory is given back as the error goes up, and the worker goes on with the next item); a
   worker stopped over its time budget or dead gives :func:`_given_up`.

Functions handed to the worker pool stay module-level: spawned workers import them by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helper.index import lifecycle
from helper.index.store import BlobStore
from helper.parse.message import Outcome, ParseConfig, parse_message
from helper.parse.pdfcert import certificate_from_pdf
from helper.parse.trust import TrustPolicy
from helper.sources.files import MBOX, PDF, read_mbox_message

ERROR = "error"  # an item standing for a file that could not be read
MAX_READ = 50 * 1024 * 1024
#: Items carrying more bytes than this are only sent to an idle worker (see ``helper.index.pool``).
SMALL_ITEM_BYTES = 16 * 1024


@dataclass
class Item:
    """One unit of parsing work: a whole file, or one message cut from an mbox."""

    path: str
    kind: str
    item: str = ""  # "" for a whole file, "@offset" for an mbox message
    data: bytes | None = None  # error detail; workers read files (and mbox messages) themselves
    size: int = 0


@dataclass
class Result:
    item: Item
    outcomes: list[Outcome]



_worker_config: ParseConfig | None = None
_worker_blobs: BlobStore | None = None
_worker_expire_before: str | None = None


def _init_worker(blob_root: str, trusted: TrustPolicy, expire_before: str | None = None) -> None:
    global _worker_config, _worker_blobs, _worker_expire_before
    _worker_config = ParseConfig(trust=trusted)
    _worker_blobs = BlobStore(Path(blob_root))
    _worker_expire_before = expire_before


def _init_pool_worker(blob_root: str, trusted: TrustPolicy, expire_before: str | None = None,
                      memory_extra: int | None = None) -> None:
    """:func:`_init_worker` in a pool worker (step 1): a worker that verifies barcodes reads them
    itself, its address space bounded to ``memory_extra`` bytes past its size now (default
    :data:`helper.parse.pdftext.WORKER_EXTRA_BYTES`)."""
    _init_worker(blob_root, trusted, expire_before)
    if trusted.verify_barcodes:
        from helper.parse import pdftext

        pdftext.read_codes_in_this_process(pdftext.WORKER_EXTRA_BYTES if memory_extra is None else memory_extra)


def process_item(item: Item) -> Result:
    """Parse one item and store its PDFs. Runs in a worker process (or inline)."""
    assert _worker_config is not None and _worker_blobs is not None
    if item.kind == ERROR:
        detail = (item.data or b"").decode("utf-8", "replace")
        return Result(item, [Outcome("quarantined", reason="unreadable", detail=detail)])
    try:
        if item.kind == PDF and not _certificate_pdf_name(item.path):
            # Any other PDF (an invoice in Downloads) is not even read, however big.
            return Result(item, [Outcome("ignored")])
        data = item.data
        if data is None and item.kind == MBOX:
            data = read_mbox_message(item.path, int(item.item[1:]), int(item.item[1:]) + item.size)
        elif data is None:
            with open(item.path, "rb") as fh:
                # read() allocates all it is asked for first: ask only for the file's size
                data = fh.read(min(MAX_READ, os.fstat(fh.fileno()).st_size) + 1)
            if len(data) > MAX_READ:
                return Result(item, [Outcome("quarantined", reason="too_large", detail=f"fichier > {MAX_READ} octets")])
        if item.kind == PDF:
            outcomes = [_pdf_outcome(item.path, data, _worker_config.trust)]
        else:
            outcomes = parse_message(data, _worker_config)
    except OSError as exc:
        outcomes = [Outcome("quarantined", reason="unreadable", detail=f"{type(exc).__name__}: {exc.strerror or exc}")]
    except MemoryError:
        data = None  # give the memory back before anything else
        outcomes = [Outcome("quarantined", reason="too_large",
                            detail="message ou PDF trop gourmand en mémoire pour le processus d'analyse")]
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the run
        outcomes = [Outcome("quarantined", reason="malformed", detail=f"{type(exc).__name__}: {exc}")]
    for outcome in outcomes:
        cert = outcome.certificate
        if cert is not None and cert.pdf is not None and cert.pdf_sha256:
            if not lifecycle.is_expired(cert, _worker_expire_before):  # an expired one is not kept
                _worker_blobs.put(cert.pdf_sha256, cert.pdf)
            cert.pdf = None  # do not ship the bytes back to the main process
    item.data = None
    return Result(item, outcomes)


def _certificate_pdf_name(path: str) -> bool:
    from helper.parse import sidep

    return sidep.FILENAME_RE.match(os.path.basename(path)) is not None


def _pdf_outcome(path: str, data: bytes, policy: TrustPolicy) -> Outcome:
    from helper.parse.pdftext import extract

    name = os.path.basename(path)
    if not _certificate_pdf_name(path):
        return Outcome("ignored")
    verify = policy.verify_barcodes
    info = extract(data, barcodes=verify, trust_list=policy.barcode_trust_list) if data.startswith(b"%PDF-") else None
    return certificate_from_pdf(name, data, info.text if info else None, info.created if info else None,
                                policy=policy, barcodes=info.barcodes if info else None)



def _process_or_mark(item: Item) -> Result:
    return Result(item, []) if item.item == "end" else process_item(item)


def _small_item(item: Item) -> bool:
    return item.data is None or len(item.data) <= SMALL_ITEM_BYTES


def _given_up(item: Item, reason: str, detail: str) -> Result:
    """The result of a message whose worker was stopped (over budget) or died while parsing it."""
    item.data = None
    return Result(item, [Outcome("quarantined", reason=reason, detail=detail)])
