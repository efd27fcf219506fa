"""HTTP search latency of ``sidep-helper serve`` at 1M certificates under 20 concurrent clients.

Uses the index built by ``benchmarks/bench.py`` (``out/scale-1000000/data``; run that first).
Starts the real service on a free loopback port (no folder watching, retention set so that the
start-up purge keeps everything), then measures from a separate client process:

- open loop: 20 clients, each sending a search every 200 ms on average (a reception desk where
  20 secretaries type; ~100 requests/s in all) — the target: p99 < 25 ms;
- closed loop: 20 clients sending back to back — the saturation throughput, for information.

Queries mix full last names, "lef emi" prefixes, dossier numbers and name + birth date, taken
from the index. Prints the figures and writes them to ``out/http.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queries_from(data_dir: Path, n: int, seed: int) -> list[str]:
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True)
    top = db.execute("SELECT max(rowid) FROM certificates").fetchone()[0]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        row = db.execute(
            "SELECT last_name, first_name, dossier, birth_date FROM certificates WHERE id >= ? ORDER BY id LIMIT 1",
            (rng.randrange(top),),
        ).fetchone()
        if row is None:
            continue
        last, first, dossier, birth = row
        kind = len(out) % 4
        if kind == 0:
            out.append(last.lower())
        elif kind == 1:
            out.append(f"{last[:3].lower()} {first[:3].lower()}")
        elif kind == 2:
            out.append(dossier)
        else:
            out.append(f"{last.lower()} {birth[8:10]}/{birth[5:7]}/{birth[:4]}" if birth else last.lower())
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run_clients(port: int, token: str, queries: list[str], *, clients: int, interval: float | None,
                      duration: float) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/api/v1/certificates"
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        rng = random.Random(k)
        while time.monotonic() < deadline:
            q = rng.choice(queries)
            start = time.perf_counter()
            async with session.get(url, params={"q": q, "limit": "20"}, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - start) * 1000)
            if interval:
                await asyncio.sleep(rng.expovariate(1 / interval))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(k, session) for k in range(clients)))
        elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=HERE / "out" / "scale-1000000" / "data")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.2, help="mean seconds between a client's requests (open loop)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    p.add_argument("--seed", type=int, default=20211122)
    args = p.parse_args()
    if not (args.data_dir / "index.sqlite3").exists():
        print(f"No index in {args.data_dir}: run benchmarks/bench.py first.", file=sys.stderr)
        return 2
    count = sqlite3.connect(f"file:{args.data_dir / 'index.sqlite3'}?mode=ro", uri=True).execute(
        "SELECT count(*) FROM certificates").fetchone()[0]
    queries = queries_from(args.data_dir, 2000, args.seed)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(f"port = {port}\nretention_days = 1000000\nwatch_downloads = false\nwatch_thunderbird = false\n")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        base = [sys.executable, "-m", "helper", "--data-dir", str(args.data_dir), "--config", str(config)]
        token = subprocess.run([*base, "token"], capture_output=True, text=True, env=env, check=True).stdout.strip()
        server = subprocess.Popen([*base, "serve", "--no-watch"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            # Warm-up: the page cache and the typo vocabulary, as after a morning's use.
            asyncio.run(run_clients(port, token, queries, clients=4, interval=None, duration=3))
            open_loop = asyncio.run(run_clients(port, token, queries, clients=args.clients,
                                                interval=args.interval, duration=args.duration))
            closed_loop = asyncio.run(run_clients(port, token, queries, clients=args.clients,
                                                  interval=None, duration=args.duration))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    results = {"certificates": count, "clients": args.clients, "open_loop": open_loop, "closed_loop": closed_loop}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "http.json").write_text(json.dumps(results, indent=1))
    print(f"HTTP search, {count:,} certificates, {args.clients} clients, same 2-core machine as the clients")
    for name, r in ((f"open loop (each client ~1 request / {args.interval:.1f} s)", open_loop),
                    ("closed loop (back to back)", closed_loop)):
        print(f"  {name}: {r['requests']} requests, {r['requests_per_s']:.0f}/s, median {r['median_ms']:.1f} ms, "
              f"p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, errors {r['errors']}")
    verdict = "PASS" if open_loop["p99_ms"] < 25 and open_loop["errors"] == 0 else "FAIL"
    print(f"  target p99 < 25 ms (open loop): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
