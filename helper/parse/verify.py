"""Check a certificate's barcodes: their signatures, then that they agree with the mail.

What happens, step by step:

1. :func:`read_barcodes` (run inside the bounded PDF child, :mod:`helper.parse.pdftext`) takes the
   payloads the barcode reader found, parses each 2D-DOC and DCC (:mod:`helper.parse.barcodes`) and
   checks its signature against the trust list (:mod:`helper.parse.trustlist`): ECDSA (P-256 and
   SHA-256 for the 2D-DOC, COSE ES256 — or PS256 — for the DCC). Each barcode comes out as a plain
   dict: type, key id, ``signature`` (``valid`` / ``invalid`` / ``unknown_key`` / ``unreadable``),
   the identity and test fields it carries, and its raw payload.
2. :func:`cross_check` compares every barcode whose signature is valid with the certificate read
   from the mail (or from the file name and text of a bare PDF): last name and first names after
   transliteration to A–Z, birth date, sex, analysis code (LOINC without hyphen), result (P/N/X)
   and sampling date-time. A field the certificate does not give is not compared.
3. The verdict (:data:`VERIFIED`, :data:`MISMATCH` with the differing fields,
   :data:`UNVERIFIABLE`, :data:`INVALID_SIGNATURE`) is what :mod:`helper.parse.trust` uses and what
   is stored with the certificate. Any barcode with a bad signature makes the certificate
   ``invalid_signature``; with no valid one it is ``unverifiable``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from helper.parse import barcodes as bc
from helper.parse.text import _COMBINING, _SPECIAL_FOLDS, _UMLAUTS

if TYPE_CHECKING:
    from helper.parse.message import Certificate
    from helper.parse.trustlist import TrustList

VERIFIED = "verified"
MISMATCH = "mismatch"
UNVERIFIABLE = "unverifiable"
INVALID_SIGNATURE = "invalid_signature"

LABELS = {
    VERIFIED: "vérifié",
    MISMATCH: "ne correspond pas au courriel",
    UNVERIFIABLE: "signature non vérifiable",
    INVALID_SIGNATURE: "signature invalide",
}
FIELD_LABELS = {
    "last_name": "nom", "first_name": "prénom", "birth_date": "date de naissance", "sex": "sexe",
    "analysis_code": "code d'analyse", "result": "résultat", "sampled_at": "date de prélèvement",
}
_RESULT_CODE = {"positive": "P", "negative": "N", "inconclusive": "X"}
_DCC_RESULT = {"260373001": "P", "260415000": "N"}


# --- step 1: signatures (in the PDF child) ------------------------------------------------------

def read_barcodes(payloads: list[bytes], trust: TrustList) -> list[dict[str, Any]]:
    out = []
    for payload in payloads:
        kind = bc.classify(payload)
        if kind is None:
            continue
        try:
            out.append(_read_2ddoc(payload, trust) if kind == "2d-doc" else _read_dcc(payload, trust))
        except bc.BarcodeError as exc:
            out.append({"type": kind, "signature": "unreadable", "error": str(exc),
                        "raw": payload[:bc.MAX_PAYLOAD].decode("latin-1")})
    return out


def _read_2ddoc(payload: bytes, trust: TrustList) -> dict[str, Any]:
    doc = bc.parse_2ddoc(payload)
    f = doc.fields
    fields: dict[str, str | None] = {}
    if doc.doc_type == "B2":
        fields = {
            "first_name": f.get("F0"), "last_name": f.get("F1"), "birth_date": _ddmmyyyy(f.get("F2")),
            "sex": f.get("F3"), "analysis_code": f.get("F4"), "result": f.get("F5"),
            "sampled_at": _ddmmyyyyhhmm(f.get("F6")),
        }
    key = trust.key("2d-doc", doc.key_id)
    return {
        "type": "2d-doc", "key": doc.key_id, "signature": _check(key, doc.signed_data, doc.signature),
        "doc_type": doc.doc_type, "version": doc.version, "issued": doc.issued, "signed": doc.signed,
        "country": doc.country, "fields": fields, "raw": doc.raw.decode("latin-1"),
    }


def _read_dcc(payload: bytes, trust: TrustList) -> dict[str, Any]:
    dcc = bc.parse_hc1(payload)
    hc = dcc.certificate
    nam = hc.get("nam") if isinstance(hc.get("nam"), dict) else {}
    test = bc.dcc_test(hc) or {}
    fields = {
        "last_name": _str(nam.get("fnt")), "first_name": _str(nam.get("gnt")),
        "birth_date": _str(hc.get("dob")), "result": _DCC_RESULT.get(_str(test.get("tr")) or ""),
        "sampled_at": _dcc_time(_str(test.get("sc"))),
    }
    key = trust.key("dcc", dcc.key_id)
    if dcc.alg not in (-7, -37, None):
        signature = "invalid"
    else:
        signature = _check(key, dcc.signed_data, dcc.signature, pss=dcc.alg == -37)
    return {
        "type": "dcc", "key": dcc.key_id, "signature": signature, "fields": fields,
        "test": {k: _str(test.get(k)) for k in ("tg", "tt", "ma", "sc", "tr", "tc", "co", "is", "ci") if k in test},
        "raw": dcc.raw,
    }


@functools.cache
def _crypto() -> Any:
    """The ``cryptography`` names :func:`_check` uses, imported once (only where signatures are
    checked: the reader child), with the ECDSA algorithms made once per curve size."""
    from types import SimpleNamespace

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    ecdsa = {256: ec.ECDSA(hashes.SHA256()), 384: ec.ECDSA(hashes.SHA384())}
    return SimpleNamespace(InvalidSignature=InvalidSignature, hashes=hashes, ec=ec, padding=padding, rsa=rsa,
                           encode_dss_signature=encode_dss_signature, ecdsa=ecdsa,
                           ecdsa_other=ec.ECDSA(hashes.SHA512()))


def _check(key: Any, data: bytes, signature: bytes, *, pss: bool = False) -> str:
    """``valid`` / ``invalid`` / ``unknown_key`` for a raw (r‖s) ECDSA or an RSA-PSS signature."""
    if key is None:
        return "unknown_key"
    c = _crypto()
    try:
        if isinstance(key, c.ec.EllipticCurvePublicKey):
            bits = key.curve.key_size
            size = (bits + 7) // 8
            if len(signature) != 2 * size:
                return "invalid"
            der = c.encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            key.verify(der, data, c.ecdsa.get(bits, c.ecdsa_other))
            return "valid"
        if isinstance(key, c.rsa.RSAPublicKey) and pss:
            key.verify(signature, data, c.padding.PSS(c.padding.MGF1(c.hashes.SHA256()), 32), c.hashes.SHA256())
            return "valid"
    except (c.InvalidSignature, ValueError):
        return "invalid"
    return "unknown_key"  # a key of a kind these barcodes do not use


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _ddmmyyyy(text: str | None) -> str | None:
    try:
        return dt.date(int(text[4:8]), int(text[2:4]), int(text[:2])).isoformat() if text else None
    except ValueError:
        return text


def _ddmmyyyyhhmm(text: str | None) -> str | None:
    try:
        return dt.datetime(int(text[4:8]), int(text[2:4]), int(text[:2]), int(text[8:10]),
                           int(text[10:12])).isoformat(timespec="minutes") if text else None
    except ValueError:
        return text


def _dcc_time(text: str | None) -> str | None:
    """A DCC sampling time (ISO 8601 with offset) as French wall-clock time, to the minute."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if when.tzinfo is not None:
        try:
            from zoneinfo import ZoneInfo

            when = when.astimezone(ZoneInfo("Europe/Paris"))
        except Exception:  # noqa: BLE001 - no time-zone data: keep the offset's own wall clock
            pass
    return when.replace(tzinfo=None).isoformat(timespec="minutes")


# --- step 2 and 3: cross-check and verdict ----------------------------------------------------

def name_key(text: str) -> str:
    """A name transliterated to A–Z as the barcodes write it: ``O'Leary`` → ``OLEARY``,
    ``Müller`` → ``MUELLER``, accents dropped, separators (space, hyphen, ``<``) removed."""
    text = text.translate(_UMLAUTS).translate(_SPECIAL_FOLDS)
    text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return re.sub(r"[^A-Z]", "", text.upper())


@functools.lru_cache(maxsize=512)  # a name is compared with every barcode field of its certificate
def _name_keys(text: str) -> frozenset[str]:
    """Accepted spellings: ICAO (``MUELLER``) and plain accent-dropping (``MULLER``)."""
    plain = re.sub(r"[^A-Z]", "", _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(_SPECIAL_FOLDS))).upper())
    return frozenset((name_key(text), plain))


def _first_names_agree(mail: str, barcode: str) -> bool:
    """Equal after transliteration, or the mail's first given name is the barcode's first one
    (the mail may give one given name where the barcode lists them all, or the reverse)."""
    if _name_keys(mail) & _name_keys(barcode):
        return True
    first = [_name_keys(w) for w in (re.split(r"[\s,/<]+", s.strip(), maxsplit=1)[0] for s in (mail, barcode))]
    return bool(first[0] & first[1])


def _mail_values(cert: Certificate) -> dict[str, str | None]:
    code = cert.analysis_code.replace("-", "").strip() if cert.analysis_code else None
    return {
        "last_name": cert.last_name or None, "first_name": cert.first_name or None,
        "birth_date": cert.birth_date, "sex": cert.sex, "analysis_code": code,
        "result": _RESULT_CODE.get(cert.outcome), "sampled_at": (cert.sampled_at or "")[:16] or None,
    }


def _differs(name: str, mail: str, code: str) -> bool:
    if name == "last_name":
        return not (_name_keys(mail) & _name_keys(code))
    if name == "first_name":
        return not _first_names_agree(mail, code)
    if name == "birth_date":
        return not mail.startswith(code)  # a DCC may give only the year or year and month
    if name == "sampled_at" and len(mail) == 16 and mail.endswith("T00:00"):
        return mail[:10] != code[:10]  # the mail gave a date without time
    return mail.strip().upper() != code.strip().upper()


def barcodes_of(pdf: bytes, trust_list: str | None) -> list[dict[str, Any]] | None:
    """The checked barcodes of a mail's PDF, read in the bounded PDF child (None: PDF unreadable)."""
    from helper.parse.pdftext import extract

    info = extract(pdf, barcodes=True, trust_list=trust_list, text=False)
    return info.barcodes if info is not None else None


def cross_check(cert: Certificate, found: list[dict[str, Any]] | None,
                also: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``verification`` object stored with the certificate (see the module docstring).

    ``found``: the checked barcodes (None when the PDF could not be read); ``also``: more values to
    compare, e.g. the names in a bare PDF's file name (``{"last_name": ...}``), reported with
    ``source`` ``file_name``.
    """
    unread = found is None
    found = found or []
    summary = [{k: v for k, v in b.items() if k in ("type", "key", "signature", "error", "fields")} for b in found]
    if any(b["signature"] == "invalid" for b in found):
        return _verdict(INVALID_SIGNATURE, summary, detail="la signature d'un code-barres ne correspond pas à son contenu")
    valid = [b for b in found if b["signature"] == "valid"]
    if not valid:
        if unread:
            why = "PDF absent, ou illisible dans les limites de temps et de mémoire"
        elif not found:
            why = "aucun code-barres 2D-DOC ou DCC lisible dans le PDF"
        elif any(b["signature"] == "unknown_key" for b in found):
            why = "clé de signature absente de la liste de confiance"
        else:
            why = "code-barres illisible"
        return _verdict(UNVERIFIABLE, summary, detail=why)
    sources = [("mail", _mail_values(cert))]
    if also:
        sources.append(("file_name", also))
    differences = []
    for barcode in valid:
        for name, code in barcode.get("fields", {}).items():
            for origin, values in sources:
                value = values.get(name)
                if code and value and _differs(name, value, code):
                    differences.append({"field": name, "label": FIELD_LABELS[name], "certificate": value,
                                        "barcode": code, "barcode_type": barcode["type"], "source": origin})
    if differences:
        names = sorted({d["field"] for d in differences})
        return _verdict(MISMATCH, summary, fields=names, differences=differences,
                        detail="le code-barres ne correspond pas : " + ", ".join(FIELD_LABELS[n] for n in names))
    return _verdict(VERIFIED, summary, detail="signature vérifiée, identité et résultat concordants")


def _verdict(status: str, barcodes: list[dict[str, Any]], *, fields: list[str] | None = None,
             differences: list[dict[str, Any]] | None = None, detail: str = "") -> dict[str, Any]:
    return {"status": status, "label": LABELS[status], "fields": fields or [],
            "differences": differences or [], "barcodes": barcodes, "detail": detail}


def raw_payloads(found: list[dict[str, Any]] | None) -> dict[str, str]:
    """The barcodes' payloads as read, for the certificate's ``raw`` (control characters shown as
    ``<GS>``, ``<RS>``, ``<US>``, as barcode readers print them)."""
    out: dict[str, str] = {}
    for i, b in enumerate(found or []):
        text = b.get("raw", "")
        for code, name in ((bc.GS, "<GS>"), (bc.RS, "<RS>"), (bc.US, "<US>")):
            text = text.replace(chr(code), name)
        out[f"barcode.{b['type']}" + (f".{i}" if i else "")] = text
    return out
