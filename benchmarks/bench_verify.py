#!/usr/bin/env python3
"""Cost of barcode verification per certificate PDF (issue 12), on one core.

Builds N certificate messages whose PDFs carry a signed 2D-DOC and DCC (tests/barcodegen.py, keys
made at run time), then parses each one in this process, sequentially (one core), twice in the same
run, interleaved: with ``verify_barcodes`` off, and on (read the codes, check the signatures,
cross-check). Prints the cost per message (median, p95) of each, and the added cost of
verification, against the issue's target (at most 30 ms per PDF).

    python benchmarks/bench_verify.py            # 200 messages
    python benchmarks/bench_verify.py -n 50      # quick look

The verification runs in the long-lived bounded PDF child (helper/parse/pdfworker.py), which reads
the codes from the page's embedded images (helper/parse/pdfcodes.py); with ``--worker``, as in an
ingest worker: the codes of plain images are read and checked in this process (helper/parse/pdftext.py,
step 1), the child only for the others. ``--in-process`` also measures decoding and parsing +
signatures inside this process to show the split. The ingest-level benchmark
(20,000 messages, against notmuch) is benchmarks/bench_barcodes.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import barcodegen as bg  # noqa: E402
import mailgen  # noqa: E402

from helper.parse.message import ParseConfig, parse_message  # noqa: E402
from helper.parse.trust import TrustPolicy  # noqa: E402

TARGET_MS = 30.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def line(name: str, values: list[float]) -> str:
    return f"{name:<34} médiane {statistics.median(values):8.2f} ms   p95 {pct(values, 95):8.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="nombre de messages (défaut 200)")
    ap.add_argument("--in-process", action="store_true", help="mesurer aussi rendu + lecture + vérification sans processus enfant")
    ap.add_argument("--worker", action="store_true",
                    help="analyser comme un processus d'analyse de l'indexation : codes lus dans le processus "
                         "(voie rapide), l'enfant pdfium seulement si elle ne trouve rien")
    args = ap.parse_args()
    if args.worker:
        from helper.parse import pdftext

        pdftext.read_codes_in_this_process()

    rng = random.Random(12)
    signer = bg.Signer.new()
    with tempfile.TemporaryDirectory() as tmp:
        trust = bg.write_trust_list(Path(tmp) / "liste", signer)
        messages, pdfs = [], []
        for i in range(args.n):
            spec = bg.spec_for(i, last_name=rng.choice(mailgen.SURNAMES))
            pdf = bg.certificate_pdf(spec, signer)
            pdfs.append(pdf)
            messages.append(mailgen.make_message(spec, pdf=pdf))
        off = ParseConfig(trust=TrustPolicy(verify_barcodes=False))
        on = ParseConfig(trust=TrustPolicy(verify_barcodes=True, barcode_trust_list=str(trust)))
        without, with_, verified = [], [], 0
        for raw in messages:  # interleaved, so that machine load hits both alike
            t = time.perf_counter()
            parse_message(raw, off)
            without.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            out = parse_message(raw, on)
            with_.append((time.perf_counter() - t) * 1000)
            verified += out[0].certificate is not None and out[0].certificate.verification["status"] == "verified"
        added = [b - a for a, b in zip(without, with_, strict=True)]
        print(f"{args.n} messages avec PDF signé (2D-DOC + DCC), un cœur, séquentiel")
        print(line("sans vérification", without))
        print(line("avec vérification", with_))
        print(line("coût de la vérification", added))
        print(f"certificats « vérifié » : {verified}/{args.n}")
        if args.in_process:
            from helper.parse.pdfcodes import payloads as _payloads
            from helper.parse.trustlist import TrustList
            from helper.parse.verify import read_barcodes

            keys = TrustList(str(trust))
            render, check = [], []
            for pdf in pdfs:
                t = time.perf_counter()
                payloads = _payloads(pdf)
                render.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                read_barcodes(payloads, keys)
                check.append((time.perf_counter() - t) * 1000)
            print(line("  dont lecture des codes (en processus)", render))
            print(line("  dont analyse + signatures", check))
        median = statistics.median(added)
        verdict = "PASS" if median <= TARGET_MS else "FAIL"
        print(f"cible : au plus {TARGET_MS:.0f} ms par PDF (médiane) : {median:.1f} ms → {verdict}")
        return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
