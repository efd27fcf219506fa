"""A certificate PDF saved alone (downloaded from the webmail), without its message.

What happens (:func:`certificate_from_pdf`):

1. The file name must read ``{FINESS}_{dossier}_{NOM}_{Prénom}.pdf``; any other PDF is ignored.
2. The record is built from the file name, completed by the labelled fields of the PDF's text.
3. Trust: the text must confirm the file name (:func:`trust.judge_pdf`, step 4 of the trust
   rules), unless the PDF's signed barcode verifies and agrees with the file name and text
   (step 5, :func:`helper.parse.message.checked`). Otherwise the file is quarantined.
"""

from __future__ import annotations

from helper.parse import sidep, trust
from helper.parse.identifiers import normalize_finess
from helper.parse.message import PDF_MAGIC, Certificate, Outcome, _body_fields, _fill_common, checked
from helper.parse.text import same_name


def certificate_from_pdf(file_name: str, data: bytes, text: str | None, created: str | None = None,
                         *, policy: trust.TrustPolicy | None = None, barcodes: list[dict] | None = None) -> Outcome:
    """A certificate PDF saved alone: identity from its file name, the rest from its text.

    ``text`` is the PDF's extracted text, or None when it could not be read within bounds.
    ``created`` (the PDF's creation date, i.e. when SI-DEP produced it) stands for the integration
    date the PDF does not print, so that a re-issue saved as a PDF is not taken for the older certificate.
    ``barcodes``: the PDF's checked barcodes (read with the text, :mod:`helper.parse.pdftext`) when
    ``policy.verify_barcodes`` is on.
    """
    m = sidep.FILENAME_RE.match(file_name)
    if not m:
        return Outcome("ignored")
    if not data.startswith(PDF_MAGIC):
        return Outcome("quarantined", reason="pdf_invalid", detail="le fichier n'est pas un PDF")
    policy = policy or trust.TrustPolicy()
    parts = m.groupdict()
    fields = _body_fields(text) if text is not None else None
    verdict = trust.judge_pdf(parts, fields, text or "")
    if not verdict.trusted and not trust.may_be_vouched(verdict, policy):
        return Outcome("quarantined", reason=verdict.reason, detail=verdict.detail)
    fields = dict(fields or {})
    cert = Certificate(
        site_finess=normalize_finess(parts["finess"]),
        dossier=parts["dossier"],
        last_name=parts["last_name"].replace("_", " ").strip(),
        first_name=parts["first_name"].strip(),
        pdf_only=True,
        raw={"file_name": file_name, **{f"pdf.{k}": v for k, v in fields.items()}},
    )
    for name in ("last_name", "first_name"):
        if fields.get(name) and not same_name(fields[name], getattr(cert, name)):
            cert.warnings.append(f"filename_pdf_mismatch:{name}")
        if fields.get(name):
            setattr(cert, name, fields[name])
    fields.pop("finess", None)
    fields.pop("dossier", None)
    _fill_common(cert, fields)
    if cert.integrated_at is None and created:
        cert.integrated_at = created
        cert.warnings.append("integrated_at_from_pdf_date")
    cert.attach_pdf(data)
    named = {"last_name": parts["last_name"].replace("_", " "), "first_name": parts["first_name"]}
    outcome = checked(Outcome("certificate", certificate=cert), verdict, policy, barcodes, also=named)
    if outcome.certificate is not None and cert.verification and cert.verification["status"] == "verified":
        _complete_from_barcode(cert)
    return outcome


def _complete_from_barcode(cert: Certificate) -> None:
    """Identity traits the text did not give, taken from the verified barcode (it agrees with the rest)."""
    from helper.parse.text import outcome_of

    for barcode in cert.verification["barcodes"]:
        b = barcode.get("fields", {}) if barcode.get("signature") == "valid" else {}
        if cert.birth_date is None and b.get("birth_date") and len(b["birth_date"]) == 10:
            cert.birth_date = b["birth_date"]
        if cert.sex is None and b.get("sex") in ("M", "F"):
            cert.sex = b["sex"]
        if cert.result is None and b.get("result"):
            cert.result = b["result"]
            cert.outcome = outcome_of(b["result"])
        if cert.sampled_at is None and b.get("sampled_at"):
            cert.sampled_at = b["sampled_at"] + ":00"
