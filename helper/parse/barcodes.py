"""Read the signed barcodes printed on a certificate PDF: the 2D-DOC and the EU DCC.

Pure functions over the bytes a barcode reader returns; no signature is checked here
(:mod:`helper.parse.verify` does that). What happens, step by step:

1. :func:`classify` tells a 2D-DOC (starts ``DC``) from an EU DCC (starts ``HC1:``); anything else
   is ignored.
2. :func:`parse_2ddoc` reads the header (``DC`` + version, certificate-authority id, public-key id,
   issue and signature dates as hex days since 2000-01-01, document type, then perimeter from
   version 03 and country from version 04), then the ``<2-char id><value>`` fields of the message
   (fixed-length values as the B2 type defines them; variable-length ones end with GS 0x1D or RS
   0x1E, or at their maximum length, or at US 0x1F), then the base32 signature after US. The signed
   bytes are the header and message, everything before US.
3. :func:`parse_hc1` reads a DCC: ``HC1:`` + base45 → zlib (bounded output) → COSE_Sign1
   (``[protected, unprotected, payload, signature]``, CBOR tag 18 optional) → CBOR web token whose
   claim −260 → 1 holds the certificate (``nam``, ``dob``, test entries ``t``). The signed bytes are
   the COSE ``Sig_structure1``.

Every reader raises :class:`BarcodeError` (French message) on anything unexpected; sizes are
bounded so that a hostile payload costs little. The decoded payload is kept as read.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

#: Longest barcode payload read (a Data Matrix holds at most 1,558 bytes, a QR code 2,953).
MAX_PAYLOAD = 4096
#: Most bytes a DCC's zlib stream may expand to (real ones are under 1 KB).
MAX_INFLATED = 64 * 1024

GS, RS, US = 0x1D, 0x1E, 0x1F
EPOCH = date(2000, 1, 1)

#: B2 (test result) fields: id → (min length, max length, label); min == max means fixed length.
B2_FIELDS: dict[str, tuple[int, int, str]] = {
    "F0": (0, 60, "prénoms"),
    "F1": (0, 38, "nom"),
    "F2": (8, 8, "date de naissance"),
    "F3": (1, 1, "sexe"),
    "F4": (3, 7, "code d'analyse"),
    "F5": (1, 1, "résultat"),
    "F6": (12, 12, "date et heure de prélèvement"),
}
_HEADER_LENGTH = {"01": 22, "02": 22, "03": 24, "04": 26}


class BarcodeError(ValueError):
    """A barcode that cannot be read as a 2D-DOC or a DCC; the message is in French."""


@dataclass
class TwoDDoc:
    version: str
    ca_id: str
    cert_id: str
    issued: str | None
    signed: str | None
    doc_type: str
    perimeter: str | None
    country: str | None
    fields: dict[str, str]
    signed_data: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """The trust-list key of its public key: CA id and certificate id, e.g. ``FR01AB1C``."""
        return self.ca_id + self.cert_id


@dataclass
class Dcc:
    kid: bytes
    alg: int | None
    certificate: dict[str, Any]
    signed_data: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    raw: str = field(repr=False)

    @property
    def key_id(self) -> str:
        return base64.b64encode(self.kid).decode("ascii")


def classify(payload: bytes) -> str | None:
    """``2d-doc``, ``dcc`` or None for any other barcode."""
    if payload.startswith(b"DC") and len(payload) >= 22:
        return "2d-doc"
    if payload.startswith((b"HC1:", b"hc1:")):
        return "dcc"
    return None


# --- 2D-DOC ------------------------------------------------------------------------------------

def _day(hex4: str) -> str | None:
    if hex4.upper() == "FFFF":
        return None
    try:
        return (EPOCH + timedelta(days=int(hex4, 16))).isoformat()
    except ValueError as exc:
        raise BarcodeError(f"date d'en-tête illisible : {hex4!r}") from exc


def parse_2ddoc(payload: bytes) -> TwoDDoc:
    if len(payload) > MAX_PAYLOAD:
        raise BarcodeError("2D-DOC trop long")
    try:
        text = payload.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BarcodeError("2D-DOC illisible") from exc
    version = text[2:4]
    size = _HEADER_LENGTH.get(version)
    if size is None:
        raise BarcodeError(f"version de 2D-DOC inconnue : {version!r}")
    header = text[:size]
    if len(header) < size or not header.isascii() or not header.isalnum():
        raise BarcodeError("en-tête de 2D-DOC incomplet")
    us = payload.find(bytes([US]), size)
    if us < 0:
        raise BarcodeError("2D-DOC sans signature (séparateur US absent)")
    doc_type = header[20:22]
    fields = _fields(text[size:us], doc_type)
    tail = text[us + 1 :]
    for stop in (chr(GS), chr(RS)):  # an annex may follow the signature
        tail = tail.split(stop, 1)[0]
    signature = b32decode(tail.strip().upper())
    return TwoDDoc(
        version=version, ca_id=header[4:8], cert_id=header[8:12], issued=_day(header[12:16]),
        signed=_day(header[16:20]), doc_type=doc_type,
        perimeter=header[22:24] if size >= 24 else None, country=header[24:26] if size >= 26 else None,
        fields=fields, signed_data=payload[:us], signature=signature, raw=payload,
    )


_STOPS = (chr(GS), chr(RS))
_STOP = re.compile("[\x1d\x1e]")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: RFC 4648 base32 letters → the digits ``int(..., 32)`` reads (``A`` → ``0`` … ``7`` → ``v``).
_B32_DIGITS = str.maketrans(_B32, "0123456789abcdefghijklmnopqrstuv")
_B32_PLAIN = re.compile("[A-Z2-7]*")
#: Characters left in an unpadded base32 text's last block → bytes they give (other counts are invalid).
_B32_TAIL = {0: 0, 2: 1, 4: 2, 5: 3, 7: 4}


def b32decode(text: str) -> bytes:
    """Base32 (RFC 4648, padding optional) as :func:`base64.b32decode` reads it, without its
    Python loop over every block: the letters become one big base-32 number. Raises BarcodeError."""
    bare = text.rstrip("=")
    tail = _B32_TAIL.get(len(bare) % 8)
    if tail is not None and _B32_PLAIN.fullmatch(bare) and (len(text) == len(bare) or len(text) % 8 == 0):
        if not bare:
            return b""
        size = len(bare) // 8 * 5 + tail
        return (int(bare.translate(_B32_DIGITS), 32) >> (len(bare) * 5 - size * 8)).to_bytes(size, "big")
    try:  # anything unusual: the standard library's checks and messages
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError) as exc:
        raise BarcodeError("signature du 2D-DOC illisible (base32)") from exc


def _fields(message: str, doc_type: str) -> dict[str, str]:
    """The ``<id><value>`` fields of a 2D-DOC message (the part between header and US)."""
    out: dict[str, str] = {}
    at = 0
    while at < len(message):
        fid = message[at : at + 2]
        at += 2
        spec = B2_FIELDS.get(fid) if doc_type == "B2" else None
        if spec is None:
            raise BarcodeError(f"champ de 2D-DOC inconnu : {fid!r} (type {doc_type})")
        low, high, _ = spec
        if low == high:
            value = message[at : at + high]
            if len(value) != high:
                raise BarcodeError(f"champ {fid} tronqué")
            at += high
            if at < len(message) and message[at] in _STOPS:
                at += 1  # a (needless) terminator after a fixed-length value
        else:
            stop = _STOP.search(message, at, at + high)
            end = stop.start() if stop else min(at + high, len(message))
            value = message[at:end]
            at = end + 1 if end < len(message) and message[end] in _STOPS else end
            if len(value) < low:
                raise BarcodeError(f"champ {fid} trop court")
        if fid in out:
            raise BarcodeError(f"champ {fid} répété")
        out[fid] = value
    return out


# --- EU DCC ------------------------------------------------------------------------------------

_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
#: Byte → base45 value, 0xFF for a byte that is not in the alphabet.
_B45_TABLE = bytes(_B45.index(chr(b)) if chr(b) in _B45 else 0xFF for b in range(256))


def b45decode(text: str) -> bytes:
    """RFC 9285 base45: every 3 characters give 2 bytes (c + 45·d + 45²·e), 2 final ones give 1."""
    try:
        values = text.encode("ascii").translate(_B45_TABLE)
    except UnicodeEncodeError as exc:
        raise BarcodeError("base45 invalide (caractère)") from exc
    if 0xFF in values:
        raise BarcodeError("base45 invalide (caractère)")
    full, rest = divmod(len(values), 3)
    if rest == 1:
        raise BarcodeError("base45 invalide (longueur)")
    end = full * 3
    # Every group's c + 45·d + 2025·e at once, without a Python loop: c, d and e each go into
    # 32-bit little-endian lanes of one big integer; the lanes then hold the groups' values
    # (at most 91,124: no carry into the next lane), two bytes each once checked (≤ 0xFFFF).
    lanes = []
    for column in range(3):
        spread = bytearray(4 * full)
        spread[0::4] = values[column:end:3]
        lanes.append(int.from_bytes(spread, "little"))
    total = (lanes[0] + 45 * lanes[1] + 2025 * lanes[2]).to_bytes(4 * full, "little")
    if any(total[2::4]):
        raise BarcodeError("base45 invalide")
    pairs = bytearray(2 * full)
    pairs[0::2], pairs[1::2] = total[1::4], total[0::4]  # big-endian, as the text is read
    out = bytes(pairs)
    if rest == 2:
        n = values[end] + 45 * values[end + 1]
        if n > 0xFF:
            raise BarcodeError("base45 invalide")
        out += bytes([n])
    return out


def parse_hc1(payload: bytes) -> Dcc:
    import cbor2

    if len(payload) > MAX_PAYLOAD:
        raise BarcodeError("code DCC trop long")
    text = payload.decode("ascii", errors="replace")[4:]
    data = b45decode(text)
    if data[:1] == b"\x78":  # zlib header; uncompressed is allowed by the specification
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, MAX_INFLATED)
        except zlib.error as exc:
            raise BarcodeError("compression du DCC invalide") from exc
        if inflater.unconsumed_tail:
            raise BarcodeError("DCC trop volumineux une fois décompressé")
    try:
        cose = cbor2.loads(data)
        if isinstance(cose, cbor2.CBORTag):
            if cose.tag != 18:
                raise BarcodeError(f"COSE inattendu (étiquette {cose.tag})")
            cose = cose.value
        if not isinstance(cose, (list, tuple)) or len(cose) != 4:
            raise BarcodeError("COSE_Sign1 attendu")
        protected_bytes, unprotected, content, signature = cose
        if not isinstance(protected_bytes, bytes) or not isinstance(content, bytes) or not isinstance(signature, bytes):
            raise BarcodeError("COSE_Sign1 mal formé")
        protected = cbor2.loads(protected_bytes) if protected_bytes else {}
        if not isinstance(protected, Mapping) or not isinstance(unprotected, Mapping):
            raise BarcodeError("en-têtes COSE mal formés")
        kid = protected.get(4, unprotected.get(4))
        if not isinstance(kid, bytes):
            raise BarcodeError("DCC sans identifiant de clé (kid)")
        claims = cbor2.loads(content)
        hcert = claims.get(-260, {}) if isinstance(claims, Mapping) else None
        hcert = hcert.get(1) if isinstance(hcert, Mapping) else None
        if not isinstance(hcert, Mapping):
            raise BarcodeError("DCC sans certificat (claim -260)")
        signed = cbor2.dumps(["Signature1", protected_bytes, b"", content])
    except BarcodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any CBOR failure means "not a DCC"
        raise BarcodeError(f"DCC illisible ({type(exc).__name__})") from exc
    alg = protected.get(1)
    return Dcc(kid=kid, alg=alg if isinstance(alg, int) else None, certificate=_plain(hcert),
               signed_data=signed, signature=signature, raw=payload.decode("ascii", errors="replace"))


def _plain(value: Any, depth: int = 0) -> Any:
    """Decoded CBOR as plain JSON-like values (maps with text keys, lists, text, numbers)."""
    if depth > 8:
        raise BarcodeError("DCC trop imbriqué")
    kind = type(value)
    if kind is str or kind is int or value is None:  # the common cases first, without ABC checks
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _plain(v, depth + 1) for k, v in value.items()}
    if kind is list:
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def dcc_test(hcert: dict[str, Any]) -> dict[str, Any] | None:
    """The first test entry ``t[0]`` of a DCC, or None (a vaccination or recovery certificate)."""
    tests = hcert.get("t")
    return tests[0] if isinstance(tests, list) and tests and isinstance(tests[0], dict) else None
