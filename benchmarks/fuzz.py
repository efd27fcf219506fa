"""Mutation fuzzer for the ingest: hostile variants of generated certificates, read by the real CLI.

Not part of CI (it takes minutes). Step by step:

1. Generate ``--messages`` certificate messages with ``tests/mailgen.py`` and mutate each with one
   class of mutation, in turn: none (control), byte flips, truncation, header storms, charset lies,
   deep nesting, many parts, PDF bombs (attached, and some saved alone as a certificate-named
   PDF), whitespace storms (subject, From, MIME parameters, base64 lines, body), HTML storms.
   Each result is one file in ``OUT/corpus/<class>/``.
2. Run ``sidep-helper ingest <class folder> --json`` (the real CLI, its worker pool and the
   parse-time budget) on a fresh data directory per class; sample the RSS of its process tree.
3. Account for every file: the report's counts (new + duplicates + ignored + quarantined, and
   ``expired`` or any other count the report may give) must reach the number of files, and every
   file must be recorded in the index's file table. Quarantine reasons come from ``status --json``.
4. Time each file's parse alone (``process_item`` in a budgeted worker pool) to name the slowest.

Usage: ``python benchmarks/fuzz.py --messages 20000 [--out DIR] [--seed S] [--no-timing]``.
Prints one line per class, then totals, the slowest message and the peak RSS; exit code 1 when a
file is not accounted for or a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import mailgen  # noqa: E402  (tests/mailgen.py: the realistic SI-DEP message generator)

MiB = 1024 * 1024
WS = [b" ", b"\t", b" \t", b"\xc2\xa0", b"\r\n "]  # the last one folds the header line
STORM_PREFIX = b"[Projet SI-DEP] Certificat de test"


# --- mutations: (rng, spec, raw) -> (file name suffix, bytes) ------------------------------------------------

def m_control(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    return ".eml", raw


def m_byte_flips(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    data = bytearray(raw)
    for _ in range(rng.choice([1, 2, 5, 20, 200])):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return ".eml", bytes(data)


def m_truncation(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    return ".eml", raw[: rng.randrange(len(raw))]


def m_header_storm(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    shape = rng.randrange(4)
    if shape == 0:  # just over (or under) the line limit
        storm = b"X-Storm: a\r\n" * rng.choice([9_999, 10_001, 12_000])
    elif shape == 1:  # 100,000 lines, as in the audit
        storm = b"X-Storm: a\r\n" * 100_000 if rng.random() < 0.1 else b"X-S: a\r\n" * 30_000
    elif shape == 2:  # over 1 MB in few long lines
        storm = (b"X-Big: " + b"a" * 4000 + b"\r\n") * 300
    else:  # folded continuation lines, inside a nested part's header
        at = raw.rfind(b"Content-Type: application/pdf")
        return ".eml", raw[:at] + b"X-Folded: a\r\n" + b" a\r\n" * rng.choice([5_000, 20_000]) + raw[at:]
    return ".eml", storm + raw


CHARSET_LIES = [b"utf-16", b"utf-32", b"x-unknown", b"utf-7", b"iso-2022-jp", b"", b"\"", b"cp1252*", b"a" * 300]


def m_charset_lie(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    lie = rng.choice(CHARSET_LIES)
    data = raw.replace(b"charset=utf-8", b"charset=" + lie).replace(b"=?utf-8?", b"=?" + lie + b"?")
    if rng.random() < 0.3:  # and bytes that are not what any label says
        data = data.replace(b"Content-Transfer-Encoding: quoted-printable", b"Content-Transfer-Encoding: 8bit")
        data = data.replace(b"=C3=A9", b"\xe9\xff\xfe")
    return ".eml", data


def m_deep_nesting(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    depth = rng.choice([10, 60, 99, 101, 150, 400])
    inner = raw
    for level in range(depth):
        if level % 2:
            inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
        b = b"nest%d" % level
        inner = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
                 + inner + b"\r\n--" + b + b"--\r\n")
    head = b"From: secretariat@labo.example\r\nSubject: Tr: certificats\r\nMIME-Version: 1.0\r\n"
    return ".eml", head + inner


def m_many_parts(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    n = int(10 ** rng.uniform(1, 4.2))  # 10 to ~16,000 parts (the limit is 10,000)
    parts = [b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n"] * n
    body = b"".join(parts) + b"--p\r\nContent-Type: message/rfc822\r\n\r\n" + raw + b"\r\n--p--\r\n"
    head = (b"From: " + spec.sender.encode() + b"\r\nSubject: Tr: certificat\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=p\r\n\r\n")
    return ".eml", head + body


_BOMBS: dict[int, bytes] = {}


def bomb_pdf(mib: int) -> bytes:
    """A one-page PDF whose content stream inflates to ``mib`` MiB (compressed ~1000x)."""
    if mib not in _BOMBS:
        z = zlib.compressobj(9)
        chunk = b"0" * MiB
        stream = b"".join(z.compress(chunk) for _ in range(mib)) + z.flush()
        objs = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        ]
        out = [b"%PDF-1.4\n"]
        offsets = []
        pos = len(out[0])
        for i, body in enumerate(objs, 1):
            obj = b"%d 0 obj\n" % i + body + b"\nendobj\n"
            offsets.append(pos)
            out.append(obj)
            pos += len(obj)
        out.append(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
        out.extend(b"%010d 00000 n \n" % o for o in offsets)
        out.append(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, pos))
        _BOMBS[mib] = b"".join(out)
    return _BOMBS[mib]


def m_pdf_bomb(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    bomb = bomb_pdf(rng.choice([16, 200, 1000]))
    if rng.random() < 0.05:  # saved alone, named like a certificate: its text is extracted
        return "|" + mailgen.pdf_filename(spec), bomb
    # The bomb's base64 put in place of the certificate's own PDF (encoding it again each time is slow).
    small = mailgen._pdf_base64(mailgen.make_pdf(spec, size=4_000), "\r\n")
    if len(bomb) not in _BASE64:
        _BASE64[len(bomb)] = mailgen._pdf_base64(bomb, "\r\n")
    if small in raw:
        return ".eml", raw.replace(small, _BASE64[len(bomb)])
    return ".eml", mailgen.make_message(spec, pdf=bomb)


_BASE64: dict[int, bytes] = {}


def m_whitespace_storm(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    ws = rng.choice(WS) * rng.choice([300, 5_000, 50_000, 200_000])
    shape = rng.randrange(6)
    if shape == 0:  # the audit's subject
        return ".eml", mailgen.make_message(spec, subject=(STORM_PREFIX + ws + b"x").decode("utf-8"),
                                            subject_encoding="raw")
    if shape == 1:  # a full subject with storms between its fields
        subject = b"[Projet SI-DEP]" + ws + b"Certificat de test :" + ws + b"|" + ws + b"|" + ws + b"| x"
        return ".eml", mailgen.make_message(spec, subject=subject.decode("utf-8"), subject_encoding="raw")
    if shape == 2:  # the From header
        return ".eml", raw.replace(b"\r\nFrom: ", b"\r\nFrom: " + ws, 1)
    if shape == 3:  # MIME parameters
        return ".eml", raw.replace(b"; boundary=", b";" + ws + b"boundary=" + ws, 1)
    if shape == 4:  # inside the base64 PDF
        at = raw.rfind(b"\r\n\r\n")
        return ".eml", raw[: at + 4] + ws + raw[at + 4 :]
    # a body line: "Nom :" followed by the storm, from the trusted sender without a certificate subject
    body = b"Nom :" + ws + b"x\r\nDate de naissance :" + ws + b"01/01/1970" + ws + b"x\r\n"
    return ".eml", (b"From: " + mailgen.TRUSTED_SENDER.encode() + b"\r\nSubject: Rapport\r\n"
                    b"Content-Type: text/plain\r\n\r\n" + body)


def m_html_storm(rng: random.Random, spec: Any, raw: bytes) -> tuple[str, bytes]:
    n = rng.choice([40_000, 400_000, 2_000_000])
    storm = rng.choice([b"<script", b"<", b"<br", b"<style x", b"<p <p", b"&#", b"</script"]) * (n // 8)
    return ".eml", (b"From: " + mailgen.TRUSTED_SENDER.encode() + b"\r\nSubject: Rapport\r\n"
                    b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Nom : X</p>" + storm)


MUTATIONS: dict[str, Callable[[random.Random, Any, bytes], tuple[str, bytes]]] = {
    "control": m_control,
    "byte_flips": m_byte_flips,
    "truncation": m_truncation,
    "header_storm": m_header_storm,
    "charset_lie": m_charset_lie,
    "deep_nesting": m_deep_nesting,
    "many_parts": m_many_parts,
    "pdf_bomb": m_pdf_bomb,
    "whitespace_storm": m_whitespace_storm,
    "html_storm": m_html_storm,
}


# --- steps --------------------------------------------------------------------------------------------------

def generate(out: Path, n: int, seed: int) -> dict[str, list[Path]]:
    rng = random.Random(seed)
    corpus = out / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    files: dict[str, list[Path]] = {name: [] for name in MUTATIONS}
    names = list(MUTATIONS)
    started = time.monotonic()
    for i in range(n):
        cls = names[i % len(names)]
        spec = mailgen.random_spec(rng)
        raw = mailgen.make_message(spec, pdf=mailgen.make_pdf(spec, size=4_000))
        suffix, data = MUTATIONS[cls](rng, spec, raw)
        # A bare PDF keeps its certificate name, in a folder of its own.
        folder = corpus / cls if suffix == ".eml" else corpus / cls / f"pdf{i:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"{i:06d}.eml" if suffix == ".eml" else suffix[1:])
        path.write_bytes(data)
        files[cls].append(path)
        if (i + 1) % 2000 == 0:
            print(f"  {i + 1:,} / {n:,} generated ({time.monotonic() - started:.0f} s)", flush=True)
    return files


def helper_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SIDEP_HELPER_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_ingest(folder: Path, home: Path) -> tuple[dict[str, int] | None, float, int, str]:
    """(report counts, seconds, peak RSS of the process tree in bytes, stderr)."""
    shutil.rmtree(home, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "helper", "ingest", str(folder), "--json", "--quiet"],
                            env=helper_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            top = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            try:
                for p in [top, *top.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            peak = max(peak, total)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    sampler.join()
    elapsed = time.monotonic() - started
    try:
        counts = json.loads(stdout) if proc.returncode == 0 else None
    except json.JSONDecodeError:
        counts = None
    return counts, elapsed, peak, stderr.decode("utf-8", "replace")[-2000:]


def status(home: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "helper", "status", "--json"], env=helper_env(home),
                          capture_output=True, check=False)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {}


def recorded_paths(home: Path) -> set[str]:
    found = list(home.rglob("index.sqlite3"))
    if not found:
        return set()
    with sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT path FROM files")}


def _timed(path: str) -> tuple[float, list[str]]:
    from helper.index.ingest import EML, PDF, Item, process_item

    kind = PDF if path.lower().endswith(".pdf") else EML
    started = time.perf_counter()
    result = process_item(Item(path, kind, "", None, os.path.getsize(path)))
    return time.perf_counter() - started, [o.reason or o.status for o in result.outcomes]


def time_each(files: list[Path], blob_root: Path, budget: float) -> list[tuple[float, str, list[str]]]:
    from helper.index.ingest import _init_worker
    from helper.index.pool import BudgetPool

    pool = BudgetPool(
        os.cpu_count() or 2, _timed, budget=budget,
        on_timeout=lambda path: (budget, ["timeout"]), on_crash=lambda path: (0.0, ["crash"]),
        initializer=_init_worker, initargs=(str(blob_root), frozenset({mailgen.TRUSTED_SENDER})),
    )
    with pool:
        return [(secs, path, what) for path, (secs, what) in zip(map(str, files), pool.imap(map(str, files)),
                                                                     strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages to generate (default 2000)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "fuzz", help="work directory")
    parser.add_argument("--seed", type=int, default=20210622)
    parser.add_argument("--no-timing", action="store_true", help="skip timing each file alone")
    parser.add_argument("--budget", type=float, default=30.0, help="per-file budget of the timing pass (s)")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    print(f"Generating {args.messages:,} mutated messages into {out / 'corpus'} ...", flush=True)
    files = generate(out, args.messages, args.seed)
    size = sum(p.stat().st_size for ps in files.values() for p in ps)
    print(f"{args.messages:,} files, {size / MiB:,.0f} MiB, in {time.monotonic() - t0:.0f} s\n", flush=True)

    header = f"{'class':17s} {'files':>6s} {'new':>6s} {'dup':>5s} {'ignored':>7s} {'quar.':>6s} {'other':>5s} " \
             f"{'missing':>7s} {'secs':>6s} {'RSS MiB':>7s}  quarantine reasons"
    print(header)
    print("-" * len(header))
    totals: Counter[str] = Counter()
    problems = 0
    peak_rss = 0
    for cls, paths in files.items():
        if not paths:
            continue
        home = out / "data" / cls
        counts, secs, rss, err = run_ingest(out / "corpus" / cls, home)
        peak_rss = max(peak_rss, rss)
        if counts is None:
            problems += 1
            print(f"{cls:17s} ingest FAILED:\n{err}")
            continue
        known = {"new", "duplicates", "ignored", "quarantined"}
        other = sum(v for k, v in counts.items() if k not in known)  # e.g. "expired", when the report has it
        accounted = sum(counts.values())
        recorded = recorded_paths(home)
        missing = [p for p in paths if str(p) not in recorded]
        short = max(0, len(paths) - accounted)
        if missing or short:
            problems += 1
        reasons = Counter(q["reason"] for q in status(home).get("quarantine", []))
        totals.update({k: v for k, v in counts.items()})
        totals["files"] += len(paths)
        totals["missing"] += len(missing) + short
        print(f"{cls:17s} {len(paths):6d} {counts.get('new', 0):6d} {counts.get('duplicates', 0):5d} "
              f"{counts.get('ignored', 0):7d} {counts.get('quarantined', 0):6d} {other:5d} "
              f"{len(missing) + short:7d} {secs:6.1f} {rss / MiB:7.0f}  "
              + ", ".join(f"{r} {n}" for r, n in reasons.most_common()), flush=True)
        for p in missing[:5]:
            print(f"    not recorded: {p}")
    print("-" * len(header))
    print(f"{'total':17s} {totals['files']:6d} {totals['new']:6d} {totals['duplicates']:5d} "
          f"{totals['ignored']:7d} {totals['quarantined']:6d} "
          f"{sum(v for k, v in totals.items() if k not in {'new', 'duplicates', 'ignored', 'quarantined', 'files', 'missing'}):5d} "
          f"{totals['missing']:7d}")
    print(f"Peak RSS of one ingest (process tree): {peak_rss / MiB:.0f} MiB")

    if not args.no_timing:
        print("\nTiming each file alone (process_item in budgeted workers) ...", flush=True)
        blob_root = out / "timing-blobs"
        shutil.rmtree(blob_root, ignore_errors=True)
        every = [p for ps in files.values() for p in ps]
        timed = time_each(every, blob_root, args.budget)
        timed.sort(reverse=True)
        by_class: dict[str, float] = {}
        for secs, path, _ in timed:
            cls = Path(path).relative_to(out / "corpus").parts[0]
            by_class[cls] = max(by_class.get(cls, 0.0), secs)
        print("Slowest per class: " + ", ".join(f"{c} {s * 1e3:.0f} ms" for c, s in by_class.items()))
        for secs, path, what in timed[:5]:
            print(f"  {secs * 1e3:9.1f} ms  {Path(path).relative_to(out / 'corpus')} "
                  f"({os.path.getsize(path) / 1024:,.0f} KiB) → {', '.join(what)}")
        over = [t for t in timed if "timeout" in t[2] or "crash" in t[2]]
        print(f"Files over the {args.budget:g} s budget or crashing a worker: {len(over)}")
    print(f"\nTotal time {time.monotonic() - t0:.0f} s; "
          f"{'every file accounted for' if not problems else f'{problems} class(es) with problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
