"""Memory of a real ``sidep-helper serve`` while messages and JSON bodies are pushed at it.

Prints the service's RSS before, at its peak and after: six concurrent 60 MB chunked uploads to
``/api/v1/messages`` (refused, 413, while they arrive), then one 40 MB JSON body to a certificate
route (refused from its Content-Length, or while reading when chunked). ``--root DIR`` runs the
service of another checkout (for before/after figures). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import mailgen  # noqa: E402
from conftest import free_port, recent_spec, wait_healthy  # noqa: E402
from test_api_hardening import _chunked_upload  # noqa: E402


def _watch(process: psutil.Process, work: list[threading.Thread]) -> int:
    peak = process.memory_info().rss
    for thread in work:
        thread.start()
    while any(t.is_alive() for t in work):
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.02)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=HERE.parent, help="checkout whose helper/ is served")
    parser.add_argument("--uploads", type=int, default=6)
    parser.add_argument("--mb", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        port = free_port()
        (home / "config.toml").write_text(f"port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n")
        env = dict(os.environ, SIDEP_HELPER_HOME=str(home), PYTHONPATH=str(args.root.resolve()))
        mail = Path(tmp) / "mail"
        mailgen.write_eml(mail, [mailgen.make_message(recent_spec(random.Random(1)))])
        subprocess.run([sys.executable, "-m", "helper", "ingest", str(mail)], env=env, check=True, capture_output=True, cwd=args.root)
        proc = subprocess.Popen([sys.executable, "-m", "helper", "serve", "--no-watch"], env=env, cwd=args.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(port, proc)
            token = subprocess.run([sys.executable, "-m", "helper", "token"], env=env, check=True, cwd=args.root,
                                   capture_output=True, text=True).stdout.strip()
            process = psutil.Process(proc.pid)
            before = process.memory_info().rss
            statuses: list[int] = []
            uploads = [threading.Thread(target=lambda: statuses.append(
                _chunked_upload(port, token, args.mb << 20))) for _ in range(args.uploads)]
            started = time.monotonic()
            peak = _watch(process, uploads)
            elapsed = time.monotonic() - started
            after = process.memory_info().rss
            print(f"{args.uploads} × {args.mb} Mo (chunked) vers /api/v1/messages : réponses {sorted(statuses)}")
            print(f"  RSS avant {before / 2**20:.0f} Mo, pic {peak / 2**20:.0f} Mo (+{(peak - before) / 2**20:.0f} Mo), "
                  f"après {after / 2**20:.0f} Mo, {elapsed:.1f} s")
            before = after
            json_status: list[int] = []
            big = [threading.Thread(target=lambda: json_status.append(_chunked_upload(
                port, token, 40 << 20, "application/json", "/api/v1/certificates/1/delivered")))]
            peak = _watch(process, big)
            print(f"JSON de 40 Mo (chunked) : réponse {json_status}, pic +{(peak - before) / 2**20:.0f} Mo")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
