"""Find the Data Matrix and QR codes of a certificate PDF's first pages, cheaply.

Step 0 runs in the parse-pool worker itself, which is bounded in time and memory (see
:mod:`helper.parse.pdftext`, step 1); the rest only inside the bounded PDF child
(:mod:`helper.parse.pdfworker`, time and memory limits), when step 0 found nothing. Rendering
a whole page costs some 20 ms, and even loading a page with pdfium some 0.5 ms; a barcode embedded
as an image is read from its own pixels in well under a millisecond. So, step by step:

0. Fast path, without pdfium (:func:`fast_payloads`): the PDF's bytes are scanned once for image
   XObject streams (``/Subtype /Image``; at most :data:`MAX_CANDIDATES` places looked at, at most
   :data:`MAX_IMAGES` images decoded). An image is taken only when it is plain: its object's own
   flat dictionary, direct ``/Width`` and ``/Height`` (at most :data:`MAX_IMAGE_PIXELS` pixels),
   ``/BitsPerComponent`` 8 (or 1 for grey), ``/ColorSpace`` ``/DeviceGray`` or ``/DeviceRGB``,
   no filter or ``/FlateDecode`` alone, no ``/DecodeParms`` (predictor), ``/Decode`` or
   ``/ImageMask``. Its stream (at most :data:`MAX_STREAM_BYTES`) is inflated to at most the
   image's own size (a zlib bomb stops there; a stream cut short is not taken), and its pixels are
   read as a generated ("pure") code, the quickest way: cut at mid-grey, upright, not inverted (a
   code this misses is still looked for, every way, by the steps below). If that gave a 2D-DOC or a DCC, that is the answer;
   otherwise everything below runs as if this step had not been tried.
   Known limit: this step reads images wherever they are in the file, also one no page draws (an
   unused object, an old revision kept by an incremental update). Such a code is no easier to
   forge: it must still carry a valid signature from the trust list and agree with the mail.

Then, with pdfium, page by page (at most :data:`BARCODE_PAGES`):

1. pdfium loads the page and lists its objects, inside form XObjects too: the images, and how many
   segments the vector drawing (paths) has in all.
2. Each image (at most :data:`MAX_IMAGES`; one over :data:`MAX_IMAGE_PIXELS` is not decoded) is read
   at its native resolution, without rendering anything: every image first as a generated ("pure")
   code, the fastest; only if that gave no 2D-DOC or DCC, every image again with the general
   detector. Only Data Matrix and QR codes are looked for.
3. When no image held a 2D-DOC or DCC, the page is rendered (grayscale, :data:`RENDER_DPI`, never more than
   :data:`MAX_PIXELS` pixels) and read only if it could hold a code the images did not show: its
   paths have at least :data:`MIN_SEGMENTS` segments (a code drawn as vector rectangles), or an
   image was too big to decode on its own. A page of text, rules and a logo image is not rendered:
   it has no barcode, and the certificate comes out "unverifiable" (no barcode).
4. Once a page gave a 2D-DOC or a DCC, the next pages are not looked at.

Known limit: a code printed with a barcode *font* (glyphs, not paths or images) is not found.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from helper.parse.barcodes import classify

#: Pages looked at, images decoded per page, largest image decoded on its own (pixels).
BARCODE_PAGES = 2
MAX_IMAGES = 16
MAX_IMAGE_PIXELS = 4_000_000
#: Fewest path segments that may draw a code (a 10×10 Data Matrix is ~50 modules, 4+ segments each).
MIN_SEGMENTS = 100
#: Resolution of the fallback render (a 2D-DOC module of 0.5 mm is 3 pixels), and its pixel bound.
RENDER_DPI = 150
MAX_PIXELS = 16_000_000


def payloads(data: bytes, *, fast: bool = True) -> list[bytes]:
    """The bytes of every Data Matrix and QR code found (an unreadable PDF simply has none);
    ``fast=False``: step 0 was already tried (by the parse worker, :mod:`helper.parse.pdftext`)."""
    found = fast_payloads(data) if fast else []
    if signed(found):
        return found
    import pypdfium2 as pdfium  # only now: a child that never needs pdfium starts faster

    found = []
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception:  # noqa: BLE001 - pdfium cannot open it: no barcode
        return found
    try:
        for index in range(min(len(pdf), BARCODE_PAGES)):
            _read_page(pdf[index], found)
            if signed(found):  # the codes are on one page: do not look at the next one
                break
    except Exception:  # noqa: BLE001 - a page pdfium cannot read has no readable barcode
        return found
    finally:
        pdf.close()
    return found


def _read_page(page: Any, found: list[bytes]) -> None:
    import pypdfium2.raw as raw

    segments, images, too_big = 0, [], False
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE, raw.FPDF_PAGEOBJ_PATH)):
        if obj.type == raw.FPDF_PAGEOBJ_PATH:
            if segments < MIN_SEGMENTS:
                segments += max(0, raw.FPDFPath_CountSegments(obj))
        elif len(images) < MAX_IMAGES:
            width, height = obj.get_px_size()
            if width * height > MAX_IMAGE_PIXELS:
                too_big = True
            elif width >= 8 and height >= 8:
                images.append(obj)
    for pure in (True, False):  # generated codes first, on every image; the slower detector after
        for obj in images:
            _decode(obj.get_bitmap(render=False), found, pure=pure)
        if signed(found):
            return
    if segments < MIN_SEGMENTS and not too_big:
        return
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return
    scale = min(RENDER_DPI / 72, (MAX_PIXELS / (width * height)) ** 0.5)
    _decode(page.render(scale=scale, grayscale=True), found, pure=False)


def signed(found: list[bytes]) -> bool:
    """Is one of the codes a 2D-DOC or a DCC (not some other Data Matrix or QR code)?"""
    return any(classify(payload) for payload in found)


def _decode(bitmap: Any, found: list[bytes], *, pure: bool) -> None:
    """Add the codes of a pdfium ``bitmap`` to ``found`` (see :func:`_decode_pixels`)."""
    _decode_pixels(memoryview(bitmap.buffer).cast("B"), bitmap.width, bitmap.height, bitmap.n_channels,
                   found, pure=pure, stride=bitmap.stride, bgr=True)


def _decode_pixels(pixels: Any, width: int, height: int, channels: int, found: list[bytes], *, pure: bool,
                   stride: int = 0, bgr: bool = False, fixed: bool = False) -> None:
    """Add the codes of an image to ``found``, read as a generated code alone (``pure``: fast, for
    an embedded image; ``fixed``: its pixels cut at mid-grey, upright, not inverted: the fastest)
    or searched for anywhere in it. Grey, RGB (``bgr``: BGR, BGRA) pixels."""
    import zxingcpp

    if bgr:
        kind = {1: zxingcpp.ImageFormat.Lum, 3: zxingcpp.ImageFormat.BGR, 4: zxingcpp.ImageFormat.BGRA}.get(channels)
    else:
        kind = {1: zxingcpp.ImageFormat.Lum, 3: zxingcpp.ImageFormat.RGB}.get(channels)
    if kind is None:
        return
    view = zxingcpp.ImageView(pixels, width, height, kind, stride or width * channels, channels)
    formats = (zxingcpp.BarcodeFormat.DataMatrix, zxingcpp.BarcodeFormat.QRCode)
    if pure and fixed:  # a generated code's pixels are black or white: no local thresholds, no retries
        results = zxingcpp.read_barcodes(view, formats=formats, is_pure=True, binarizer=zxingcpp.Binarizer.FixedThreshold,
                                         try_rotate=False, try_invert=False, try_downscale=False)
    elif pure:
        results = zxingcpp.read_barcodes(view, formats=formats, is_pure=True)
    else:
        results = zxingcpp.read_barcodes(view, formats=formats, try_rotate=False, try_invert=False)
    for result in results:
        if result.valid and result.bytes not in found:
            found.append(bytes(result.bytes))


# --- fast path: image streams read straight from the PDF bytes ----------------------------------

#: Candidate ``/Subtype /Image`` places looked at, bytes around one that its dictionary may span,
#: and the largest compressed stream taken (a barcode image is a few KB).
MAX_CANDIDATES = 64
DICT_WINDOW = 2048
MAX_STREAM_BYTES = 1024 * 1024

_IMAGE = re.compile(rb"/Subtype\s*/Image(?![^\s/<>\[\]()%{}])")
_TOKEN = re.compile(rb"/[^\s/<>\[\]()%{}]*|\[|\]|[^\s/<>\[\]()%{}]+")
_SPACE = b" \t\r\n\f\0"
_NESTED = re.compile(rb"[<>(){}%]")
_CHANNELS = {b"/DeviceGray": 1, b"/DeviceRGB": 3}
_FLATE = (None, b"/FlateDecode", (b"/FlateDecode",))
#: For 1-bit images (0 is black in DeviceGray): per bit position, byte → that bit's pixel (0 or 255).
_BIT_PIXELS = [bytes(255 if (b >> (7 - i)) & 1 else 0 for b in range(256)) for i in range(8)]


def fast_payloads(data: bytes) -> list[bytes]:
    """The codes of the PDF's plain image streams, read as generated codes (step 0 of the module
    docstring); empty when no image could be taken this way or none held a code."""
    found: list[bytes] = []
    images = 0
    for count, match in enumerate(_IMAGE.finditer(data)):
        if count >= MAX_CANDIDATES or images >= MAX_IMAGES:
            break
        image = _stream_image(data, match.start(), match.end())
        if image is None:
            continue
        images += 1
        pixels, width, height, channels, stride = image
        _decode_pixels(pixels, width, height, channels, found, pure=True, fixed=True, stride=stride)
    return found


def _stream_image(data: bytes, at: int, after: int) -> tuple[bytes | memoryview, int, int, int, int] | None:
    """The pixels of the image XObject whose ``/Subtype /Image`` is at ``at`` (pixels, width,
    height, channels, bytes a row), or None when it is not a plain one (see the module docstring)
    or its stream is cut short."""
    start = data.rfind(b"<<", max(0, at - DICT_WINDOW), at)
    end = data.find(b">>", after, after + DICT_WINDOW)
    if start < 0 or end < 0 or _NESTED.search(data, start + 2, end):
        return None  # not one flat dictionary (no nested one, string, comment or procedure)
    if not data[max(0, start - 32) : start].rstrip(_SPACE).endswith(b"obj"):
        return None  # not an object's own dictionary (a stream must be one)
    body = data[start + 2 : end]
    entries = _entries(_TOKEN.findall(body))
    if entries is None or not _plain(entries):
        return None
    width, height = int(entries[b"/Width"]), int(entries[b"/Height"])  # type: ignore[arg-type]
    bits, channels = int(entries[b"/BitsPerComponent"]), _CHANNELS[entries[b"/ColorSpace"]]  # type: ignore[arg-type,index]
    if width < 8 or height < 8 or width * height > MAX_IMAGE_PIXELS or (bits == 1 and channels != 1):
        return None
    row = (width + 7) // 8 if bits == 1 else width * channels
    size = row * height
    raw = _stream_bytes(data, end + 2, entries.get(b"/Length"))
    if raw is None:
        return None
    if entries.get(b"/Filter") is None:
        pixels = raw[:size]  # a view into the PDF's bytes: a 160×160 logo is 25 KB, not copied
    else:
        try:
            pixels = zlib.decompressobj().decompress(raw, size)  # never more than the image's size
        except zlib.error:
            return None
    if len(pixels) < size:
        return None  # truncated
    if bits == 1:  # one byte a pixel; each row keeps its padding bits, past the width (the stride)
        spread, packed = bytearray(8 * size), bytes(pixels)
        for i, table in enumerate(_BIT_PIXELS):
            spread[i::8] = packed.translate(table)
        return bytes(spread), width, height, 1, 8 * row
    return pixels, width, height, channels, row


def _entries(tokens: list[bytes]) -> dict[bytes, object] | None:
    """A flat dictionary's entries: a name, a number, an array of plain tokens, or ``R`` for an
    indirect reference; None when a key repeats or the tokens are not key/value pairs."""
    out: dict[bytes, object] = {}
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if not key.startswith(b"/") or key in out or i + 1 >= len(tokens):
            return None
        value = tokens[i + 1]
        if value == b"[":
            try:
                close = tokens.index(b"]", i + 2)
            except ValueError:
                return None
            out[key], i = tuple(tokens[i + 2 : close]), close + 1
        elif value.isdigit() and tokens[i + 2 : i + 3] and tokens[i + 2].isdigit() and tokens[i + 3 : i + 4] == [b"R"]:
            out[key], i = b"R", i + 4
        elif value == b"]":
            return None
        else:
            out[key], i = value, i + 2
    return out


def _plain(entries: dict[bytes, object]) -> bool:
    """Grey or RGB, 8 bits (or 1-bit grey), deflated or not, no predictor, decode array or mask."""
    numbers = (entries.get(b"/Width"), entries.get(b"/Height"), entries.get(b"/BitsPerComponent"))
    return (all(isinstance(n, bytes) and n.isdigit() and len(n) <= 6 for n in numbers)
            and entries[b"/BitsPerComponent"] in (b"1", b"8") and entries.get(b"/ColorSpace") in _CHANNELS
            and entries.get(b"/Filter") in _FLATE and b"/DecodeParms" not in entries
            and b"/Decode" not in entries and b"/ImageMask" not in entries)


def _stream_bytes(data: bytes, after_dict: int, length: object) -> memoryview | None:
    """The stream's bytes: ``/Length`` of them when it is direct and ``endstream`` follows, else
    up to ``endstream`` (at most :data:`MAX_STREAM_BYTES`); None when the stream is cut short."""
    at = after_dict
    while at < len(data) and data[at] in _SPACE:
        at += 1
    if not data.startswith(b"stream", at):
        return None
    at += 6
    at += 2 if data.startswith(b"\r\n", at) else 1 if data.startswith(b"\n", at) else 0
    if isinstance(length, bytes) and length.isdigit() and int(length) <= MAX_STREAM_BYTES:
        end = at + int(length)
        if data[end : end + 32].lstrip(_SPACE).startswith(b"endstream"):
            return memoryview(data)[at:end]  # not copied
    end = data.find(b"endstream", at, at + MAX_STREAM_BYTES)
    return memoryview(data)[at:end] if end >= 0 else None
