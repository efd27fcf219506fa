"""Signed 2D-DOC and EU DCC barcodes drawn into certificate PDFs, for tests.

Keys are made at test time with ``cryptography``; the barcodes are drawn by zxing-cpp as
images and embedded in a hand-built PDF next to the certificate's text (as in mailgen), so the
helper has to render the page and read the codes as it would on a real certificate.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import unicodedata
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2
import mailgen
import zxingcpp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from mailgen import CertSpec, _pdf_string, pdf_text_lines

GS, US = "\x1d", "\x1f"
_ICAO = str.maketrans({"Ä": "AE", "Ö": "OE", "Ü": "UE", "ß": "SS", "Œ": "OE", "Æ": "AE"})


def translit(text: str) -> str:
    """A–Z as barcodes write names (independent of the helper's own code)."""
    text = unicodedata.normalize("NFC", text).upper().translate(_ICAO)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if "A" <= c <= "Z" else (" " if c in " -" else "") for c in text).strip()


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    ca: str = "FR01"
    cert: str = "TS01"
    kid: bytes = b"testkid1"

    @classmethod
    def new(cls, **kw: object) -> Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()), **kw)  # type: ignore[arg-type]

    @classmethod
    def load(cls, private_pem: bytes, **kw: object) -> Signer:
        """A signer from :meth:`private_pem` (benchmarks keep their corpus and its key for days)."""
        return cls(serialization.load_pem_private_key(private_pem, None), **kw)  # type: ignore[arg-type]

    def private_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def raw_sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def write_trust_list(folder: Path, *signers: Signer, bulk: bool = False) -> Path:
    """The trust-list folder layout documented in docs/verification.md."""
    (folder / "2d-doc").mkdir(parents=True, exist_ok=True)
    (folder / "dcc").mkdir(parents=True, exist_ok=True)
    if bulk:
        (folder / "2d-doc.json").write_text(json.dumps({s.ca + s.cert: s.pem().decode() for s in signers}))
        (folder / "dcc.json").write_text(json.dumps({base64.b64encode(s.kid).decode(): s.pem().decode() for s in signers}))
        return folder
    for s in signers:
        (folder / "2d-doc" / f"{s.ca}{s.cert}.pem").write_bytes(s.pem())
        kid = base64.urlsafe_b64encode(s.kid).decode().rstrip("=")
        (folder / "dcc" / f"{kid}.pem").write_bytes(s.pem())
    return folder


def _hexday(d: datetime.date) -> str:
    return f"{(d - datetime.date(2000, 1, 1)).days:04X}"


def twoddoc(spec: CertSpec, signer: Signer, *, result: str | None = None, flip: bool = False) -> bytes:
    """A 2D-DOC v04 of type B2 for ``spec``, signed by ``signer`` (``flip``: one signature bit changed)."""
    res = result or {"N": "N", "P": "P"}.get(spec.result[:1].upper(), "X")
    day = spec.integrated_at.date()
    header = f"DC04{signer.ca}{signer.cert}{_hexday(day)}{_hexday(day)}B201FR"
    message = (
        f"F0{translit(spec.first_name)}{GS}F1{translit(spec.last_name)}{GS}"
        f"F2{spec.birth_date:%d%m%Y}F3{spec.sex}F4{spec.analysis_code.replace('-', '')}{GS}"
        f"F5{res}F6{spec.sampled_at:%d%m%Y%H%M}"
    )
    data = (header + message).encode("latin-1")
    sig = bytearray(signer.raw_sign(data))
    if flip:
        sig[10] ^= 0x01
    return data + US.encode() + base64.b32encode(bytes(sig)).rstrip(b"=")


_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def b45encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data), 2):
        chunk = data[i : i + 2]
        if len(chunk) == 2:
            n = chunk[0] * 256 + chunk[1]
            c, n = divmod(n, 45 * 45)
            b, a = divmod(n, 45)
            out.append(_B45[a] + _B45[b] + _B45[c])
        else:
            b, a = divmod(chunk[0], 45)
            out.append(_B45[a] + _B45[b])
    return "".join(out)


def hc1(spec: CertSpec, signer: Signer, *, flip: bool = False) -> bytes:
    """An EU DCC test certificate (``HC1:`` text) for ``spec``, ES256-signed by ``signer``."""
    from zoneinfo import ZoneInfo  # mailgen samples are French wall-clock times; the DCC gives UTC

    local = spec.sampled_at.replace(tzinfo=ZoneInfo("Europe/Paris"))
    sc = local.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    negative = spec.result[:1].upper() == "N"
    hcert = {
        "ver": "1.3.0",
        "nam": {"fn": spec.last_name, "fnt": translit(spec.last_name).replace(" ", "<"),
                "gn": spec.first_name, "gnt": translit(spec.first_name).replace(" ", "<")},
        "dob": spec.birth_date.isoformat(),
        "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": sc, "tr": "260415000" if negative else "260373001",
               "tc": "Laboratoire de test", "co": "FR", "is": "Ministère de la Santé",
               "ci": "URN:UVCI:01:FR:TEST" + spec.dossier}],
    }
    claims = {1: "FR", 6: 1624300000, 4: 1655836000, -260: {1: hcert}}
    protected = cbor2.dumps({1: -7, 4: signer.kid})
    payload = cbor2.dumps(claims)
    sig = bytearray(signer.raw_sign(cbor2.dumps(["Signature1", protected, b"", payload])))
    if flip:
        sig[5] ^= 0x80
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, bytes(sig)]))
    return ("HC1:" + b45encode(zlib.compress(cose, 9))).encode("ascii")


def _image(payload: bytes, fmt: zxingcpp.BarcodeFormat) -> tuple[int, int, bytes]:
    img = zxingcpp.create_barcode(payload, fmt).to_image(scale=1)
    view = memoryview(img)
    h, w = view.shape
    return w, h, view.tobytes()


def _rectangles(w: int, h: int, pixels: bytes, side: int, x: int, y: int) -> bytes:
    """The dark modules of a barcode image as filled vector rectangles (runs of a row merged)."""
    unit = side / w
    ops = [b"q 0 g\n"]
    for row in range(h):
        col = 0
        while col < w:
            if pixels[row * w + col] >= 128:
                col += 1
                continue
            start = col
            while col < w and pixels[row * w + col] < 128:
                col += 1
            ops.append(b"%.3f %.3f %.3f %.3f re f\n" % (x + start * unit, y + (h - row - 1) * unit, (col - start) * unit, unit))
    ops.append(b"Q\n")
    return b"".join(ops)


@functools.cache
def _logo_pixels(side: int = 160) -> bytes:
    return bytes((x * 7 + y * 13 + (x * y) % 31) % 256 for y in range(side) for x in range(side))


#: How :func:`pdf_with_barcodes` may store a barcode image, joined with ``+`` (e.g. ``form+png``).
IMAGE_STYLES = ("flate", "raw", "bits1", "rgb", "indirect", "png", "hex", "form")


def _image_object(w: int, h: int, pixels: bytes, style: set[str], next_num: int) -> tuple[bytes, list[bytes]]:
    """The image XObject of a grey barcode image stored as ``style`` says: ``flate`` (default),
    ``raw`` (no filter), ``bits1`` (1 bit per pixel), ``rgb`` (DeviceRGB), ``indirect`` (``/Length``
    in an object of its own, numbered ``next_num``), ``png`` (PNG "Up" predictor rows,
    ``/DecodeParms``), ``hex`` (``[/ASCIIHexDecode /FlateDecode]``). Returns the object and the
    extra objects it refers to."""
    space, bits, parms, filters = b"/DeviceGray", 8, b"", b"/Filter /FlateDecode "
    if "bits1" in style:
        rows = []
        for y in range(h):
            row = pixels[y * w : (y + 1) * w]
            packed = bytearray((w + 7) // 8)
            for x, value in enumerate(row):
                if value >= 128:
                    packed[x // 8] |= 0x80 >> (x % 8)
            rows.append(bytes(packed))
        pixels, bits = b"".join(rows), 1
    elif "rgb" in style:
        pixels, space = bytes(v for p in pixels for v in (p, p, p)), b"/DeviceRGB"
    if "png" in style:  # PNG "Up" filter (2) on every row: each byte minus the one above
        row_size = len(pixels) // h
        rows, above = [], bytes(row_size)
        for y in range(h):
            row = pixels[y * row_size : (y + 1) * row_size]
            rows.append(b"\x02" + bytes((a - b) % 256 for a, b in zip(row, above, strict=True)))
            above = row
        pixels = b"".join(rows)
        parms = b"/DecodeParms << /Predictor 15 /Colors %d /BitsPerComponent %d /Columns %d >> " % (
            3 if space == b"/DeviceRGB" else 1, bits, w)
    data = pixels if "raw" in style else zlib.compress(pixels)
    if "raw" in style:
        filters = b""
    elif "hex" in style:
        data, filters = data.hex().encode() + b">", b"/Filter [/ASCIIHexDecode /FlateDecode] "
    extra: list[bytes] = []
    length = b"%d" % len(data)
    if "indirect" in style:
        extra.append(length)
        length = b"%d 0 R" % next_num
    obj = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent %d "
           b"%s%s/Length %s >>\nstream\n%s\nendstream" % (w, h, space, bits, filters, parms, length, data))
    return obj, extra


def pdf_with_barcodes(lines: list[str], datamatrix: list[bytes] = (), qr: list[bytes] = (),
                      media: tuple[int, int] = (595, 842), *, vector: bool = False,
                      logo: bool = False, image: str | list[str] = "flate", pad_to: int = 0) -> bytes:
    """One-page PDF with ``lines`` of Helvetica text and the barcodes drawn as images (``vector``:
    as filled rectangles, as some PDF producers draw them). ``logo``: a grey photo-like image (not a
    barcode) at the top, as on real certificates. ``image``: how each barcode image is stored
    (:data:`IMAGE_STYLES`, see :func:`_image_object`; ``form``: drawn inside a form XObject), or a
    list of one style per barcode. ``pad_to``: about that many bytes in all, with an embedded font
    program's worth of incompressible bytes (as real certificates embed their fonts)."""
    styles = [set(s.split("+")) for s in ([image] * (len(datamatrix) + len(qr)) if isinstance(image, str) else image)]
    assert all(style <= set(IMAGE_STYLES) for style in styles), image
    images = [(*_image(p, zxingcpp.BarcodeFormat.DataMatrix), 110) for p in datamatrix]
    images += [(*_image(p, zxingcpp.BarcodeFormat.QRCode), 220) for p in qr]
    objs: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"",  # page, filled below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    content = [b"BT\n/F1 9 Tf\n14 TL\n50 790 Td\n"]
    for line in lines:
        content.append(_pdf_string(line) + b" Tj T*\n")
    content.append(b"ET\n")
    xobjects = []
    tops = {110: 620, 220: 620}  # one column of Data Matrix codes, one of QR codes, below the text
    for i, (w, h, pixels, side) in enumerate(images):
        x = 40 if side == 110 else 330
        y = tops[side] - side
        tops[side] = y - 20
        if vector:
            content.append(_rectangles(w, h, pixels, side, x, y))
            continue
        num = len(objs) + 1
        style = styles[i]
        obj, extra = _image_object(w, h, pixels, style, num + 1)
        objs += [obj, *extra]
        if "form" in style:  # the image is drawn by a form XObject (unit square), the form by the page
            draw = b"q 1 0 0 1 0 0 cm /I Do Q"
            objs.append(b"<< /Type /XObject /Subtype /Form /BBox [0 0 1 1] /Resources << /XObject << /I %d 0 R >> >> "
                        b"/Length %d >>\nstream\n%s\nendstream" % (num, len(draw), draw))
            num = len(objs)
        xobjects.append(b"/Im%d %d 0 R" % (i, num))
        content.append(b"q %d 0 0 %d %d %d cm /Im%d Do Q\n" % (side, side * h // w, x, y, i))
    if logo:
        num = len(objs) + 1
        side, pixels = 160, _logo_pixels()
        objs.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                    b"/BitsPerComponent 8 /Length %d >>\nstream\n%s\nendstream" % (side, side, len(pixels), pixels))
        xobjects.append(b"/Logo %d 0 R" % num)
        content.append(b"q 80 0 0 80 480 740 cm /Logo Do Q\n")
    stream = b"".join(content)
    objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objs[2] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 4 0 R >> "
               b"/XObject << %s >> >> /Contents %d 0 R >>" % (*media, b" ".join(xobjects), len(objs)))
    missing = pad_to - len(pdf_file(objs)) - 64 if pad_to else 0
    if missing > 0:
        objs.append(b"<< /Length %d /Length1 %d >>\nstream\n%s\nendstream" % (missing, missing, _font_bytes(missing)))
    return pdf_file(objs)


_FONT_BYTES: dict[int, bytes] = {}


def _font_bytes(size: int) -> bytes:
    """``size`` incompressible bytes, the same for every PDF (cached: generating a corpus stays fast)."""
    found = _FONT_BYTES.get(size)
    if found is None:
        import random

        found = _FONT_BYTES[size] = random.Random(size).randbytes(size)
    return found


def certificate_pdf(spec: CertSpec, signer: Signer | None = None, *, dcc: bool = True,
                    flip: bool = False, extra_dm: list[bytes] = (), **kw: bool | str | int) -> bytes:
    """The certificate PDF of ``spec`` carrying its 2D-DOC (and DCC) signed by ``signer``
    (``vector``, ``logo``, ``image``, ``pad_to``: see :func:`pdf_with_barcodes`)."""
    dm = [twoddoc(spec, signer, flip=flip)] if signer else []
    qr = [hc1(spec, signer, flip=flip)] if signer and dcc else []
    return pdf_with_barcodes(pdf_text_lines(spec), [*dm, *extra_dm], qr, **kw)


def spec_for(seed: int, **kw: object) -> CertSpec:
    """A certificate whose names need transliteration, sampled 10 days ago (within the retention)."""
    import random

    day = datetime.date.today() - datetime.timedelta(days=10)
    base = {"last_name": "O'LEARY-MÜLLER", "first_name": "Zoé",
            "sampled_at": datetime.datetime.combine(day, datetime.time(9, 41)),
            "integrated_at": datetime.datetime.combine(day, datetime.time(15, 2)), "result": "NEGATIF", "sex": "F"}
    base.update(kw)
    return mailgen.random_spec(random.Random(seed), **base)


def verdict_corpus(folder: Path, signer: Signer, stranger: Signer, **kw: object) -> dict[str, CertSpec]:
    """One certificate per verdict as .eml files in ``folder`` (plus a verified one forwarded by an
    unknown mailbox: a duplicate of the verified one). ``mismatch``: the mail says sex M."""
    names = [("verified", "BÉRANGER"), ("mismatch", "D'ALMEIDA"), ("unverifiable", "N'DIAYE"), ("invalid", "LE GALL")]
    specs = {k: spec_for(i, last_name=name, **kw) for i, (k, name) in enumerate(names, 10)}
    messages = [
        mailgen.make_message(specs["verified"], pdf=certificate_pdf(specs["verified"], signer)),
        mailgen.make_message(replace(specs["mismatch"], sex="M"), pdf=certificate_pdf(specs["mismatch"], signer)),
        mailgen.make_message(specs["unverifiable"], pdf=certificate_pdf(specs["unverifiable"], stranger)),
        mailgen.make_message(specs["invalid"], pdf=certificate_pdf(specs["invalid"], signer, flip=True)),
        mailgen.forward(mailgen.make_message(specs["verified"], pdf=certificate_pdf(specs["verified"], signer))),
    ]
    mailgen.write_eml(folder, messages)
    return specs


def pdf_file(objs: list[bytes]) -> bytes:
    """A PDF file of the numbered objects ``objs`` (1 is the catalog), with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def pdf_with_image(dictionary: bytes, stream: bytes, lines: list[str] = ("CERTIFICAT DE TEST COVID-19",)) -> bytes:
    """A one-page PDF drawing one image XObject made of the given dictionary entries (``/Length``
    added) and stream bytes, as they are: for hostile images (huge sizes, zlib bombs)."""
    text = b"BT\n/F1 9 Tf\n14 TL\n50 790 Td\n" + b"".join(_pdf_string(line) + b" Tj T*\n" for line in lines) + b"ET\n"
    content = text + b"q 200 0 0 200 40 400 cm /Im0 Do Q\n"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> "
        b"/XObject << /Im0 5 0 R >> >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /XObject /Subtype /Image %s /Length %d >>\nstream\n%s\nendstream" % (dictionary, len(stream), stream),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    return pdf_file(objs)
