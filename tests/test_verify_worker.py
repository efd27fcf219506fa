"""Barcodes read by the parse-pool workers themselves (helper/parse/pdftext.py, step 1): the bounded
pdfium reader child is started only for a PDF whose codes the fast path cannot read, and a worker
that runs out of its memory limit on a hostile PDF quarantines that message and goes on.

Real ingest runs (helper.index.ingest.Ingester, a real worker pool and SQLite store) on messages
built at test time with real Data Matrix and QR codes (tests/barcodegen.py) signed with test keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import barcodegen as bg
import mailgen
import psutil
import pytest

from helper.index import pool
from helper.index.ingest import Ingester
from helper.index.store import Store
from helper.parse import pdftext, pdfworker
from helper.parse.trust import TrustPolicy

SIGNER = bg.Signer.new()


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    return bg.write_trust_list(tmp_path / "liste-de-confiance", SIGNER)


@pytest.fixture(autouse=True)
def no_idle_pool() -> Iterator[None]:
    """Each test starts its own workers (with this test's settings) and leaves none behind."""
    pool._close_idle()
    pdfworker._close()  # this process's own reader child, if an earlier test started one
    _before.clear()
    _before.update(p.pid for p in _readers())  # left by an earlier test module's workers, not ours
    yield
    pool._close_idle()
    pdfworker._close()


_before: set[int] = set()


def reader_children() -> list[psutil.Process]:
    """The pdfium reader children (helper.parse.pdfworker) of this test's pool workers (not the one
    an earlier test may have started for this process itself, nor those of an earlier module's)."""
    return [p for p in _readers() if p.pid not in _before]


def _readers() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "helper.parse.pdfworker" in " ".join(proc.cmdline()) and proc.ppid() != os.getpid():
                found.append(proc)
        except psutil.Error:
            pass
    return found


def ingest(folder: Path, data: Path, trust_dir: Path) -> tuple[Store, dict[str, int]]:
    store = Store(data)
    policy = TrustPolicy(verify_barcodes=True, barcode_trust_list=str(trust_dir))
    report = Ingester(store, policy, workers=2).run([folder], progress=False)
    return store, report.counts()


def statuses(store: Store) -> list[str]:
    rows = store.db.execute("SELECT id FROM certificates ORDER BY id").fetchall()
    return [store.get(row[0])["verification"]["status"] for row in rows]  # type: ignore[index]


def test_workers_verify_image_codes_themselves_and_start_the_pdfium_child_only_when_needed(
        tmp_path: Path, trust_dir: Path) -> None:
    specs = [bg.spec_for(60 + i) for i in range(6)]
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(s, pdf=bg.certificate_pdf(s, SIGNER, logo=True))
                                         for s in specs])
    store, counts = ingest(tmp_path / "eml", tmp_path / "home", trust_dir)
    assert counts["new"] == 6 and counts["quarantined"] == 0
    assert statuses(store) == ["verified"] * 6
    assert reader_children() == []  # the workers (still alive, kept for the next run) started none
    store.close()

    # A code drawn as vector rectangles needs pdfium's render: the worker starts its child for it.
    vector = bg.spec_for(70)
    mailgen.write_eml(tmp_path / "eml2", [mailgen.make_message(vector, pdf=bg.certificate_pdf(vector, SIGNER, vector=True))])
    store, counts = ingest(tmp_path / "eml2", tmp_path / "home2", trust_dir)
    assert counts["new"] == 1 and statuses(store) == ["verified"]
    assert len(reader_children()) == 1
    store.close()


#: Run in a fresh interpreter: workers forked from a long test process would inherit its free heap,
#: room an address-space limit counts as taken (the limit is relative to their size at start).
HOSTILE_RUN = """
import json, sys
from pathlib import Path
from helper.index.ingest import Ingester
from helper.index.store import Store
from helper.parse import pdftext
from helper.parse.trust import TrustPolicy
pdftext.WORKER_EXTRA_BYTES = 8 * 1024 * 1024  # the workers are forked from here: they take it
folder, data, trust = sys.argv[1:4]
store = Store(Path(data))
policy = TrustPolicy(verify_barcodes=True, barcode_trust_list=trust)
report = Ingester(store, policy, workers=2).run([Path(folder)], progress=False)
rows = store.db.execute("SELECT id FROM certificates ORDER BY id").fetchall()
print(json.dumps({"counts": report.counts(), "quarantined": store.quarantined(),
                  "statuses": [store.get(r[0])["verification"]["status"] for r in rows]}, default=str))
store.close()
"""


def test_a_pdf_that_takes_a_worker_past_its_memory_limit_is_quarantined_and_the_run_goes_on(
        tmp_path: Path, trust_dir: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the address-space limit is set on Linux only (elsewhere the time budget bounds)")
    # A plain 3,000 × 1,300 RGB image (under the fast path's pixel bound): 11.7 MB of pixels,
    # deflated to a few KB; the workers may grow by 8 MiB only (HOSTILE_RUN).
    packer = zlib.compressobj(9)
    big = b"".join(packer.compress(bytes(1300 * 3 * 1000)) for _ in range(3)) + packer.flush()
    hostile_pdf = bg.pdf_with_image(b"/Width 3000 /Height 1300 /ColorSpace /DeviceRGB /BitsPerComponent 8 "
                                    b"/Filter /FlateDecode", big)
    hostile, good = bg.spec_for(80), bg.spec_for(81)
    messages = [mailgen.make_message(hostile, pdf=hostile_pdf),
                mailgen.make_message(good, pdf=bg.certificate_pdf(good, SIGNER))]
    mailgen.write_eml(tmp_path / "eml", messages)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", HOSTILE_RUN, str(tmp_path / "eml"), str(tmp_path / "home"),
                           str(trust_dir)], capture_output=True, text=True, timeout=120, env=env, check=True)
    out = json.loads(proc.stdout)
    assert out["counts"]["new"] == 1 and out["counts"]["quarantined"] == 1, out
    [held] = out["quarantined"]
    assert held["reason"] == "too_large" and "mémoire" in held["detail"]
    assert out["statuses"] == ["verified"]


def test_imap_sync_workers_verify_image_codes_without_the_pdfium_child(tmp_path: Path, trust_dir: Path) -> None:
    """The service's IMAP parse pool (fork server, verification modules preloaded) reads them too."""
    import random

    from conftest import recent_spec
    from dovecot import start_dovecot
    from imaphelpers import sync_inbox_once

    rng = random.Random(90)
    specs = [recent_spec(rng, result=("POSITIF", "NEGATIF")[i % 2]) for i in range(40)]  # with a DCC
    server = start_dovecot(client_cert=True)
    try:
        server.append_many([mailgen.make_message(s, pdf=bg.certificate_pdf(s, SIGNER, logo=True)) for s in specs])
        store, _ = sync_inbox_once(server, tmp_path / "home", barcode_trust_list=trust_dir)  # 2 workers a core
        try:
            assert statuses(store) == ["verified"] * len(specs)
        finally:
            store.close()
        assert reader_children() == []
    finally:
        server.remove()


def test_a_fast_path_failure_hands_the_pdf_to_the_bounded_child(
        trust_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library failing on a PDF inside the worker does not quarantine the message: the pdfium
    child reads that PDF, as it did before the worker read codes itself."""
    from helper.parse import pdfcodes

    def broken(data: bytes) -> list[bytes]:
        raise RuntimeError("zxing failed on this image")

    pdf = bg.certificate_pdf(bg.spec_for(95), SIGNER)
    monkeypatch.setattr(pdftext, "_in_process", True)
    monkeypatch.setattr(pdfcodes, "fast_payloads", broken)
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), text=False)
    assert info is not None and info.barcodes is not None
    assert sorted(b["type"] for b in info.barcodes) == ["2d-doc", "dcc"]
    assert all(b["signature"] == "valid" for b in info.barcodes)
