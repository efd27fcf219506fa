"""Turn one raw message (or one saved certificate PDF) into certificate records.

Pure functions: bytes in, :class:`Outcome` out. No database, no file system writes; the
ingest pipeline stores what comes out. Headers are read first and most mail is dismissed
before its body is even split.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from helper.parse import sidep, trust, verify
from helper.parse.identifiers import finess_check, ins_check, normalize_finess, normalize_ins
from helper.parse.mime import MimeError, Part, address_of, decode_rfc2047, parse, split_headers
from helper.parse.text import (
    html_to_text,
    iso_datetime,
    normalize_sex,
    outcome_of,
    parse_date,
    parse_datetime,
    same_name,
)

PDF_MAGIC = b"%PDF-"
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_BLANK_LINES = re.compile(rb"(?:[ \t]*+\r?\n)*+")


def _looks_like_mail(raw: bytes) -> bool:
    start = 0
    if raw.startswith(b"From "):
        nl = raw.find(b"\n")
        start = len(raw) if nl < 0 else nl + 1
    return _HEADER_LINE.match(raw, start) is not None


def _without_leading_blank_lines(raw: bytes) -> tuple[bytes, bool]:
    """``raw`` without the blank lines before its header (after an mbox ``From `` line, if any).

    Mail saved by hand or cut from a mailbox often starts with a blank line; a mail tool reads the
    header that follows. Returns the bytes to parse and whether any blank line was removed.
    """
    start = 0
    if raw.startswith(b"From "):
        nl = raw.find(b"\n")
        start = len(raw) if nl < 0 else nl + 1
    end = _BLANK_LINES.match(raw, start).end()
    if end == start:
        return raw, False
    return raw[end:], True


_RFC822 = re.compile(rb"message/rfc822", re.I)


@dataclass
class Certificate:
    """A certificate as parsed, before storage. Field names are the public contract."""

    site_finess: str | None
    dossier: str | None
    last_name: str
    first_name: str
    sex: str | None = None
    birth_date: str | None = None
    ins: str | None = None
    analysis_code: str | None = None
    analysis_label: str | None = None
    sampled_at: str | None = None
    integrated_at: str | None = None
    result: str | None = None
    outcome: str = "unknown"
    message_id: str | None = None
    recipient: str | None = None
    mail_date: str | None = None
    pdf_only: bool = False
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)
    pdf: bytes | None = field(default=None, repr=False)
    pdf_sha256: str | None = None
    pdf_size: int | None = None
    verification: dict | None = None  # see helper.parse.verify.cross_check; None when not checked

    def attach_pdf(self, data: bytes) -> None:
        self.pdf = data
        self.pdf_sha256 = hashlib.sha256(data).hexdigest()
        self.pdf_size = len(data)


@dataclass
class Outcome:
    """What became of one message: ``certificate``, ``ignored`` or ``quarantined``."""

    status: str
    certificate: Certificate | None = None
    reason: str | None = None
    detail: str = ""


@dataclass
class ParseConfig:
    trust: trust.TrustPolicy = field(default_factory=trust.TrustPolicy)


def parse_message(raw: bytes, config: ParseConfig) -> list[Outcome]:
    """Parse one raw RFC 5322 message.

    Returns one outcome per certificate found: the message itself, or each certificate it
    forwards as a ``message/rfc822`` attachment. A message with none gives a single
    ``ignored`` outcome; an unreadable one a single ``quarantined`` outcome.
    """
    raw, had_blank_lines = _without_leading_blank_lines(raw)
    if not _looks_like_mail(raw):
        if had_blank_lines or not raw.strip():
            # An empty message, or an mbox entry with an empty header: nothing that could be a certificate.
            return [Outcome("ignored")]
        return [Outcome("quarantined", reason="not_a_message",
                        detail="le fichier ne commence pas par des en-têtes de courriel")]
    try:
        headers, body_at = split_headers(raw)
        subject = decode_rfc2047(headers.get("subject", ""))
        subject_fields = sidep.parse_subject(subject)
        if subject_fields is None and not _worth_reading(raw, headers, config) and not _RFC822.search(raw, body_at):
            return [Outcome("ignored")]
        root = parse(raw, headers=headers, body_at=body_at)
        outcomes = _certificates_in(root, raw, [], config, (subject, subject_fields))
    except MimeError as exc:
        return [Outcome("quarantined", reason=exc.reason, detail=exc.detail)]
    except (ValueError, LookupError, UnicodeError, IndexError, RecursionError) as exc:
        return [Outcome("quarantined", reason="malformed", detail=f"{type(exc).__name__}: {exc}")]
    return outcomes or [Outcome("ignored")]


def _certificates_in(message: Part, raw: bytes, forwarded_by: list[list[str]], config: ParseConfig,
                     subject_read: tuple[str, dict[str, str] | None] | None = None) -> list[Outcome]:
    """Certificates in ``message`` (whose own bytes are ``raw``), found inside the messages whose
    From fields are ``forwarded_by``, outermost first. Trust is decided by :func:`trust.judge`.
    ``subject_read``: the message's decoded subject and its :func:`sidep.parse_subject`, when the
    caller has them already (decoded and parsed once per message)."""
    if subject_read is None:
        subject = decode_rfc2047(message.headers.get("subject", ""))
        subject_read = (subject, sidep.parse_subject(subject))
    subject, subject_fields = subject_read
    from_fields = trust.field_values(raw, "from")
    fields: dict[str, str] | None = None
    if subject_fields is None and _worth_reading(raw, message.headers, config, from_fields):
        fields = _body_fields(_body_text(message))
        if not _looks_like_certificate(fields):
            fields = None
    if subject_fields is not None or fields is not None:
        verdict = trust.judge(from_fields, forwarded_by, config.trust)
        if not verdict.trusted and (message.truncated or not trust.may_be_vouched(verdict, config.trust)):
            return [Outcome("quarantined", reason=verdict.reason, detail=verdict.detail)]
        if message.truncated:
            return [Outcome("quarantined", reason="truncated", detail="message incomplet (fin MIME absente)")]
        return [checked(_certificate_outcome(message, subject, fields, subject_fields), verdict, config.trust)]
    found: list[Outcome] = []
    # Own parts only: a message attached inside an attached message is reached through its
    # enclosing one, so that every forwarder in the chain is judged.
    for part in _own_parts(message):
        if part.content_type == "message/rfc822" and part.children:
            found.extend(_certificates_in(part.children[0], part.payload(), [*forwarded_by, from_fields], config))
    return found


def checked(outcome: Outcome, verdict: trust.Verdict, policy: trust.TrustPolicy,
            found: list[dict] | None | bool = False, also: dict[str, str] | None = None) -> Outcome:
    """Trust step 5 (:func:`trust.with_barcode`): read the PDF's barcodes (unless ``found`` already
    holds them, None when the PDF was unreadable), record the verification with the certificate,
    and decide."""
    cert = outcome.certificate
    if cert is not None and policy.verify_barcodes:
        if found is False:
            found = verify.barcodes_of(cert.pdf, policy.barcode_trust_list) if cert.pdf is not None else None
        cert.verification = verify.cross_check(cert, found if isinstance(found, list) else None, also)
        cert.raw.update(verify.raw_payloads(found))
    verdict = trust.with_barcode(verdict, cert.verification if cert is not None else None)
    if not verdict.trusted:
        return Outcome("quarantined", reason=verdict.reason, detail=verdict.detail)
    return outcome


def _worth_reading(raw: bytes, headers: dict[str, str], config: ParseConfig, from_fields: list[str] | None = None) -> bool:
    """Is the body worth a look without a certificate subject: the strict sender is trusted, or
    an address field merely mentions a trusted sender (a forgery is then quarantined, not ignored)."""
    from_fields = trust.field_values(raw, "from") if from_fields is None else from_fields
    sender, _ = trust.strict_sender(from_fields)
    if sender in config.trust.senders:
        return True
    mentioned = [*from_fields, headers.get("sender", ""), headers.get("reply-to", "")]
    return trust.claims_trusted(mentioned, config.trust)


def _looks_like_certificate(fields: dict[str, str]) -> bool:
    return "last_name" in fields and ("birth_date" in fields or "result" in fields)


def _body_text(message: Part) -> str:
    plain: str | None = None
    markup: str | None = None
    for part in _own_parts(message):
        if part.is_attachment:
            continue
        if part.content_type == "text/plain" and plain is None:
            plain = part.text()
        elif part.content_type == "text/html" and markup is None:
            markup = part.text()
    if plain and plain.strip():
        return plain
    return html_to_text(markup) if markup else (plain or "")


def _own_parts(message: Part) -> list[Part]:
    """Parts of this message, not descending into attached messages."""
    out: list[Part] = []
    stack = [message]
    while stack:
        p = stack.pop()
        out.append(p)
        if p.content_type != "message/rfc822":
            stack.extend(reversed(p.children))
    return out


def _body_fields(text: str) -> dict[str, str]:
    """Label → value for the field lines of a body or PDF text (first occurrence wins)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        label, colon, value = line.partition(":")
        if not colon or len(label) > 80:
            continue
        name = sidep.field_for_label(label.strip().lstrip("-*• ").rstrip())
        if name and name not in fields:
            value = value.strip()
            if value:
                fields[name] = value
    return fields


def _certificate_outcome(message: Part, subject: str, fields: dict[str, str] | None,
                         sm: dict[str, str] | None) -> Outcome:
    """``sm``: ``sidep.parse_subject(subject)``."""
    if fields is None:
        fields = _body_fields(_body_text(message))
    subj = sm or {}
    pdf_part = _pdf_part(message)
    name_fields: dict[str, str] = {}
    if pdf_part is not None and pdf_part.filename:
        fm = sidep.FILENAME_RE.match(pdf_part.filename.strip())
        if fm:
            name_fields = fm.groupdict()

    warnings: list[str] = []
    if not sm:
        warnings.append("subject_unrecognized")
    raw = {f"body.{k}": v for k, v in fields.items()}
    raw.update({f"subject.{k}": v for k, v in subj.items() if v})
    if pdf_part is not None and pdf_part.filename:
        raw["attachment"] = pdf_part.filename

    def pick(name: str) -> str | None:
        body, sub = fields.get(name), subj.get(name) or None
        if body and sub and not _agree(name, body, sub):
            warnings.append(f"subject_body_mismatch:{name}")
        return body or sub or name_fields.get(name) or None

    last = pick("last_name")
    first = pick("first_name")
    finess = pick("finess")
    dossier = fields.get("dossier") or subj.get("dossier") or name_fields.get("dossier") or None
    if not last:
        return Outcome("quarantined", reason="missing_fields", detail="nom du patient introuvable")
    cert = Certificate(
        site_finess=normalize_finess(finess) if finess else None,
        dossier=dossier.strip() if dossier else None,
        last_name=last.strip(),
        first_name=(first or "").strip(),
        message_id=_message_id(message.headers.get("message-id", "")),
        recipient=address_of(message.headers.get("to", "")) or None,
        mail_date=_mail_date(message.headers.get("date", "")),
        raw=raw,
        warnings=warnings,
    )
    _fill_common(cert, fields)
    if pdf_part is None:
        cert.warnings.append("pdf_missing")
    else:
        data = pdf_part.payload()
        if not data.startswith(PDF_MAGIC):
            cert.warnings.append("pdf_invalid")
        cert.attach_pdf(data)
    return Outcome("certificate", certificate=cert)


def _fill_common(cert: Certificate, fields: dict[str, str]) -> None:
    """Fields shared by mail bodies and PDF texts: identity traits, test, dates, result, checks."""
    w = cert.warnings
    if cert.dossier is None:
        w.append("dossier_missing")
    if cert.site_finess:
        problem = finess_check(cert.site_finess)
        if problem:
            w.append(problem)
    else:
        w.append("finess_missing")
    if "sex" in fields:
        cert.sex = normalize_sex(fields["sex"])
        if cert.sex is None:
            w.append("sex_unrecognized")
    if "birth_date" in fields:
        bd = parse_date(fields["birth_date"])
        cert.birth_date = bd.isoformat() if bd else None
        if bd is None:
            w.append("birth_date_unparsed")
    if fields.get("ins"):
        ins = normalize_ins(fields["ins"])
        cert.ins = ins
        problem = ins_check(ins)
        if problem:
            w.append(problem)
    if "analysis" in fields:
        am = sidep.ANALYSIS_RE.match(fields["analysis"])
        if am:
            cert.analysis_code, cert.analysis_label = am["code"], am["label"].strip() or None
        else:
            cert.analysis_label = fields["analysis"]
    for name in ("sampled_at", "integrated_at"):
        if name in fields:
            value = parse_datetime(fields[name])
            setattr(cert, name, iso_datetime(value))
            if value is None:
                w.append(f"{name}_unparsed")
    if "result" in fields:
        cert.result = fields["result"]
        cert.outcome = outcome_of(fields["result"])
        if cert.outcome == "unknown":
            w.append("result_unrecognized")
    for name in ("sex", "birth_date", "result"):
        if name in fields:
            cert.raw.setdefault(f"body.{name}", fields[name])


def _agree(name: str, a: str, b: str) -> bool:
    if name in ("last_name", "first_name"):
        return same_name(a, b)
    return re.sub(r"\s", "", a).upper() == re.sub(r"\s", "", b).upper()


def _pdf_part(message: Part) -> Part | None:
    candidates = [
        p
        for p in _own_parts(message)
        if not p.children
        and (
            p.content_type == "application/pdf"
            or (p.filename or "").lower().endswith(".pdf")
        )
    ]
    return candidates[0] if candidates else None


def _message_id(value: str) -> str | None:
    value = value.strip()
    m = re.search(r"<[^<>\s]+>", value)
    if m:
        return m.group(0)
    return f"<{value}>" if value and " " not in value else None


def _mail_date(value: str) -> str | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).isoformat(timespec="seconds") if value else None
    except (TypeError, ValueError, IndexError):
        return None
