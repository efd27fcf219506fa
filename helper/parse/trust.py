"""Every rule that decides whether a message is a genuine SI-DEP certificate, in one place.

What happens, step by step (:func:`judge`):

1. The certificate message's ``From`` is read strictly (:mod:`helper.parse.address`). It must
   appear exactly once, be shorter than :data:`MAX_FROM_LENGTH`, parse without error, use no
   obsolete syntax, and name exactly one mailbox outside any group. Anything else — two mailboxes,
   a group, a comment or a quoted display name that merely *contains* the trusted address, an
   unparsable value — is ``untrusted_sender``. ``Sender:`` and ``Reply-To:`` are never consulted.
2. That one address must be in ``trusted_senders`` (compared with :func:`address.canonical`).
3. A certificate that arrives attached (``message/rfc822``) to another message was forwarded: whoever
   forwards writes the inner headers, so the inner ``From`` alone proves nothing. Every enclosing
   message, outermost first, must have a ``From`` read as strictly as in step 1 and listed in
   ``trusted_forwarders`` (an exact address, or ``@domain`` for any address of that domain);
   otherwise ``untrusted_forward``, with the forwarder's address in the detail so that ``status``
   shows IT which address to add. ``trusted_forwarders`` is empty by default.
4. A PDF saved alone has no headers at all: :func:`judge_pdf` accepts it only when its own text
   confirms its file name (last name and dossier number, compared after folding accents and case)
   and gives a readable birth date; otherwise ``pdf_not_certificate``, or ``pdf_unreadable`` when
   its text cannot be read (encrypted, damaged, over the extraction limits).

5. The signed barcodes of the certificate PDF (2D-DOC, EU DCC; :mod:`helper.parse.verify`) are
   checked when ``verify_barcodes`` is on. :func:`with_barcode` is the one rule that uses them: a
   certificate whose barcode signature verifies against the trust list *and* agrees with the mail
   (or the bare PDF's file name and text) — ``verified`` — is trusted even when steps 1–4 refused it
   (an untrusted sender or forward, a saved PDF whose text does not confirm it): the barcode is
   signed by the issuing authority. Any other result (``mismatch``, ``unverifiable``,
   ``invalid_signature``) leaves the step 1–4 verdict as it was: a forwarded or untrusted one stays
   in quarantine, with the barcode result added to its detail.

The ingest pipeline re-reads files quarantined ``untrusted_sender`` or ``untrusted_forward`` when
these settings change (see ``Ingester._recheck_if_trust_changed``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from helper.parse import sidep
from helper.parse.address import AddressError, Group, ascii_lower, parse_address_list
from helper.parse.text import fold, parse_date

UNTRUSTED_SENDER = "untrusted_sender"
UNTRUSTED_FORWARD = "untrusted_forward"
PDF_NOT_CERTIFICATE = "pdf_not_certificate"
PDF_UNREADABLE = "pdf_unreadable"

#: Reasons whose files are read again when the trust settings change.
RECHECK_REASONS = (UNTRUSTED_SENDER, UNTRUSTED_FORWARD)

#: A From field longer than this is not read at all (real ones are under 200 characters).
MAX_FROM_LENGTH = 4096


@dataclass(frozen=True)
class TrustPolicy:
    """The trust settings in force (``trusted_senders``, ``trusted_forwarders``), canonical forms."""

    senders: frozenset[str] = field(default_factory=lambda: frozenset(sidep.DEFAULT_TRUSTED_SENDERS))
    forwarders: frozenset[str] = frozenset()
    #: Read and check the PDF's barcodes (``verify_barcodes``), with keys from this folder
    #: (``barcode_trust_list``; see :mod:`helper.parse.trustlist`).
    verify_barcodes: bool = False
    barcode_trust_list: str | None = None

    @classmethod
    def of(cls, value: TrustPolicy | Iterable[str]) -> TrustPolicy:
        """A policy from a policy, or from a bare set of trusted senders (no forwarders)."""
        if isinstance(value, TrustPolicy):
            return value
        return cls(senders=frozenset(_entry_or_as_is(s) for s in value))

    def signature(self) -> tuple[str, str]:
        """(senders, forwarders) as stable strings, to notice when IT changes them."""
        return ",".join(sorted(self.senders)), ",".join(sorted(self.forwarders))

    def barcode_signature(self) -> str:
        """The barcode settings and the trust list's files (names, sizes, times) as one string, to
        notice when IT updates the list ("" when verification is off)."""
        if not self.verify_barcodes:
            return ""
        import hashlib
        import os

        entries = [self.barcode_trust_list or ""]
        for folder, _, files in os.walk(self.barcode_trust_list or os.devnull):
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                entries.append(f"{os.path.relpath(os.path.join(folder, name), self.barcode_trust_list or '')}:{st.st_size}:{st.st_mtime_ns}")
        return "on:" + hashlib.sha256("\n".join(sorted(entries)).encode("utf-8", "replace")).hexdigest()

    def is_forwarder(self, address: str) -> bool:
        return address in self.forwarders or "@" + address.rpartition("@")[2] in self.forwarders


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    reason: str | None = None
    detail: str = ""
    sender: str | None = None  # the address held responsible (the forwarder, for untrusted_forward)


TRUSTED = Verdict(True)


def canonical_entry(entry: str) -> str:
    """A configured address, or ``@domain`` entry, in the form addresses are compared in.

    Raises ValueError (French message) when the entry is not one address or ``@domain``.
    """
    entry = entry.strip()
    if entry.startswith("@"):
        domain = entry[1:]
        if not domain or any(c in domain for c in " \t@<>()[]\\,;:\"") or domain.startswith(".") or ".." in domain:
            raise ValueError(f"domaine invalide : {entry!r}")
        return "@" + ascii_lower(domain)
    try:
        parsed = parse_address_list(entry)
    except AddressError as exc:
        raise ValueError(f"adresse invalide : {entry!r} ({exc})") from exc
    boxes = parsed.mailboxes
    if len(parsed.items) != 1 or len(boxes) != 1 or isinstance(parsed.items[0], Group) or boxes[0].display_name:
        raise ValueError(f"une seule adresse, sans nom, attendue : {entry!r}")
    return boxes[0].address


def _entry_or_as_is(entry: str) -> str:
    try:
        return canonical_entry(entry)
    except ValueError:  # not an address: kept as written, it can never match one
        return entry.strip()


def strict_sender(from_fields: Sequence[str]) -> tuple[str | None, str]:
    """The one address a message's From names, or (None, why in French).

    ``from_fields``: the values of every ``From:`` field of the message, unfolded, in order.
    """
    if not from_fields:
        return None, "champ From absent"
    if len(from_fields) > 1:
        return None, f"{len(from_fields)} champs From"
    value = from_fields[0]
    if len(value) > MAX_FROM_LENGTH:
        return None, f"champ From trop long ({len(value)} caractères)"
    try:
        parsed = parse_address_list(value)
    except AddressError as exc:
        return None, f"champ From illisible : {exc}"
    if parsed.obsolete or any(m.obsolete for m in parsed.mailboxes):
        return None, "champ From de forme obsolète"
    if any(isinstance(item, Group) for item in parsed.items):
        return None, "champ From en forme de groupe"
    if len(parsed.items) != 1:
        return None, f"{len(parsed.items)} adresses dans le champ From"
    return parsed.mailboxes[0].address, ""


def claims_trusted(values: Iterable[str], policy: TrustPolicy) -> bool:
    """True when any of these header values merely *mentions* a trusted sender (a sign of forgery
    when the strict reading disagrees): such a message is examined, and quarantined if it looks
    like a certificate, rather than silently ignored."""
    low = [ascii_lower(v) for v in values if v]
    return any(s in v for v in low for s in policy.senders)


def judge(from_fields: Sequence[str], forwarded_by: Sequence[Sequence[str]], policy: TrustPolicy) -> Verdict:
    """Steps 1–3: may the message with these ``From`` fields, found inside messages whose ``From``
    fields are ``forwarded_by`` (outermost first; empty when it arrived directly), be trusted?"""
    sender, why = strict_sender(from_fields)
    if sender is None:
        return Verdict(False, UNTRUSTED_SENDER, f"expéditeur non reconnu ({why})")
    if sender not in policy.senders:
        return Verdict(False, UNTRUSTED_SENDER, f"expéditeur {sender}", sender)
    for outer in forwarded_by:
        forwarder, why = strict_sender(outer)
        if forwarder is None:
            return Verdict(False, UNTRUSTED_FORWARD, f"transféré par un expéditeur non reconnu ({why})")
        if not policy.is_forwarder(forwarder):
            return Verdict(
                False, UNTRUSTED_FORWARD,
                f"transféré par {forwarder}, absent de trusted_forwarders", forwarder,
            )
    return TRUSTED


#: Step 1–4 refusals a verified barcode overrides (step 5).
BARCODE_OVERRIDES = (UNTRUSTED_SENDER, UNTRUSTED_FORWARD, PDF_NOT_CERTIFICATE, PDF_UNREADABLE)


def with_barcode(verdict: Verdict, verification: dict | None) -> Verdict:
    """Step 5: the verdict once the certificate's barcodes are known (``verification`` as made by
    :func:`helper.parse.verify.cross_check`, None when they were not looked at)."""
    if verdict.trusted or verification is None:
        return verdict
    if verification.get("status") == "verified" and verdict.reason in BARCODE_OVERRIDES:
        return Verdict(True, None, "code-barres signé vérifié : " + verdict.detail, verdict.sender)
    label = verification.get("label", verification.get("status", ""))
    return Verdict(False, verdict.reason, f"{verdict.detail} ; code-barres : {label}", verdict.sender)


def may_be_vouched(verdict: Verdict, policy: TrustPolicy) -> bool:
    """Whether reading the barcodes could still change a refusal (step 5): checked before the
    cost of rendering the PDF."""
    return policy.verify_barcodes and not verdict.trusted and verdict.reason in BARCODE_OVERRIDES


def judge_pdf(file_fields: dict[str, str], text_fields: dict[str, str] | None, text: str = "") -> Verdict:
    """Step 4: a bare PDF named ``{FINESS}_{dossier}_{NOM}_{Prénom}.pdf`` whose text was read.

    ``file_fields``: groups of ``sidep.FILENAME_RE``; ``text_fields``: label → value found in the
    PDF's ``text`` (None when the text could not be read). The last name and the birth date must be
    labelled fields; the dossier number a labelled field equal to the file's, or, when the text has
    no such label, a word of the text on its own.
    """
    if text_fields is None:
        return Verdict(
            False, PDF_UNREADABLE,
            "texte du PDF illisible (chiffré, endommagé ou trop lourd) : impossible de vérifier le certificat",
        )
    missing = []
    name = text_fields.get("last_name", "")
    if not name or _key(name) != _key(file_fields.get("last_name", "").replace("_", " ")):
        missing.append("le nom du fichier" if name else "le nom du patient")
    dossier, wanted = text_fields.get("dossier", ""), file_fields.get("dossier", "")
    if dossier:
        if _key(dossier) != _key(wanted):
            missing.append("le numéro de dossier du fichier")
    elif not wanted or fold(wanted) not in _WORD_SPLIT.split(fold(text)):
        missing.append("le numéro de dossier")
    if parse_date(text_fields.get("birth_date", "")) is None:
        missing.append("la date de naissance")
    if missing:
        return Verdict(False, PDF_NOT_CERTIFICATE, "le texte du PDF ne confirme pas " + ", ".join(missing))
    return TRUSTED


_WORD_SPLIT = re.compile(r"[^0-9a-z-]+")


def _key(text: str) -> str:
    return "".join(ch for ch in fold(text) if ch.isalnum())


# --- every occurrence of a field -------------------------------------------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START: dict[str, re.Pattern[bytes]] = {}


def field_values(raw: bytes, name: str) -> list[str]:
    """Every value of header field ``name`` in the header block of ``raw``, unfolded, in order.

    The MIME reader keeps only the first occurrence of each field; trust needs to know that a
    message has two ``From:`` fields. Same conventions: a leading mbox ``From `` line is skipped,
    UTF-8 is tried first, then Windows-1252.
    """
    start = 0
    if raw.startswith(b"From "):
        nl = raw.find(b"\n")
        start = len(raw) if nl < 0 else nl + 1
    while raw[start : start + 1] in (b"\r", b"\n"):  # blank lines before the header (tolerated)
        start += 1
    m = _HEADER_END.search(raw, start)
    block = raw[start : m.start() if m else len(raw)]
    pattern = _FIELD_START.get(name)
    if pattern is None:
        pattern = _FIELD_START[name] = re.compile(rb"(?im)^" + re.escape(name.encode("ascii")) + rb"[ \t]*:")
    out: list[str] = []
    for fm in pattern.finditer(block):
        pieces: list[bytes] = []
        at = fm.end()
        while True:  # the field's line, then its continuation lines
            nl = block.find(b"\n", at)
            end = len(block) if nl < 0 else nl
            pieces.append(block[at:end].strip())
            if nl < 0 or block[nl + 1 : nl + 2] not in (b" ", b"\t"):
                break
            at = nl + 1
        out.append(_text(b" ".join(pieces)))
    return out


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="replace")
