"""How the barcodes of a certificate PDF are found (issue 12): embedded images are read directly,
the page is rendered only when its vector drawing could hold a code, and the reader child keeps the
trust list parsed without missing an update.

PDFs are built at test time (tests/barcodegen.py): real Data Matrix and QR codes drawn by zxing-cpp,
signed with keys made by ``cryptography``, either embedded as images or drawn as filled rectangles.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import barcodegen as bg
import mailgen
import pypdfium2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helper.parse import barcodes, pdfcodes, pdftext
from helper.parse.message import ParseConfig, parse_message
from helper.parse.trust import TrustPolicy

SIGNER = bg.Signer.new()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    return bg.write_trust_list(tmp_path / "liste-de-confiance", SIGNER)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The scales of every page render pdfium is asked for in this process."""
    calls: list[float] = []
    real = pypdfium2.PdfPage.render

    def counted(self, scale=1, **kw):  # noqa: ANN001, ANN202
        calls.append(scale)
        return real(self, scale=scale, **kw)

    monkeypatch.setattr(pypdfium2.PdfPage, "render", counted)
    return calls


def verification(raw: bytes, trust_dir: Path) -> dict:
    pol = TrustPolicy(verify_barcodes=True, barcode_trust_list=str(trust_dir))
    [outcome] = parse_message(raw, ParseConfig(trust=pol))
    assert outcome.certificate is not None, outcome
    return outcome.certificate.verification


def test_barcodes_embedded_as_images_are_read_without_rendering_the_page(trust_dir: Path, renders: list) -> None:
    spec = bg.spec_for(21)
    pdf = bg.certificate_pdf(spec, SIGNER, logo=True)
    found = pdfcodes.payloads(pdf)
    assert [barcodes.classify(p) for p in found] == ["2d-doc", "dcc"] and renders == []
    assert found[0].split(b"\x1f")[0] == bg.twoddoc(spec, SIGNER).split(b"\x1f")[0]  # signatures are randomised
    assert verification(mailgen.make_message(spec, pdf=pdf), trust_dir)["status"] == "verified"


def test_a_barcode_drawn_as_vector_rectangles_verifies_through_the_page_render(trust_dir: Path, renders: list) -> None:
    spec = bg.spec_for(22)
    pdf = bg.certificate_pdf(spec, SIGNER, vector=True, logo=True)
    found = pdfcodes.payloads(pdf)
    assert [barcodes.classify(p) for p in found] == ["2d-doc", "dcc"]
    assert renders == [pdfcodes.RENDER_DPI / 72]  # one render, at the fallback resolution
    v = verification(mailgen.make_message(spec, pdf=pdf), trust_dir)
    assert v["status"] == "verified" and [b["signature"] for b in v["barcodes"]] == ["valid", "valid"]
    # The same barcodes with one field of the mail changed: the render path cross-checks as well.
    other = mailgen.make_message(replace(spec, sex="M" if spec.sex == "F" else "F"), pdf=pdf)
    assert verification(other, trust_dir)["fields"] == ["sex"]


def test_a_page_of_text_and_images_without_codes_is_not_rendered(trust_dir: Path, renders: list) -> None:
    spec = bg.spec_for(23)
    text_and_logo = bg.pdf_with_barcodes(mailgen.pdf_text_lines(spec), logo=True)
    assert pdfcodes.payloads(text_and_logo) == [] and pdfcodes.payloads(mailgen.make_pdf(spec)) == []
    assert renders == []
    v = verification(mailgen.make_message(spec, pdf=text_and_logo), trust_dir)
    assert v["status"] == "unverifiable" and "aucun code-barres" in v["detail"]


def test_an_image_too_big_to_decode_alone_makes_the_page_rendered(renders: list) -> None:
    spec = bg.spec_for(24)
    pdf = bg.pdf_with_barcodes(mailgen.pdf_text_lines(spec), [bg.twoddoc(spec, SIGNER)])
    small_limit = pdfcodes.MAX_IMAGE_PIXELS
    try:
        pdfcodes.MAX_IMAGE_PIXELS = 100  # every image now counts as "too big"
        found = pdfcodes.payloads(pdf)
    finally:
        pdfcodes.MAX_IMAGE_PIXELS = small_limit
    assert [barcodes.classify(p) for p in found] == ["2d-doc"] and len(renders) == 1


def test_a_replaced_or_removed_key_file_is_seen_at_the_next_pdf(trust_dir: Path) -> None:
    spec = bg.spec_for(25)
    pdf = bg.certificate_pdf(spec, SIGNER, dcc=False)

    def signature() -> str:
        info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
        assert info is not None and info.barcodes is not None
        return info.barcodes[0]["signature"]

    pem = trust_dir / "2d-doc" / f"{SIGNER.ca}{SIGNER.cert}.pem"
    assert signature() == "valid"
    other = bg.Signer.new()
    pem.write_bytes(other.pem())  # overwritten in place, same name and maybe the same size
    assert signature() == "invalid"
    pem.unlink()
    assert signature() == "unknown_key"
    (trust_dir / "2d-doc.json").write_text(json.dumps({SIGNER.ca + SIGNER.cert: SIGNER.pem().decode()}))
    assert signature() == "valid"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=a1 ", max_size=24))
def test_base32_reads_what_the_standard_library_reads_and_refuses_the_rest(data: bytes, garbage: str) -> None:
    """The 2D-DOC signature's base32 reader (one big integer, no loop over blocks) gives exactly
    base64.b32decode's bytes, padded or not, and refuses exactly what it refuses."""
    import base64

    text = base64.b32encode(data).decode()
    assert barcodes.b32decode(text) == data and barcodes.b32decode(text.rstrip("=")) == data
    try:
        expected: bytes | None = base64.b32decode(garbage + "=" * (-len(garbage) % 8))
    except ValueError:
        expected = None
    try:
        got: bytes | None = barcodes.b32decode(garbage)
    except barcodes.BarcodeError:
        got = None
    assert got == expected


def test_base45_decodes_the_rfc_examples_and_refuses_the_rest() -> None:
    assert barcodes.b45decode("BB8") == b"AB" and barcodes.b45decode("%69 VD92EX0") == b"Hello!!"
    assert barcodes.b45decode("UJCLQE7W581") == b"base-45"
    rng = random.Random(5)
    for size in range(0, 80):
        data = bytes(rng.randrange(256) for _ in range(size))
        assert barcodes.b45decode(bg.b45encode(data)) == data
    for bad in ("GGW", ":::", "A", "abc", "é00", "::"):
        with pytest.raises(barcodes.BarcodeError):
            barcodes.b45decode(bad)


def _b45_by_the_rfc(text: str) -> bytes | None:
    """RFC 9285 read group by group, the plain way; None where the text is not base45."""
    if any(c not in barcodes._B45 for c in text) or len(text) % 3 == 1:
        return None
    values = [barcodes._B45.index(c) for c in text]
    out = bytearray()
    for at in range(0, len(values) - 2, 3):
        n = values[at] + 45 * values[at + 1] + 2025 * values[at + 2]
        if n > 0xFFFF:
            return None
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + 45 * values[-1]
        if n > 0xFF:
            return None
        out.append(n)
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(alphabet=barcodes._B45, max_size=60), st.text(alphabet=":%Z", max_size=12),
                 st.binary(max_size=200).map(bg.b45encode)))
def test_base45_agrees_with_the_rfc_on_any_text(text: str) -> None:
    """The decoder works on all groups at once (one big integer): it must read every group, and
    refuse every over-large one, exactly as the group-by-group definition does."""
    expected = _b45_by_the_rfc(text)
    if expected is None:
        with pytest.raises(barcodes.BarcodeError):
            barcodes.b45decode(text)
    else:
        assert barcodes.b45decode(text) == expected


CHILD_OUTLIVES = """
import ctypes, multiprocessing, os, sys, time
sys.path[:0] = [{tests!r}]
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: an orphaned grandchild becomes ours

def work(queue):
    import barcodegen as bg
    from helper.parse import pdftext, pdfworker
    signer = bg.Signer.new()
    pdftext.extract(bg.certificate_pdf(bg.spec_for(1), signer), barcodes=True, trust_list="-", text=False)
    queue.put(pdfworker._child.proc.pid)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=work, args=(queue,))
    worker.start()
    reader = queue.get(timeout=60)
    worker.join(60)
    time.sleep(0.5)
    try:
        pid, _ = os.waitpid(reader, os.WNOHANG)
        print("orphaned" if pid else "running")
    except ChildProcessError:
        print("reaped by its worker")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER is Linux's")
def test_the_reader_child_ends_with_the_worker_process_that_started_it() -> None:
    script = CHILD_OUTLIVES.format(tests=str(ROOT / "tests"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.stdout.strip() == "reaped by its worker", out.stderr


def test_signer_certificates_are_accepted_in_the_trust_list(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DSC de test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(SIGNER.key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(SIGNER.key, hashes.SHA256()))
    folder = bg.write_trust_list(tmp_path / "liste", SIGNER)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for kind in ("2d-doc", "dcc"):
        [path] = (folder / kind).glob("*.pem")
        path.write_bytes(pem)  # an X.509 certificate in place of the bare key
    spec = bg.spec_for(26)
    v = verification(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER)), folder)
    assert v["status"] == "verified" and [b["signature"] for b in v["barcodes"]] == ["valid", "valid"]


def test_a_reader_child_past_its_memory_ceiling_is_replaced(trust_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helper.parse import pdfworker

    pdf = bg.certificate_pdf(bg.spec_for(27), SIGNER)
    first = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    pid = pdfworker._child.proc.pid
    assert pdfworker._child.peak_rss > 10 * 1024 * 1024  # the child reports its peak memory
    assert pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False) is not None
    assert pdfworker._child.proc.pid == pid  # below the ceiling: the same child goes on
    monkeypatch.setattr(pdfworker, "MAX_CHILD_RSS", 1024 * 1024)
    again = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    assert again is not None and again.barcodes == first.barcodes and pdfworker._child.proc.pid != pid


def test_the_threaded_exchange_used_where_pipes_cannot_be_polled_keeps_the_bounds(
        trust_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helper.parse import pdfworker

    monkeypatch.setattr(pdfworker, "_POLL", False)  # as on Windows
    pdf = bg.certificate_pdf(bg.spec_for(28), SIGNER)
    assert pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), timeout=0.001) is None  # over time
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    assert info is not None and [b["signature"] for b in info.barcodes] == ["valid", "valid"]


LARGE_PARENT = """
import sys
sys.path[:0] = [{tests!r}]
import barcodegen as bg
from helper.parse import pdftext, pdfworker
ballast = bytearray(pdfworker.MAX_CHILD_RSS + 64 * 1024 * 1024)  # touched: a service this big
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
signer = bg.Signer.new()
pids = []
for n in range(3):
    assert pdftext.extract(bg.certificate_pdf(bg.spec_for(n), signer), barcodes=True, trust_list="-", text=False)
    pids.append(pdfworker._child.proc.pid)
print(len(set(pids)), pdfworker._child.peak_rss < pdfworker.MAX_CHILD_RSS)
"""


def test_a_large_service_keeps_one_reader_child_for_many_pdfs() -> None:
    """The child's memory is its own: the peak of the large process that started it (which Linux
    carries across exec in ru_maxrss) must not make it look over its ceiling after every PDF."""
    script = LARGE_PARENT.format(tests=str(ROOT / "tests"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.stdout.split() == ["1", "True"], out.stderr[-2000:]


def test_unknown_key_ids_read_from_barcodes_do_not_grow_the_trust_list_without_bound(trust_dir: Path) -> None:
    """Key ids come from barcodes (an attacker's PDF): looking up many unknown ones keeps a bounded
    number of entries, and the real keys are still found (and found again after the purge)."""
    from helper.parse.trustlist import TrustList

    keys = TrustList(trust_dir)
    real = SIGNER.ca + SIGNER.cert
    assert keys.key("2d-doc", real) is not None
    for i in range(25_000):
        assert keys.key("dcc", f"k{i}") is None
    assert len(keys._cache) <= 10_001 and len(keys._paths) <= 10_001
    assert keys.key("2d-doc", real) is not None
