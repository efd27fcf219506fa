"""Schemathesis against a real, seeded ``sidep-helper serve``: every operation of ``openapi.json``,
every check, positive and negative data, the raw-message route with its own mail bodies
(``st_hooks.py``). Zero failures, and afterwards the service still answers and its logs hold
neither the token nor a generated query.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mailgen
import pytest
from conftest import ROOT, Cli, free_port, recent_spec, start, wait_healthy
from cups import ensure_cups_pdf, machine_lock

TESTS = Path(__file__).resolve().parent
HELD_QUEUE = "sidep-fuzz-held"


@pytest.fixture
def held_queue() -> Iterator[str]:
    """A real CUPS queue that accepts jobs and keeps them (disabled): prints answer 200, nothing prints."""
    ensure_cups_pdf()
    with machine_lock():
        subprocess.run(["lpadmin", "-p", HELD_QUEUE, "-E", "-v", "file:///dev/null", "-m", "raw"],
                       capture_output=True, check=True, timeout=30)
        subprocess.run(["cupsdisable", HELD_QUEUE], capture_output=True, check=True, timeout=30)
    yield HELD_QUEUE
    with machine_lock():
        subprocess.run(["cancel", "-a", "-x", HELD_QUEUE], capture_output=True, timeout=30)
        subprocess.run(["lpadmin", "-x", HELD_QUEUE], capture_output=True, timeout=30)


def _st() -> list[str]:
    exe = Path(sys.executable).with_name("st")
    return [str(exe)] if exe.exists() else [shutil.which("st") or "st"]


def test_schemathesis_all_checks_zero_failures(tmp_path: Path, held_queue: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\nprinter = "{held_queue}"\n',
        encoding="utf-8")
    cli = Cli(home)
    rng = random.Random(11)
    specs = [recent_spec(rng) for _ in range(15)]
    mailgen.write_maildir(tmp_path / "md", [mailgen.make_message(s) for s in specs])
    assert cli.ingest(tmp_path / "md")["new"] == 15
    proc = start(home, port, "--no-watch", stderr_to=tmp_path / "stderr.txt")
    try:
        wait_healthy(port, proc)
        token = cli.run("token").stdout.strip()
        env = dict(os.environ, SCHEMATHESIS_HOOKS="st_hooks",
                   PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        # One worker: hypothesis reads lambda sources with ast.parse, which is not thread-safe on 3.11.7.
        run = subprocess.run(
            [*_st(), "run", str(ROOT / "helper" / "openapi.json"), "--url", f"http://127.0.0.1:{port}",
             "-H", f"Authorization: Bearer {token}", "--checks", "all", "--max-examples", "40",
             "--workers", "1", "--seed", "20261203", "--request-timeout", "20", "--no-color",
             "--suppress-health-check", "too_slow,data_too_large"],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        )
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, report
        assert "No issues found" in run.stdout or " passed" in run.stdout, report
        wait_healthy(port, proc, timeout=5)  # still serving after thousands of hostile requests
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = ((home / "logs" / "sidep-helper.log").read_text(encoding="utf-8")
                + (tmp_path / "stderr.txt").read_text(encoding="utf-8", errors="replace"))
    assert token not in log_text
    assert "Traceback" not in log_text or "messages d'exception masqués" in log_text
    for spec in specs:
        assert spec.last_name not in log_text
