"""Ingest of one message pushed by an extension or read from IMAP (``POST /messages``, IMAP sync).

1. a message over ``MAX_READ`` is quarantined as too large; any other is parsed within the
   parse-time budget (a hostile message is stopped, not waited for);
2. in one transaction, each outcome becomes: a tombstone for a certificate already past
   ``retention_days`` (``expired``), a stored certificate (``new`` or ``duplicate``; its PDF
   written before the commit, only when its row is kept), the raw message kept under
   ``quarantine/`` with its reason, or ``ignored``;
3. PDFs no longer used by any row are removed; the answers are :class:`MessageOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from helper.index import lifecycle, quarantine
from helper.index.budget import parse_within_budget
from helper.index.store import Store
from helper.index.worker import MAX_READ
from helper.parse.message import Certificate, Outcome
from helper.parse.trust import TrustPolicy


@dataclass
class MessageOutcome:
    """What became of one pushed message (API): the public answer of ``POST /messages``."""

    status: str  # new, duplicate, ignored, quarantined, expired
    certificate_id: int | None = None
    reason: str | None = None
    detail: str = ""


def ingest_message(
    store: Store,
    raw: bytes,
    trusted: TrustPolicy | frozenset[str],
    source: str = "api",
    *,
    retention_days: int | None = None,
    quarantine_max_mb: int = quarantine.DEFAULT_MAX_MB,
) -> list[MessageOutcome]:
    """Ingest one raw message pushed by an extension, as a file would be.

    A message that cannot be used is kept under ``quarantine/`` in the data directory (0600,
    named by its hash, the folder capped at ``quarantine_max_mb``) so that nothing is lost, and
    listed with its reason. A certificate already past ``retention_days`` is not stored
    (``expired``). A certificate's PDF is written only when its row is kept (not for a duplicate).
    """
    if len(raw) > MAX_READ:
        outcomes = [Outcome("quarantined", reason="too_large", detail=f"message > {MAX_READ} octets")]
    else:
        outcomes = parse_within_budget(raw, TrustPolicy.of(trusted))
    expire_before = lifecycle.cutoff(retention_days) if retention_days else None

    def add(cert: Certificate) -> tuple[str, int | None]:
        pdf, cert.pdf = cert.pdf, None
        status, cert_id = store.add(cert, source, None)
        if pdf is not None and cert.pdf_sha256 and store.db.execute(
            "SELECT 1 FROM certificates WHERE pdf_sha256 = ? LIMIT 1", (cert.pdf_sha256,)
        ).fetchone():
            store.blobs.put(cert.pdf_sha256, pdf)  # before the commit: a kill leaves an orphan, never a hole
        return status, cert_id

    with store.transaction():
        answers = record_outcomes(store, raw, outcomes, add, retention_days=retention_days,
                                  expire_before=expire_before, quarantine_max_mb=quarantine_max_mb)
    lifecycle.remove_if_unused(store, store.dropped_pdfs)
    store.dropped_pdfs.clear()
    return answers


def record_outcomes(store: Store, raw: bytes, outcomes: list[Outcome],
                    add: Callable[[Certificate], tuple[str, int | None]], *, retention_days: int | None,
                    expire_before: str | None, quarantine_max_mb: int) -> list[MessageOutcome]:
    """Step 2 for one message's outcomes, in the caller's transaction; ``add`` stores a certificate
    (with its PDF, as its caller keeps PDFs) and says ``new`` or ``duplicate`` and the row's id."""
    answers: list[MessageOutcome] = []
    for outcome in outcomes:
        cert = outcome.certificate
        if outcome.status == "certificate" and cert is not None and lifecycle.is_expired(cert, expire_before):
            assert retention_days is not None
            lifecycle.bury(store, cert.site_finess, cert.dossier, "expired", retention_days)
            answers.append(MessageOutcome("expired"))
        elif outcome.status == "certificate" and cert is not None:
            answers.append(MessageOutcome(*add(cert)))
        elif outcome.status == "quarantined":
            kept = quarantine.keep(store, raw, quarantine_max_mb * 1024 * 1024)
            store.quarantine(str(kept), "", outcome.reason or "malformed", outcome.detail)
            answers.append(MessageOutcome("quarantined", None, outcome.reason, outcome.detail))
        else:
            answers.append(MessageOutcome("ignored"))
    return answers
