"""SIGKILL of the real ``sidep-helper serve`` while its watcher ingests a folder of many files and
while messages are pushed over the API, three times, then a clean restart: every acknowledged (2xx)
pushed message and every watched file is in the index exactly once, and SQLite's integrity check
passes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mailgen
from conftest import Cli, free_port, recent_spec, start, wait_healthy

FILES_PER_ROUND = 150
ROUNDS = 3


def _unique_specs(rng: random.Random, count: int, seen: set[str]) -> list[mailgen.CertSpec]:
    specs = []
    while len(specs) < count:
        spec = recent_spec(rng)
        if spec.dossier not in seen:
            seen.add(spec.dossier)
            specs.append(spec)
    return specs


def _push(port: int, token: str, raw: bytes) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/messages", data=raw, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status if json.loads(resp.read())["results"][0]["status"] in ("new", "duplicate") else 0
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # the service died before answering: not acknowledged


def _search_total(port: int, token: str, dossier: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/certificates?" + urllib.parse.urlencode({"q": dossier}),
        headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = json.loads(resp.read())
    return sum(1 for c in body["results"] if c["dossier"] == dossier)


def _count(home: Path) -> int:
    db = sqlite3.connect(f"{(home / 'index.sqlite3').resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM certificates").fetchone()[0]
    finally:
        db.close()


def test_sigkill_during_watch_and_push_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    drop = tmp_path / "Téléchargements"
    drop.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n',
        encoding="utf-8")
    cli = Cli(home)
    rng = random.Random(55)
    seen: set[str] = set()
    watched: list[str] = []
    acknowledged: list[str] = []
    sent: list[str] = []
    interrupted: list[bool] = []
    token = ""
    for round_no in range(ROUNDS):
        files = _unique_specs(rng, FILES_PER_ROUND, seen)
        pushes = _unique_specs(rng, 200, seen)
        for spec in files:  # written aside, then renamed in: a download finishing
            (staging / f"{spec.dossier}.eml").write_bytes(mailgen.make_message(spec))
        proc = start(home, port, stderr_to=tmp_path / "stderr.txt")
        try:
            wait_healthy(port, proc)
            token = token or cli.run("token").stdout.strip()
            stop = threading.Event()

            def pusher(batch: list[mailgen.CertSpec] = pushes, stop: threading.Event = stop, token: str = token) -> None:
                for spec in batch:
                    if stop.is_set():
                        return
                    sent.append(spec.dossier)
                    if _push(port, token, mailgen.make_message(spec)) == 200:
                        acknowledged.append(spec.dossier)

            thread = threading.Thread(target=pusher)
            thread.start()
            for spec in files:
                os.replace(staging / f"{spec.dossier}.eml", drop / f"{spec.dossier}.eml")
                watched.append(spec.dossier)
            # Kill once the watcher has committed part of this round's files (or after a while); every
            # other round, a short random moment after the files landed (a batch may commit all at once,
            # so waiting for part of it can miss the window: this way some kill lands before the commit).
            deadline = time.monotonic() + (5 if round_no % 2 else rng.uniform(0.2, 1.5))
            while time.monotonic() < deadline:
                if _count(home) - len(acknowledged) >= len(watched) - FILES_PER_ROUND * (1 - (round_no + 1) / 4):
                    break
                time.sleep(0.02)
            # On a loaded machine (parallel workers, other test runs) the pusher may not have had a
            # single answer yet by the last kill: give it one, so that there are always pushes to check.
            deadline = time.monotonic() + 30
            while round_no == ROUNDS - 1 and not acknowledged and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            stop.set()
            thread.join(timeout=30)
            interrupted.append(_count(home) < len(watched) + len(acknowledged))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert acknowledged, "no push was acknowledged before the kills: the test proves nothing"
    assert any(interrupted), "every kill came after the ingest had finished: the test proves nothing"

    proc = start(home, port, stderr_to=tmp_path / "stderr.txt")
    try:
        wait_healthy(port, proc)
        deadline = time.monotonic() + 120
        while True:  # the restarted watcher catches up with the files it had not finished
            status = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/status", headers={"Authorization": f"Bearer {token}"}),
                timeout=10).read())
            if status["counts"]["certificates"] >= len(watched) + len(acknowledged) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing = [d for d in watched + acknowledged if _search_total(port, token, d) != 1]
        assert not missing, f"{len(missing)} certificate(s) absent or duplicated, e.g. {missing[:5]}"
        unacknowledged = set(sent) - set(acknowledged)
        assert all(_search_total(port, token, d) <= 1 for d in unacknowledged)
        assert status["counts"]["certificates"] <= len(watched) + len(sent)
        assert list((home / "envois").iterdir()) == []  # uploads cut by a kill were swept at start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    db = sqlite3.connect(home / "index.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == status["counts"]["certificates"]
    finally:
        db.close()
