"""Ingest is idempotent and crash-safe: running it again, in any order, or after a kill, adds and loses nothing."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mailgen
import pytest
from conftest import Cli, stored_pdfs

NOTHING = {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}


def listing(cli: Cli) -> dict[str, dict]:
    """Every indexed certificate (an empty query lists them all), keyed by dossier number."""
    result = cli.search("", limit=500)
    assert result["total"] == len(result["results"])
    return {c["dossier"]: c for c in result["results"]}


def stable_status(cli: Cli) -> dict:
    """`status --json` without the timestamps that legitimately move."""
    status = cli.status()
    status.pop("last_ingest")
    status["quarantine"] = [(q["path"], q["item"], q["reason"], q["detail"]) for q in status["quarantine"]]
    return status


def touch_all(root: Path, seconds: int = 10) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def spec_with_ins(rng: random.Random, **overrides: object) -> mailgen.CertSpec:
    spec = mailgen.random_spec(rng, sex="F", birth_date=datetime.date(1984, 3, 9), **overrides)
    spec.ins = mailgen.random_ins(rng, "F", spec.birth_date)
    return spec


# --- running twice ---------------------------------------------------------------------------------------------

def test_second_run_over_the_same_tree_adds_nothing(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(200)
    specs = [mailgen.random_spec(rng) for _ in range(13)]
    tree = tmp_path / "Documents"
    mailgen.write_eml(
        tree / "Téléchargements",
        [mailgen.make_message(s) for s in specs[:4]]
        + [mailgen.other_mail(rng, i) for i in range(2)]
        + [mailgen.truncate(mailgen.make_message(mailgen.random_spec(rng)), 0.5), mailgen.spoof(mailgen.random_spec(rng))]
        + [mailgen.forward(mailgen.make_message(specs[0]))],
    )
    mailgen.write_mbox(
        tree / "Thunderbird" / "Inbox", [mailgen.make_message(s) for s in specs[4:8]] + [mailgen.other_mail(rng, 3)]
    )
    mailgen.write_maildir(tree / "Maildir", [mailgen.make_message(s) for s in specs[8:12]] + [mailgen.other_mail(rng, 4)])
    (tree / mailgen.pdf_filename(specs[12])).write_bytes(mailgen.make_pdf(specs[12]))
    (tree / "Téléchargements" / mailgen.pdf_filename(specs[1])).write_bytes(mailgen.make_pdf(specs[1]))

    cli.trust_forwarders("secretariat@labo.mssante.fr")
    first = cli.ingest(tree)
    assert first == {"new": 13, "duplicates": 2, "ignored": 4, "quarantined": 2}
    before, certificates = stable_status(cli), listing(cli)
    assert before["certificates"] == 13 and before["quarantined"] == 2
    assert sorted(certificates) == sorted(s.dossier for s in specs)

    assert cli.ingest(tree) == NOTHING
    assert stable_status(cli) == before

    # Every file looks modified (copied back from a backup, antivirus touch): read again, still nothing new.
    touch_all(tree)
    again = cli.ingest(tree)
    assert again["new"] == 0
    assert again["quarantined"] == 2
    after = stable_status(cli)
    assert {k: v for k, v in after.items() if k != "quarantine"} == {k: v for k, v in before.items() if k != "quarantine"}
    assert [q[:3] for q in after["quarantine"]] == [q[:3] for q in before["quarantine"]]
    assert {d: (c["id"], c["pdf_only"], c["message_id"]) for d, c in listing(cli).items()} == {
        d: (c["id"], c["pdf_only"], c["message_id"]) for d, c in certificates.items()
    }
    assert cli.ingest(tree) == NOTHING


# --- one certificate, many copies ------------------------------------------------------------------------------

def write_every_form(root: Path, spec: mailgen.CertSpec) -> dict[str, Path]:
    """The same certificate as a Roundcube .eml, in a Thunderbird mbox, in a Maildir, forwarded, and as a saved PDF."""
    raw = mailgen.make_message(spec)
    forms = {
        "eml": root / "eml",
        "mbox": root / "Thunderbird",
        "maildir": root / "Maildir",
        "forward": root / "transferts",
        "pdf": root / "Téléchargements",
    }
    mailgen.write_eml(forms["eml"], [raw])
    mailgen.write_mbox(forms["mbox"] / "Inbox", [raw])
    mailgen.write_maildir(forms["maildir"], [raw])
    mailgen.write_eml(forms["forward"], [mailgen.forward(raw)])
    forms["pdf"].mkdir()
    (forms["pdf"] / mailgen.pdf_filename(spec)).write_bytes(mailgen.make_pdf(spec))
    return forms


ORDERS = {
    "pdf_first": [["pdf"], ["eml"], ["mbox"], ["maildir"], ["forward"]],
    "mail_first": [["eml"], ["mbox"], ["maildir"], ["forward"], ["pdf"]],
    "all_at_once": [["pdf", "eml", "mbox", "maildir", "forward"]],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_one_certificate_in_every_form_is_one_record(cli: Cli, tmp_path: Path, order: str) -> None:
    spec = spec_with_ins(random.Random(201), last_name="LEFÈVRE", first_name="Émilie")
    forms = write_every_form(tmp_path / "sources", spec)
    cli.trust_forwarders("secretariat@labo.mssante.fr")
    totals = {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}
    for step, group in enumerate(ORDERS[order]):
        counts = cli.ingest(*(forms[name] for name in group))
        for key in totals:
            totals[key] += counts[key]
        if step == 0 and group == ["pdf"]:
            [alone] = cli.search(spec.dossier)["results"]
            assert alone["pdf_only"] is True and alone["message_id"] is None  # the saved PDF alone made a record

    assert totals == {"new": 1, "duplicates": 4, "ignored": 0, "quarantined": 0}
    found = cli.search(spec.dossier)
    assert found["total"] == 1, found["results"]
    cert = found["results"][0]
    # Whatever came first, the record carries the mail's data.
    assert cert["pdf_only"] is False
    assert cert["message_id"] == spec.message_id
    assert cert["ins"] == spec.ins
    assert cert["last_name"] == "LEFÈVRE" and cert["first_name"] == "Émilie"
    assert cert["birth_date"] == "1984-03-09"
    assert cert["site_finess"] == spec.finess
    assert cert["result"] == spec.result
    assert cert["superseded"] is False
    assert cert["pdf_sha256"] == hashlib.sha256(mailgen.make_pdf(spec)).hexdigest()
    assert cli.search("lefevre emilie")["total"] == 1
    status = cli.status()
    assert (status["certificates"], status["pdf_only"], status["superseded"], status["quarantined"]) == (1, 0, 0, 0)


# --- re-issued certificates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("first", "second"),
    [("old_mail", "new_mail"), ("new_mail", "old_mail"), ("old_mail", "new_pdf"), ("new_pdf", "old_mail")],
)
def test_reissue_is_kept_apart_and_the_older_marked_superseded(cli: Cli, tmp_path: Path, first: str, second: str) -> None:
    rng = random.Random(202)
    old = mailgen.random_spec(rng, result="NEGATIF")
    new = dataclasses.replace(
        old,
        integrated_at=old.integrated_at + datetime.timedelta(hours=26),
        message_id="<reemis.4242.JavaMail.sidep@enovacom.easycrypt.fr>",
        result="POSITIF",
    )
    sources = {}
    for name, spec in (("old", old), ("new", new)):
        sources[f"{name}_mail"] = tmp_path / f"{name}_mail"
        mailgen.write_eml(sources[f"{name}_mail"], [mailgen.make_message(spec)])
        sources[f"{name}_pdf"] = tmp_path / f"{name}_pdf"
        sources[f"{name}_pdf"].mkdir()
        (sources[f"{name}_pdf"] / mailgen.pdf_filename(spec)).write_bytes(mailgen.make_pdf(spec))

    assert cli.ingest(sources[first])["new"] == 1
    assert cli.ingest(sources[second])["new"] == 1

    found = cli.search(old.dossier)
    assert found["total"] == 2
    by_result = {c["result"]: c for c in found["results"]}
    assert set(by_result) == {"NEGATIF", "POSITIF"}
    assert by_result["POSITIF"]["superseded"] is False, "the re-issued (newer) certificate must be the current one"
    assert by_result["NEGATIF"]["superseded"] is True
    status = cli.status()
    assert (status["certificates"], status["superseded"]) == (2, 1)
    # What the secretary sees: only the older line says it was replaced.
    lines = [line for line in cli.run("search", old.dossier).stdout.splitlines() if old.dossier in line]
    assert len(lines) == 2
    assert ["remplacé" in line for line in lines if "NEGATIF" in line] == [True]
    assert ["remplacé" in line for line in lines if "POSITIF" in line] == [False]
    # And again: nothing changes.
    assert cli.ingest(sources[first], sources[second]) == NOTHING
    assert cli.status()["superseded"] == 1


# --- crash safety ----------------------------------------------------------------------------------------------

def committed_certificates(home: Path) -> int:
    """How many certificates have reached the database so far, -1 before its tables exist
    (a read-only look, used only to time a kill)."""
    db = home / "index.sqlite3"
    if not db.exists():
        return -1
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=0.5)
        try:
            return con.execute("SELECT count(*) FROM certificates").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def ingest_and_kill(cli: Cli, path: Path, *, after: float | None = None, beyond: int | None = None) -> bool:
    """Start `sidep-helper ingest`, and SIGKILL it (with its workers) ``after`` seconds into the run (once the
    database exists: a kill at startup is another test), or as soon as more than ``beyond`` certificates are
    committed. Returns False if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "helper", "ingest", "--json", "--quiet", str(path)],
        env=cli.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    started = time.monotonic()
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if (
                (after is not None and elapsed >= after and committed_certificates(cli.home) >= 0)
                or (beyond is not None and committed_certificates(cli.home) > beyond)
                or elapsed > 60
            ):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.01)
        assert proc.returncode == 0
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def write_db_left_by_a_kill_at_startup(home: Path, state: str) -> None:
    """What `ingest` leaves when killed between opening the database and creating its tables."""
    home.mkdir(mode=0o700, parents=True)
    db = home / "index.sqlite3"
    if state == "empty_file":  # sqlite3.connect() has created the file, nothing written yet
        db.touch(mode=0o600)
    else:  # PRAGMA journal_mode = WAL done, schema not yet created
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode = WAL")
        con.close()


@pytest.mark.parametrize("state", ["empty_file", "wal_without_tables"])
def test_commands_work_after_the_first_ingest_was_killed_at_startup(cli: Cli, mail_dir: Path, state: str) -> None:
    write_db_left_by_a_kill_at_startup(cli.home, state)

    status = cli.run("status", "--json", check=False)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["certificates"] == 0
    search = cli.run("search", "--json", "martin", check=False)
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)["total"] == 0

    spec = mailgen.random_spec(random.Random(204))
    mailgen.write_eml(mail_dir, [mailgen.make_message(spec)])
    assert cli.ingest(mail_dir) == {"new": 1, "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert cli.search(spec.dossier)["total"] == 1


@pytest.fixture(scope="module")
def crash_corpus() -> tuple[list[mailgen.CertSpec], list[bytes]]:
    """3000 certificates with distinct dossier numbers, in every encoding variant (small PDFs keep it quick)."""
    rng = random.Random(203)
    specs: list[mailgen.CertSpec] = []
    seen: set[str] = set()
    while len(specs) < 3000:
        spec = mailgen.random_spec(rng)
        if spec.dossier not in seen:
            seen.add(spec.dossier)
            specs.append(spec)
    raws = [
        mailgen.make_message(s, pdf=mailgen.make_pdf(s, size=6000), **mailgen.corpus_variant(i))  # type: ignore[arg-type]
        for i, s in enumerate(specs)
    ]
    return specs, raws


def assert_complete_index(cli: Cli, specs: list[mailgen.CertSpec], sample_size: int) -> None:
    status = cli.status()
    assert status["certificates"] == len(specs)
    assert (status["superseded"], status["pdf_only"], status["quarantined"]) == (0, 0, 0)
    sample = random.Random(len(specs)).sample(specs, sample_size)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: cli.search(s.dossier), sample))
    blobs = stored_pdfs(cli.home)
    for spec, found in zip(sample, results, strict=True):
        assert found["total"] == 1, (spec.dossier, found["results"])
        cert = found["results"][0]
        assert (cert["last_name"], cert["message_id"]) == (spec.last_name, spec.message_id)
        # The certificate's PDF is stored and intact.
        assert blobs[cert["pdf_sha256"]] == mailgen.make_pdf(spec, size=6000)
    for sha256, data in blobs.items():  # no PDF half-written by a killed run
        assert hashlib.sha256(data).hexdigest() == sha256


def test_killed_maildir_ingest_resumes_without_loss_or_duplicates(cli: Cli, tmp_path: Path, crash_corpus) -> None:
    specs, raws = crash_corpus
    root = mailgen.write_maildir(tmp_path / "Maildir", raws)
    committed = []
    # Three kills, each run resuming what the previous one left: while parsing, before any commit; right after
    # a batch was committed, with the next one in flight; early in the resumed run.
    for kill_point in ({"after": 0.6}, {"beyond": 0}, {"after": 1.0}):
        ingest_and_kill(cli, root, **kill_point)
        committed.append(cli.status()["certificates"])
    assert 0 < committed[1] < len(specs), f"the kill after a commit did not land mid-run: {committed}"
    assert committed == sorted(committed), "committed certificates were lost by a later kill"

    counts = cli.ingest(root)

    assert counts == {"new": len(specs) - committed[-1], "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert cli.status()["files"] == len(specs)
    assert_complete_index(cli, specs, 50)
    before = stable_status(cli)
    assert cli.ingest(root) == NOTHING
    assert stable_status(cli) == before


def test_killed_mbox_ingest_resumes_without_loss_or_duplicates(cli: Cli, tmp_path: Path, crash_corpus) -> None:
    specs, raws = crash_corpus
    specs, raws = specs[:2000], raws[:2000]
    box = mailgen.write_mbox(tmp_path / "Thunderbird" / "Inbox", raws)
    committed = []
    ingest_and_kill(cli, box, after=0.9)
    committed.append(cli.status()["certificates"])
    ingest_and_kill(cli, box, beyond=committed[-1])
    committed.append(cli.status()["certificates"])
    assert committed == sorted(committed), "committed certificates were lost by a later kill"

    counts = cli.ingest(box)

    assert counts == {"new": len(specs) - committed[-1], "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert cli.status()["files"] == 1
    assert_complete_index(cli, specs, 10)
    before = stable_status(cli)
    assert cli.ingest(tmp_path / "Thunderbird") == NOTHING
    assert stable_status(cli) == before
