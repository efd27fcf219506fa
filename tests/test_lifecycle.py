"""Retention and lifecycle as a lab and an auditor see them (issue 7, items 10, 11 and 16).

- A purge (command line, or the real service at start) leaves no byte of the purged patients
  anywhere in the data directory: every file is read whole and searched for every form their
  names may take on disk (UTF-8, Latin-1, upper/lower case, accents folded, quoted-printable,
  RFC 2231 percent-encoding, RFC 2047 encoded words decoded), while the other certificates stay
  searchable, and a re-scan of the same Downloads folder does not bring them back.
- Certificates already past the retention when they arrive are not stored: ``expired``.
- A search for a purged dossier says so (``purged``), and where to look.
- A duplicate leaves no PDF behind; the quarantine is capped, oldest evicted first.

Time passing is simulated the way it happens for real: IT lowers ``retention_days`` in the
configuration, so certificates 60 days old are then past it; quarantine rows are aged in the
index file while the service is stopped (a quarantined message carries no date of its own).
"""

from __future__ import annotations

import datetime as dt
import email.header
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import mailgen
from apicontract import validate
from conftest import Cli, free_port, start, stored_pdfs, wait_healthy

NOW = dt.datetime.now().replace(microsecond=0, second=0)
SITE = mailgen.luhn_finess("75071218")

# Purged patients: names nobody else in these tests carries, accents of every kind.
PURGED = [
    dict(last_name="KERVÉGUÉNÉ", first_name="Anaïs-Sévérine"),
    dict(last_name="D'ARÇONVILLIÈRE", first_name="Éloïse"),
    dict(last_name="ŒUVRARDIÈRE", first_name="Zéphyrine"),
]
KEPT = [
    dict(last_name="GARDÉ-PRÉSENT", first_name="Noémie"),
    dict(last_name="RESTANTE", first_name="Aurélie"),
]


def aged(rng: random.Random, days: int, **names: Any) -> mailgen.CertSpec:
    sampled = NOW - dt.timedelta(days=days)
    return mailgen.random_spec(rng, sampled_at=sampled, integrated_at=sampled + dt.timedelta(hours=2),
                               finess=SITE, **names)


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", mailgen.ascii_fold(text)) if not unicodedata.combining(c))


def name_forms(names: list[str]) -> tuple[set[bytes], set[str]]:
    """Byte forms to look for in files, and folded words to look for in decoded RFC 2047 text."""
    words = {w for n in names for w in re.split(r"[-' ]", n) if len(w) >= 5}
    raw: set[bytes] = set()
    folded: set[str] = set()
    for word in words:
        variants = {word, word.upper(), word.lower(), word.capitalize(), _fold(word), _fold(word).upper(),
                    _fold(word).lower()}
        folded.add(_fold(word).lower())
        for v in variants:
            for charset in ("utf-8", "latin-1", "cp1252"):
                try:
                    data = v.encode(charset)
                except UnicodeEncodeError:
                    continue
                raw.add(data)
                raw.add("".join(f"={b:02X}" if b > 127 else chr(b) for b in data).encode())  # quoted-printable
                raw.add(urllib.parse.quote(v, encoding=charset, safe="").encode())  # RFC 2231 / URL
    return raw, folded


_ENCODED_WORD = re.compile(rb"=\?[^?\s]{1,40}\?[bBqQ]\?[^?\s]{0,400}\?=")


def traces(data_dir: Path, names: list[str]) -> list[str]:
    """Every place under ``data_dir`` (file names and contents, read whole) where a form of ``names`` is."""
    raw, folded = name_forms(names)
    found = []
    for path in sorted(p for p in data_dir.rglob("*")):
        rel = str(path.relative_to(data_dir))
        if any(f in _fold(rel).lower() for f in folded):
            found.append(f"file name {rel}")
        if not path.is_file():
            continue
        data = path.read_bytes()
        found += [f"{rel}: {form!r}" for form in raw if form in data]
        for word in _ENCODED_WORD.findall(data):
            try:
                text = str(email.header.make_header(email.header.decode_header(word.decode("ascii"))))
            except (ValueError, LookupError, UnicodeError):
                continue
            found += [f"{rel}: RFC 2047 {word[:40]!r}" for f in folded if f in _fold(text).lower()]
    return found


def set_retention(home: Path, days: int, extra: str = "") -> None:
    config = home / "config.toml"
    rest = config.read_text(encoding="utf-8") if config.exists() else ""
    rest = "\n".join(line for line in rest.splitlines() if not line.startswith("retention_days"))
    home.mkdir(parents=True, exist_ok=True)
    config.write_text(f"retention_days = {days}\n{extra}{rest}\n", encoding="utf-8")


# --- command line -------------------------------------------------------------------------------------------

def test_cli_purge_leaves_no_trace_and_a_rescan_does_not_bring_them_back(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(10)
    a, b, c = (aged(rng, 60, **n) for n in PURGED)
    kept1, kept2 = (aged(rng, 2, **n) for n in KEPT)
    downloads = tmp_path / "Téléchargements"
    # A: Roundcube's .eml (named after the subject); B: Latin-1 body, Q-encoded subject, and its bare PDF.
    emls = mailgen.write_eml(downloads, [
        mailgen.make_message(a),
        mailgen.make_message(b, charset="iso-8859-1", subject_encoding="q"),
        mailgen.make_message(kept1),
    ])
    bare_pdf = downloads / mailgen.pdf_filename(b)
    bare_pdf.write_bytes(mailgen.make_pdf(b))
    inbox = mailgen.write_mbox(tmp_path / "Thunderbird" / "Inbox", [mailgen.make_message(c), mailgen.make_message(kept2)])
    counts = cli.ingest(downloads, inbox)
    assert counts["new"] >= 5 and "expired" not in counts, counts
    purged_names = [n for p in PURGED for n in p.values()]
    assert traces(cli.home, purged_names), "the scan must see the names before the purge"

    set_retention(cli.home, 30)
    out = cli.json("purge")
    assert out["retention_days"] == 30 and len(out["ids"]) >= 3

    assert traces(cli.home, purged_names) == []
    for spec in (kept1, kept2):
        assert cli.search(spec.last_name)["total"] == 1
    for spec in (a, b, c):
        assert cli.search(spec.last_name)["total"] == 0
        found = cli.search(spec.dossier)
        assert found["results"] == [] and found["purged"] == {"retention_days": 30}
        assert cli.search(spec.dossier, site=spec.finess)["purged"] == {"retention_days": 30}
    text = cli.run("search", a.dossier)
    assert text.returncode == 1
    assert "supprimé automatiquement après 30 jours" in text.stdout and "boîte aux lettres" in text.stdout
    assert "orthographe" not in text.stdout
    other = cli.search("0000000099")
    assert "purged" not in other  # a dossier never seen is not "purged"

    # The same folders scanned again: nothing comes back, nothing is re-read.
    again = cli.ingest(downloads, inbox)
    assert again == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}, again
    # Touched (a copy tool, an antivirus): read again, found expired, still not stored.
    later = time.time() + 5
    for path in (emls[0], bare_pdf):
        os.utime(path, (later, later))
    proc = cli.run("ingest", "--json", downloads)
    touched = json.loads(proc.stdout)
    assert touched["new"] == 0 and touched["expired"] == 2, touched
    assert sorted(f["path"] for f in touched["expired_files"]) == sorted(str(p) for p in (emls[0], bare_pdf))
    assert traces(cli.home, purged_names) == []
    assert cli.ingest(downloads) == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert cli.status()["expired"] == 2


def test_purge_killed_at_any_moment_is_finished_by_the_next_one(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(16)
    sampled = NOW - dt.timedelta(days=60)
    old = [mailgen.random_spec(rng, sampled_at=sampled - dt.timedelta(minutes=i), last_name=f"TUÉ{mailgen.synth_surname(rng)}ÉE")
           for i in range(600)]
    kept = [mailgen.random_spec(rng, sampled_at=NOW - dt.timedelta(days=2, minutes=i), last_name="CONSERVÉ",
                                first_name="Gardé") for i in range(20)]
    mailgen.write_eml(tmp_path / "mail", [mailgen.make_message(s) for s in old + kept])
    assert cli.ingest(tmp_path / "mail")["new"] == len(old) + len(kept)
    set_retention(cli.home, 30)
    names = sorted({s.last_name for s in old})
    for delay in (0.15, 0.3, 0.45, 0.7):  # python start-up, then the purge transaction, then the scrub
        home = tmp_path / f"home-{delay}"
        shutil.copytree(cli.home, home)
        copy = Cli(home)
        proc = subprocess.Popen([sys.executable, "-m", "helper", "purge"], env=copy.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        copy.run("purge")
        assert traces(home, names) == [], delay
        assert copy.status()["certificates"] == len(kept)
        db = sqlite3.connect(home / "index.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()


def test_certificate_past_retention_at_arrival_is_not_stored(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(11)
    old = aged(rng, 120, last_name="PÉRIMÉE-HORSDÉLAI", first_name="Gwénaëlle")
    fresh = aged(rng, 1, last_name="ACTUELLE", first_name="Inès")
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(old), mailgen.make_message(fresh)])
    proc = cli.run("ingest", tmp_path / "eml")
    assert "1 nouveau(x) certificat(s)" in proc.stdout and "1 expiré(s) non conservé(s)" in proc.stdout
    assert "90 jours" in proc.stdout
    assert cli.search("perimee")["total"] == 0 and cli.search("actuelle")["total"] == 1
    assert cli.search(old.dossier)["purged"] == {"retention_days": 90}
    assert len(stored_pdfs(cli.home)) == 1  # the expired one's PDF was never written
    status = cli.status()
    assert status["expired"] == 1 and status["certificates"] == 1
    assert "déjà expirés à leur arrivée (non conservés) : 1" in cli.run("status").stdout
    assert traces(cli.home, [old.last_name, old.first_name]) == []
    # JSON names the file; a second run does not read it again.
    mailgen.write_eml(tmp_path / "more", [mailgen.make_message(aged(rng, 200))])
    more = cli.ingest(tmp_path / "more")
    assert more["expired"] == 1 and more["new"] == 0
    assert cli.ingest(tmp_path / "more") == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}


def test_tombstones_expire_after_a_year(cli: Cli, tmp_path: Path) -> None:
    old = aged(random.Random(17), 100)
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(old)])
    assert cli.ingest(tmp_path / "eml")["expired"] == 1
    assert cli.search(old.dossier)["purged"] == {"retention_days": 90}
    cli.run("purge")
    assert cli.search(old.dossier)["purged"] == {"retention_days": 90}  # a purge keeps young tombstones
    db = sqlite3.connect(cli.home / "index.sqlite3")  # a year and a day pass
    db.execute("UPDATE tombstones SET created = ?", ((dt.date.today() - dt.timedelta(days=366)).isoformat(),))
    db.commit()
    db.close()
    cli.run("purge")
    assert "purged" not in cli.search(old.dossier)
    assert cli.status()["expired"] == 0


def test_resent_certificate_with_another_pdf_leaves_no_orphan(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(12)
    spec = aged(rng, 3)
    mailgen.write_eml(tmp_path / "first", [mailgen.make_message(spec)])
    assert cli.ingest(tmp_path / "first")["new"] == 1
    other_pdf = mailgen.make_pdf(spec, size=90_000)  # the same certificate, another PDF
    mailgen.write_eml(tmp_path / "again", [mailgen.make_message(spec, pdf=other_pdf)])
    assert cli.ingest(tmp_path / "again") == {"new": 0, "duplicates": 1, "ignored": 0, "quarantined": 0}
    assert [len(pdf) for pdf in stored_pdfs(cli.home).values()] == [len(mailgen.make_pdf(spec))]


def test_pdf_alone_completed_by_its_mail_leaves_one_pdf(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(15)
    spec = aged(rng, 3)
    downloads = tmp_path / "Téléchargements"
    downloads.mkdir()
    (downloads / mailgen.pdf_filename(spec)).write_bytes(mailgen.make_pdf(spec, size=60_000))
    assert cli.ingest(downloads)["new"] == 1
    assert cli.search(spec.dossier)["results"][0]["pdf_only"] is True
    mailgen.write_eml(tmp_path / "mail", [mailgen.make_message(spec)])  # the mail carries another PDF file
    assert cli.ingest(tmp_path / "mail") == {"new": 0, "duplicates": 1, "ignored": 0, "quarantined": 0}
    assert cli.search(spec.dossier)["results"][0]["pdf_only"] is False
    assert [len(pdf) for pdf in stored_pdfs(cli.home).values()] == [len(mailgen.make_pdf(spec))]


def test_quarantine_cap_setting(cli: Cli) -> None:
    assert cli.json("config")["quarantine_max_mb"] == 500
    cli.home.mkdir(parents=True, exist_ok=True)
    (cli.home / "config.toml").write_text("quarantine_max_mb = 0\n", encoding="utf-8")
    proc = cli.run("status", check=False)
    assert proc.returncode == 2 and "« quarantine_max_mb » doit être un nombre entier de Mo" in proc.stderr
    (cli.home / "config.toml").write_text("quarantine_max_mb = 20\n", encoding="utf-8")
    assert cli.json("config")["quarantine_max_mb"] == 20
    assert cli.status()["quarantine_max_mb"] == 20


# --- the real service ----------------------------------------------------------------------------------------

class Service:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        self.proc = start(self.home, self.port)
        wait_healthy(self.port, self.proc)
        self.token = Cli(self.home).run("token").stdout.strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "message/rfc822")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def push(self, raw: bytes) -> str:
        status, body = self.call("POST", "/api/v1/messages", raw)
        assert status == 200, body
        return body["results"][0]["status"]

    def search(self, q: str) -> dict[str, Any]:
        status, body = self.call("GET", "/api/v1/certificates?" + urllib.parse.urlencode({"q": q}))
        assert status == 200
        validate(body, "/api/v1/certificates", "GET", 200)
        return body

    def status(self) -> dict[str, Any]:
        status, body = self.call("GET", "/api/v1/status")
        assert status == 200
        validate(body, "/api/v1/status", "GET", 200)
        return body


def _service(tmp_path: Path, extra: str = "") -> tuple[Service, Path]:
    home = tmp_path / "home"
    drop = tmp_path / "Téléchargements"
    drop.mkdir(parents=True)
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n{extra}',
        encoding="utf-8",
    )
    return Service(home, port), drop


def _wait(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_service_purge_at_start_leaves_no_trace(tmp_path: Path) -> None:
    rng = random.Random(13)
    service, drop = _service(tmp_path)
    a, b, c = (aged(rng, 60, **n) for n in PURGED)
    kept = aged(rng, 2, **KEPT[0])
    spoof_spec = aged(rng, 1, last_name="QUARANTAINÉE-BÉRANGÈRE", first_name="Maïwenn")
    try:
        service.start()
        assert service.push(mailgen.make_message(a)) == "new"
        # The same certificate pushed again with another PDF: a duplicate, and no second PDF on disk.
        assert service.push(mailgen.make_message(a, pdf=mailgen.make_pdf(a, size=70_000))) == "duplicate"
        assert service.push(mailgen.make_message(b, charset="iso-8859-1", subject_encoding="q")) == "new"
        assert service.push(mailgen.spoof(spoof_spec)) == "quarantined"
        mailgen.write_eml(drop, [mailgen.make_message(c), mailgen.make_message(kept)])
        _wait(lambda: service.search(c.dossier)["total"] == 1 and service.search(kept.dossier)["total"] == 1)
        assert len(stored_pdfs(service.home)) == 4
        # A certificate already past retention, pushed or dropped: not stored, said so.
        expired = aged(rng, 100, last_name="EXPIRÉE-DÈSLARRIVÉE", first_name="Ysaline")
        assert service.push(mailgen.make_message(expired)) == "expired"
        late = aged(rng, 150)
        mailgen.write_eml(drop, [mailgen.make_message(late)])
        _wait(lambda: (service.status()["last_ingest"] or {}).get("expired") == 1)
        status = service.status()
        assert status["counts"]["expired"] == 2 and status["counts"]["certificates"] == 4
        assert service.search(late.dossier)["purged"] == {"retention_days": 90}
    finally:
        service.stop()

    # 40 days pass for the quarantined message; IT lowers the retention to 30 days.
    then = (NOW - dt.timedelta(days=40)).isoformat()
    db = sqlite3.connect(service.home / "index.sqlite3")
    db.execute("UPDATE quarantine SET first_seen = ?, last_seen = ?", (then, then))
    db.commit()
    db.close()
    for path in (service.home / "quarantine").iterdir():
        os.utime(path, (time.time() - 40 * 86400,) * 2)
    set_retention(service.home, 30)
    purged_names = [n for p in [*PURGED, {"x": spoof_spec.last_name, "y": spoof_spec.first_name}] for n in p.values()]
    assert traces(service.home, purged_names)

    try:
        service.start()  # purges at start
        _wait(lambda: service.status()["counts"]["certificates"] == 1)
        _wait(lambda: service.status()["counts"]["quarantined"] == 0)
        assert traces(service.home, purged_names) == []  # while it runs
        assert service.search(kept.last_name)["total"] == 1
        assert service.search("kerveguene")["total"] == 0
        assert service.search(a.dossier)["purged"] == {"retention_days": 30}
        assert service.status()["counts"]["quarantine_bytes"] == 0
    finally:
        service.stop()
    assert traces(service.home, purged_names) == []
    assert not any((service.home / "quarantine").iterdir())


def test_quarantine_is_capped_oldest_first(tmp_path: Path) -> None:
    rng = random.Random(14)
    service, _ = _service(tmp_path, "quarantine_max_mb = 1\n")
    try:
        service.start()
        kept = []
        for _ in range(3):  # about 380 kB each: two fit in 1 MB, the third push evicts the first
            raw = mailgen.spoof(aged(rng, 1), pdf=mailgen.make_pdf(aged(rng, 1), size=280_000))
            assert 350_000 < len(raw) < 500_000
            assert service.push(raw) == "quarantined"
            kept.append(raw)
            time.sleep(0.05)
        counts = service.status()["counts"]
        assert counts["quarantine_evicted"] == 1 and counts["quarantined"] == 2
        assert 0 < counts["quarantine_bytes"] <= 1024 * 1024
        on_disk = {p.read_bytes() for p in (service.home / "quarantine").iterdir()}
        assert on_disk == set(kept[1:])  # the oldest went first
        text = Cli(service.home).run("status").stdout
        assert "1 supprimé(s) pour respecter ce plafond" in text and "sur 1 Mo au plus" in text
        as_json = Cli(service.home).status()
        assert as_json["quarantine_evicted"] == 1 and as_json["quarantine_max_mb"] == 1
    finally:
        service.stop()


def test_pdf_left_by_a_killed_run_is_swept_once_an_hour_old(cli: Cli, tmp_path: Path) -> None:
    """A worker stores a PDF before the main process commits its row: a run killed in between leaves
    a PDF no certificate refers to. The sweep (at each service start) removes it once it is an hour
    old — a younger one may belong to a row being committed — and keeps every PDF in use."""
    from helper.index.store import Store

    spec = aged(random.Random(21), 2)
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(spec)])
    assert cli.ingest(tmp_path / "eml")["new"] == 1
    (kept,) = stored_pdfs(cli.home)
    old_orphan, young_orphan = "a" * 64, "b" * 64
    store = Store(cli.home)
    try:
        store.blobs.put(old_orphan, b"%PDF-1.4 ORPHELINE-ANCIENNE")
        store.blobs.put(young_orphan, b"%PDF-1.4 ORPHELINE-RECENTE")
        db = sqlite3.connect(cli.home / "pdf" / "pdfs.sqlite3")
        db.execute("UPDATE pdfs SET added = added - 7200 WHERE sha256 IN (?, ?)", (old_orphan, kept))
        db.commit()
        db.close()
        assert store.sweep_orphan_pdfs() == 1
    finally:
        store.close()
    assert set(stored_pdfs(cli.home)) == {kept, young_orphan}
