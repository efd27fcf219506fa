"""The barcode reader's fast path (helper/parse/pdfcodes.py, step 0): plain image streams are read
straight from the PDF bytes, without pdfium; any image it does not take is still read by pdfium,
and hostile image streams (huge sizes, zlib bombs, streams cut short) stay bounded.

PDFs are built at test time (tests/barcodegen.py): real Data Matrix and QR codes drawn by zxing-cpp,
signed with keys made by ``cryptography``, stored in the image encodings PDF producers use.
"""

from __future__ import annotations

import random
import time
import tracemalloc
import zlib
from pathlib import Path

import barcodegen as bg
import mailgen
import pypdfium2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helper.parse import barcodes, pdfcodes, pdftext
from helper.parse.message import ParseConfig, parse_message
from helper.parse.trust import TrustPolicy

SIGNER = bg.Signer.new()
GREY = b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode"


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    return bg.write_trust_list(tmp_path / "liste-de-confiance", SIGNER)


@pytest.fixture
def pdfium_opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per PDF pdfium is asked to open in this process."""
    calls: list[int] = []
    real = pypdfium2.PdfDocument

    def counted(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(pypdfium2, "PdfDocument", counted)
    return calls


def verification(spec: mailgen.CertSpec, pdf: bytes, trust_dir: Path) -> dict:
    """What ingest records: the PDF read in the bounded reader child, checked, cross-checked."""
    pol = TrustPolicy(verify_barcodes=True, barcode_trust_list=str(trust_dir))
    [outcome] = parse_message(mailgen.make_message(spec, pdf=pdf), ParseConfig(trust=pol))
    assert outcome.certificate is not None, outcome
    return outcome.certificate.verification


def kinds(found: list[bytes]) -> list[str | None]:
    return [barcodes.classify(p) for p in found]


@pytest.mark.parametrize("image", ["flate", "raw", "bits1", "rgb", "indirect", "form"])
def test_plain_image_streams_are_read_without_pdfium(image: str, trust_dir: Path, pdfium_opens: list) -> None:
    spec = bg.spec_for(31)
    pdf = bg.certificate_pdf(spec, SIGNER, logo=True, image=image)
    found = pdfcodes.payloads(pdf)
    assert kinds(found) == ["2d-doc", "dcc"] and pdfium_opens == []
    assert found[0].split(b"\x1f")[0] == bg.twoddoc(spec, SIGNER).split(b"\x1f")[0]
    assert verification(spec, pdf, trust_dir)["status"] == "verified"


@pytest.mark.parametrize("image", ["png", "hex", "form+png", "rgb+png"])
def test_images_the_fast_path_does_not_take_are_still_verified_through_pdfium(
        image: str, trust_dir: Path, pdfium_opens: list) -> None:
    """A PNG predictor, a filter chain, or either inside a form XObject: pdfium reads them."""
    spec = bg.spec_for(32)
    pdf = bg.certificate_pdf(spec, SIGNER, logo=True, image=image)
    assert pdfcodes.fast_payloads(pdf) == []
    assert kinds(pdfcodes.payloads(pdf)) == ["2d-doc", "dcc"] and pdfium_opens == [1]
    assert verification(spec, pdf, trust_dir)["status"] == "verified"
    flipped = bg.certificate_pdf(spec, SIGNER, image=image, flip=True)
    assert verification(spec, flipped, trust_dir)["status"] == "invalid_signature"


def test_a_plain_image_without_signed_code_does_not_stop_the_pdfium_path(trust_dir: Path, pdfium_opens: list) -> None:
    """The fast path finds some other Data Matrix only (a plain image): the certificate's own codes,
    stored with a predictor, are still found by pdfium and verified."""
    spec = bg.spec_for(33)
    lot = b"LOT 2021-06 REACTIF 42"
    pdf = bg.pdf_with_barcodes(mailgen.pdf_text_lines(spec), [lot, bg.twoddoc(spec, SIGNER)], [bg.hc1(spec, SIGNER)],
                               image=["flate", "png", "png"])
    assert pdfcodes.fast_payloads(pdf) == [lot]
    assert kinds(pdfcodes.payloads(pdf)) == [None, "2d-doc", "dcc"] and pdfium_opens == [1]
    assert verification(spec, pdf, trust_dir)["status"] == "verified"


def test_a_huge_declared_image_is_not_decoded_and_stays_within_the_pdf_bound(trust_dir: Path) -> None:
    spec = bg.spec_for(34)
    pdf = bg.pdf_with_image(b"/Width 100000 /Height 100000 " + GREY, zlib.compress(b"\xff" * 4096))
    assert pdfcodes.fast_payloads(pdf) == []
    start = time.monotonic()
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS
    assert info is not None and info.barcodes == []  # the child answered: nothing read
    v = verification(spec, pdf, trust_dir)
    assert v["status"] == "unverifiable" and "aucun code-barres" in v["detail"]


def _bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (some 1,000 to 1): built by chunks, never held whole."""
    packer, chunk = zlib.compressobj(9), bytes(1024 * 1024)
    return b"".join(packer.compress(chunk) for _ in range(size // len(chunk))) + packer.flush()


def test_a_zlib_bomb_image_is_inflated_only_to_its_declared_size(trust_dir: Path) -> None:
    spec = bg.spec_for(35)
    bomb = _bomb(512 * 1024 * 1024)  # 512 MiB once inflated, the reader child's whole memory limit
    pdf = bg.pdf_with_image(b"/Width 2000 /Height 2000 " + GREY, bomb)  # declares 4 MB of pixels
    tracemalloc.start()
    try:
        assert pdfcodes.fast_payloads(pdf) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024  # the 4 MB image and its stream, not the 512 MiB
    start = time.monotonic()
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS
    assert info is not None and info.barcodes == []
    assert verification(spec, pdf, trust_dir)["status"] == "unverifiable"


def test_a_stream_cut_short_is_not_read_from_its_partial_pixels(trust_dir: Path) -> None:
    spec = bg.spec_for(36)
    pdf = bg.certificate_pdf(spec, SIGNER, dcc=True)
    first, second = (m for m in _image_streams(pdf))
    in_qr = pdf[: second + 200]  # the Data Matrix whole, the QR code's stream cut
    assert kinds(pdfcodes.fast_payloads(in_qr)) == ["2d-doc"]
    in_dm = pdf[: first + 100]  # cut inside the first image: nothing is whole
    assert pdfcodes.fast_payloads(in_dm) == []
    start = time.monotonic()
    v = verification(spec, in_dm, trust_dir)
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS
    assert v["status"] == "unverifiable"


def _image_streams(pdf: bytes) -> list[int]:
    """Where each image's stream data starts."""
    out, at = [], 0
    while (at := pdf.find(b"/Subtype /Image", at)) >= 0:
        at = pdf.index(b"stream\n", at) + len(b"stream\n")
        out.append(at)
    return out


def test_many_image_markers_are_looked_at_a_bounded_number_of_times() -> None:
    head = b"1 0 obj\n<< /Type /XObject /Subtype /Image /Width 46 /Height 46 " + GREY + b" /Length 9 >>\nstream\n"
    noise = (head + b"xxxxxxxxx\nendstream\nendobj\n") * 20_000 + b"/Subtype /Image " * 200_000
    start = time.monotonic()
    assert pdfcodes.fast_payloads(noise) == []
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS


_BASE = bg.certificate_pdf(bg.spec_for(37), SIGNER, logo=True)
_TOKENS = [b"<<", b">>", b"stream\n", b"endstream", b"/Width 99999", b"/Height 0", b"/Filter /FlateDecode",
           b"/Subtype /Image", b"/Length 999999", b"/Length 3 0 R", b"obj", b"[", b"]", b"/BitsPerComponent 1"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, len(_TOKENS)), st.integers(0, 255)), max_size=8),
       st.floats(0.05, 1))
def test_mutated_pdfs_never_break_the_scanner(edits: list[tuple[float, int, int]], keep: float) -> None:
    data = bytearray(_BASE)
    for where, token, value in edits:
        at = int(where * (len(data) - 1))
        if token == len(_TOKENS):
            data[at] ^= value or 1
        else:
            data[at:at] = _TOKENS[token]
    found = pdfcodes.fast_payloads(bytes(data[: max(1, int(len(data) * keep))]))
    assert isinstance(found, list) and all(isinstance(p, bytes) for p in found)
    assert len(found) <= pdfcodes.MAX_IMAGES


def test_random_bytes_around_image_markers_never_break_the_scanner() -> None:
    rng = random.Random(38)
    for _ in range(200):
        parts = [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(6)]
        data = b"obj << /Subtype /Image".join(parts) + rng.choice([b"", b">>\nstream\n", b"endstream"])
        assert pdfcodes.fast_payloads(data) == []
