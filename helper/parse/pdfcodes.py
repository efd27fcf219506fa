"""Find the Data Matrix and QR codes of a certificate PDF's first pages, cheaply.

Runs inside the bounded PDF child (:mod:`helper.parse.pdfworker`, time and memory limits). Rendering
a whole page costs some 20 ms; a barcode embedded as an image is read from its own pixels in well
under a millisecond. So, page by page (at most :data:`BARCODE_PAGES`), step by step:

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


def payloads(data: bytes) -> list[bytes]:
    """The bytes of every Data Matrix and QR code found (an unreadable PDF simply has none)."""
    import pypdfium2 as pdfium

    found: list[bytes] = []
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception:  # noqa: BLE001 - pdfium cannot open it: no barcode
        return found
    try:
        for index in range(min(len(pdf), BARCODE_PAGES)):
            _read_page(pdf[index], found)
            if _signed(found):  # the codes are on one page: do not look at the next one
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
        if _signed(found):
            return
    if segments < MIN_SEGMENTS and not too_big:
        return
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return
    scale = min(RENDER_DPI / 72, (MAX_PIXELS / (width * height)) ** 0.5)
    _decode(page.render(scale=scale, grayscale=True), found, pure=False)


def _signed(found: list[bytes]) -> bool:
    """Is one of the codes a 2D-DOC or a DCC (not some other Data Matrix or QR code)?"""
    return any(classify(payload) for payload in found)


def _decode(bitmap: Any, found: list[bytes], *, pure: bool) -> None:
    """Add the codes of ``bitmap`` to ``found``, read as a generated code alone (``pure``: fast,
    for an embedded image) or searched for anywhere in it."""
    import zxingcpp

    channels = bitmap.n_channels
    kind = {1: zxingcpp.ImageFormat.Lum, 3: zxingcpp.ImageFormat.BGR, 4: zxingcpp.ImageFormat.BGRA}.get(channels)
    if kind is None:
        return
    view = zxingcpp.ImageView(memoryview(bitmap.buffer).cast("B"), bitmap.width, bitmap.height, kind,
                              bitmap.stride, channels)
    formats = (zxingcpp.BarcodeFormat.DataMatrix, zxingcpp.BarcodeFormat.QRCode)
    if pure:
        results = zxingcpp.read_barcodes(view, formats=formats, is_pure=True)
    else:
        results = zxingcpp.read_barcodes(view, formats=formats, try_rotate=False, try_invert=False)
    for result in results:
        if result.valid and result.bytes not in found:
            found.append(bytes(result.bytes))
