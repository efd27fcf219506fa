"""Live folder watching: real files, real watchdog observers, real SQLite (no mocks)."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mailgen
import pytest
from conftest import Cli

from helper.config import Settings
from helper.index.ingest import Report
from helper.index.search import Searcher
from helper.index.store import DB_NAME, Store
from helper.service import watch
from helper.service.watch import Watcher, default_folders, thunderbird_mail_folders

QUIET = {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    """Settings with nothing watched by default: each test says what it watches."""
    values: dict[str, object] = {"watch_downloads": False, "watch_thunderbird": False} | overrides
    return Settings(data_dir=data_dir, config_file=data_dir.parent / "absent.toml", **values)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout} s: {condition}")
        time.sleep(0.02)
    return time.monotonic() - started


def found(data_dir: Path, query: str) -> int:
    """How many certificates a search finds, read as the service does (its own read connection)."""
    if not (data_dir / DB_NAME).exists():
        return 0
    store = Store(data_dir, readonly=True)
    try:
        return Searcher(store.db).search(query)["total"]
    finally:
        store.close()


def query(data_dir: Path, sql: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(f"{(data_dir / DB_NAME).as_uri()}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def certificates(data_dir: Path) -> int:
    return query(data_dir, "SELECT count(*) FROM certificates")[0][0]


def mbox_bytes(tmp_path: Path, messages: list[bytes]) -> bytes:
    """What Thunderbird appends for these messages (written aside, outside any watched folder)."""
    scratch = tmp_path / "scratch" / "box"
    mailgen.write_mbox(scratch, messages)
    return scratch.read_bytes()


@pytest.fixture
def watchers() -> Iterator[Callable[..., Watcher]]:
    """Makes watchers and always stops them."""
    made: list[Watcher] = []

    def make(settings: Settings, extra: list[Path] | tuple[()] = (), on_report: Callable[[Report], None] | None = None):
        w = Watcher(settings, list(extra), on_report=on_report)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


@pytest.fixture
def thunderbird_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user home holding Thunderbird profiles the way Linux installs leave them."""
    home = tmp_path / "user"
    monkeypatch.setenv("HOME", str(home))
    tb = home / ".thunderbird"
    (tb / "abcd.default" / "Mail" / "Local Folders").mkdir(parents=True)
    (tb / "abcd.default" / "ImapMail" / "imap.mssante.fr").mkdir(parents=True)
    (tb / "wxyz.default-release" / "ImapMail").mkdir(parents=True)  # not listed in profiles.ini
    (tb / "Crash Reports").mkdir()
    (tb / "empty.default").mkdir()  # a profile without mail folders
    elsewhere = tmp_path / "D" / "profil-labo"  # IsRelative=0: a profile kept on another disk
    (elsewhere / "Mail").mkdir(parents=True)
    (tb / "profiles.ini").write_text(
        "[General]\nStartWithLastProfile=1\n\n"
        "[Profile0]\nName=default\nIsRelative=1\nPath=abcd.default\nDefault=1\n\n"
        f"[Profile1]\nName=labo\nIsRelative=0\nPath={elsewhere}\n\n"
        "[Install4F96D1932A9F858E]\nDefault=abcd.default\nLocked=1\n",
        encoding="utf-8",
    )
    (home / ".mozilla-thunderbird" / "old.default" / "Mail").mkdir(parents=True)  # Debian's old name
    return home


# --- a file saved in Downloads -------------------------------------------------------------------------------


def test_eml_saved_slowly_is_indexed_once_complete(tmp_path: Path, watchers) -> None:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    data = tmp_path / "data"
    reports: list[Report] = []
    w = watchers(settings_for(data), [downloads], on_report=reports.append)
    w.start()
    assert w.folders() == [{"path": str(downloads), "kind": "cli", "state": "surveillé", "detail": ""}]
    assert w.wait_idle(5)
    assert w.last_ingest() is None

    spec = mailgen.random_spec(random.Random(1))
    raw = mailgen.make_message(spec)
    path = downloads / "[Projet SI-DEP] Certificat de test.eml"
    third = len(raw) // 3
    with open(path, "wb") as fh:
        for i, chunk in enumerate((raw[:third], raw[third : 2 * third], raw[2 * third :])):
            fh.write(chunk)
            fh.flush()
            last_write = time.monotonic()
            if i < 2:
                time.sleep(0.3)
                # Partly written: neither read nor quarantined, nothing recorded about it.
                assert certificates(data) == 0
                assert query(data, "SELECT count(*) FROM quarantine")[0][0] == 0
                assert query(data, "SELECT count(*) FROM files")[0][0] == 0
    wait_until(lambda: found(data, spec.dossier) == 1, timeout=5)
    latency = time.monotonic() - last_write
    print(f"eml: searchable {latency:.2f} s after the last write")
    assert latency < 3
    assert w.wait_idle(5)
    # Read once, complete (a machine slow enough to stretch a pause could have read a part too:
    # then it was only deferred, never counted).
    assert [r.counts() for r in reports if r.counts() != QUIET] == [{**QUIET, "new": 1}]
    last = w.last_ingest()
    assert last is not None and {k: v for k, v in last.items() if k != "at"} == {**QUIET, "new": 1}
    assert query(data, "SELECT count(*) FROM quarantine")[0][0] == 0

    # A browser download: an empty placeholder under the final name, the data in a .part file,
    # then a rename. Nothing is read before the rename.
    pdf_spec = mailgen.random_spec(random.Random(2))
    pdf = mailgen.make_pdf(pdf_spec)
    final = downloads / mailgen.pdf_filename(pdf_spec)
    part = final.with_name(final.name + ".part")
    final.write_bytes(b"")
    part.write_bytes(pdf[: len(pdf) // 2])
    time.sleep(1.0)  # twice the stability delay
    assert certificates(data) == 1
    assert query(data, "SELECT count(*) FROM files WHERE path = ?", str(final)) == [(0,)]
    with open(part, "ab") as fh:
        fh.write(pdf[len(pdf) // 2 :])
    os.replace(part, final)
    renamed = time.monotonic()
    wait_until(lambda: found(data, pdf_spec.dossier) == 1, timeout=5)
    print(f"pdf: searchable {time.monotonic() - renamed:.2f} s after the rename")
    assert time.monotonic() - renamed < 3
    assert w.wait_idle(5)
    assert reports[-1].counts() == {**QUIET, "new": 1}
    assert certificates(data) == 2


def test_a_folder_dropped_at_once_is_read_in_one_run(tmp_path: Path, watchers) -> None:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    data = tmp_path / "data"
    rng = random.Random(3)
    specs = [mailgen.random_spec(rng) for _ in range(60)]
    mailgen.write_eml(tmp_path / "export", [mailgen.make_message(s) for s in specs])
    reports: list[Report] = []
    w = watchers(settings_for(data), [downloads], on_report=reports.append)
    w.start()
    assert w.wait_idle(5)
    os.rename(tmp_path / "export", downloads / "export")  # 60 files arrive in one burst
    wait_until(lambda: certificates(data) == 60, timeout=10)
    assert w.wait_idle(5)
    assert [r.counts() for r in reports] == [{**QUIET, "new": 60}]


# --- Thunderbird -----------------------------------------------------------------------------------------


def test_thunderbird_profiles_are_found(thunderbird_home: Path, tmp_path: Path, monkeypatch) -> None:
    tb = thunderbird_home / ".thunderbird"
    expected = {
        tb / "abcd.default" / "Mail",
        tb / "abcd.default" / "ImapMail",
        tb / "wxyz.default-release" / "ImapMail",
        tmp_path / "D" / "profil-labo" / "Mail",
        thunderbird_home / ".mozilla-thunderbird" / "old.default" / "Mail",
    }
    folders = thunderbird_mail_folders()
    assert set(folders) == expected
    assert len(folders) == len(expected)  # each once, though listed by profiles.ini and present on disk

    downloads = thunderbird_home / "Téléchargements"  # not created yet
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(downloads))
    configured = tmp_path / "Certificats"
    settings = settings_for(tmp_path / "data", watch_downloads=True, watch_thunderbird=True, watch=[configured])
    listed = default_folders(settings)
    assert listed[0] == (downloads, "downloads")
    assert {p for p, kind in listed if kind == "thunderbird"} == expected
    assert listed[-1] == (configured, "configured")
    assert len(listed) == 7

    w = Watcher(settings)
    w.start()
    try:
        states = {f["path"]: (f["kind"], f["state"]) for f in w.folders()}
        assert states[str(downloads)] == ("downloads", "absent")
        assert states[str(configured)] == ("configured", "absent")
        assert all(states[str(p)] == ("thunderbird", "surveillé") for p in expected)
        assert w.wait_idle(5)
    finally:
        w.stop()
    # Read only: nothing was written in the watched folders.
    assert sorted(p.name for p in (tb / "abcd.default" / "Mail").rglob("*")) == ["Local Folders"]


def test_thunderbird_mbox_grows_and_is_compacted(thunderbird_home: Path, tmp_path: Path, watchers) -> None:
    data = tmp_path / "data"
    rng = random.Random(4)
    specs = [mailgen.random_spec(rng) for _ in range(6)]
    messages = [mailgen.make_message(s) for s in specs]
    inbox = thunderbird_home / ".thunderbird" / "abcd.default" / "Mail" / "Local Folders" / "Inbox"
    mailgen.write_mbox(inbox, messages[:3])  # there before the helper starts

    reports: list[Report] = []
    w = watchers(settings_for(data, watch_thunderbird=True), on_report=reports.append)
    w.start()
    wait_until(lambda: reports, timeout=10)
    assert w.wait_idle(5)
    assert [r.counts() for r in reports] == [{**QUIET, "new": 3}]  # the catch-up

    # Two messages arrive: only they are read, nothing before them is read again.
    with open(inbox, "ab") as fh:
        fh.write(mbox_bytes(tmp_path, messages[3:5]))
    appended = time.monotonic()
    wait_until(lambda: len(reports) == 2, timeout=5)
    print(f"mbox: appended messages read {time.monotonic() - appended:.2f} s after the write")
    assert reports[-1].counts() == {**QUIET, "new": 2}

    # One message written in two goes, with a pause longer than the stability delay in between:
    # its first half is left for later, not quarantined.
    one = mbox_bytes(tmp_path, messages[5:6])
    with open(inbox, "ab") as fh:
        fh.write(one[: len(one) // 2])
    wait_until(lambda: len(reports) == 3, timeout=5)
    assert reports[-1].deferred == 1 and reports[-1].counts() == QUIET
    assert w.wait_idle(5)
    assert query(data, "SELECT count(*) FROM quarantine") == [(0,)]
    with open(inbox, "ab") as fh:
        fh.write(one[len(one) // 2 :])
    wait_until(lambda: found(data, specs[5].dossier) == 1, timeout=5)
    assert w.wait_idle(5)
    assert reports[-1].counts() == {**QUIET, "new": 1}

    # Thunderbird compacts the folder: the kept messages go to a temporary file renamed over the mbox.
    mailgen.write_mbox(inbox.with_name("nstmp"), [messages[i] for i in (0, 2, 3, 5)])
    os.replace(inbox.with_name("nstmp"), inbox)
    wait_until(lambda: reports[-1].duplicates, timeout=5)
    assert w.wait_idle(5)
    assert reports[-1].counts() == {**QUIET, "duplicates": 4}
    assert certificates(data) == 6
    assert query(data, "SELECT count(*) FROM quarantine") == [(0,)]
    assert query(data, "SELECT count(*) FROM files WHERE path LIKE '%nstmp%'") == [(0,)]


# --- start, stop, partial files --------------------------------------------------------------------------


def test_files_that_arrived_while_stopped_are_caught_up(tmp_path: Path, watchers) -> None:
    folder = tmp_path / "Certificats"
    folder.mkdir()
    data = tmp_path / "data"
    rng = random.Random(5)
    specs = [mailgen.random_spec(rng) for _ in range(3)]
    first = watchers(settings_for(data, watch=[folder]))
    first.start()
    assert first.wait_idle(5)
    assert first.folders()[0]["kind"] == "configured"
    (folder / "a.eml").write_bytes(mailgen.make_message(specs[0]))
    wait_until(lambda: found(data, specs[0].dossier) == 1)
    first.stop()

    (folder / "b.eml").write_bytes(mailgen.make_message(specs[1]))
    mailgen.write_maildir(folder / "Maildir", [mailgen.make_message(specs[2])])

    reports: list[Report] = []
    second = watchers(settings_for(data, watch=[folder]), on_report=reports.append)
    second.start()
    assert second.wait_idle(10)
    assert all(found(data, s.dossier) == 1 for s in specs)
    assert len(reports) == 1
    assert reports[0].counts() == {**QUIET, "new": 2}
    assert reports[0].unchanged == 1  # a.eml, skipped without being read


def test_partial_eml_waits_while_recent_and_the_cli_quarantines_it(tmp_path: Path, cli: Cli, watchers) -> None:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    reports: list[Report] = []
    w = watchers(settings_for(cli.home), [downloads], on_report=reports.append)
    w.start()
    assert w.wait_idle(5)
    spec = mailgen.random_spec(random.Random(6))
    raw = mailgen.make_message(spec)
    path = downloads / "certificat.eml"
    path.write_bytes(mailgen.truncate(raw, 0.5))  # a download stopped half-way, for now

    wait_until(lambda: reports, timeout=5)
    assert w.wait_idle(5)
    assert reports[-1].deferred == 1 and reports[-1].counts() == QUIET
    assert query(cli.home, "SELECT count(*) FROM quarantine") == [(0,)]
    assert query(cli.home, "SELECT count(*) FROM files WHERE path = ?", str(path)) == [(0,)]
    assert w.last_ingest() is None

    # The command line does not wait: the same file goes to quarantine.
    assert cli.ingest(downloads) == {**QUIET, "quarantined": 1}
    assert [(q["path"], q["reason"]) for q in cli.status()["quarantine"]] == [(str(path), "truncated")]

    # The download completes: the watcher reads it again and it leaves the quarantine.
    path.write_bytes(raw)
    wait_until(lambda: found(cli.home, spec.dossier) == 1, timeout=5)
    assert w.wait_idle(5)
    status = cli.status()
    assert (status["certificates"], status["quarantined"]) == (1, 0)


def test_stop_during_a_big_catch_up_is_prompt_and_loses_nothing(tmp_path: Path, cli: Cli, watchers) -> None:
    folder = tmp_path / "Downloads"
    n = 1000
    mailgen.write_eml(folder, [raw for _, raw in mailgen.corpus(random.Random(7), n)])
    reports: list[Report] = []
    w = watchers(settings_for(cli.home), [folder], on_report=reports.append)
    w.start()  # a catch-up this big uses the process pool
    time.sleep(0.7)
    started = time.monotonic()
    w.stop()
    took = time.monotonic() - started
    print(f"stop: {took:.2f} s")
    assert took < 3
    assert w.wait_idle(0)

    db = sqlite3.connect(cli.home / DB_NAME)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    done = db.execute("SELECT count(*) FROM certificates").fetchone()[0]
    print(f"stop: {done} of {n} certificates read before the stop")
    # Each certificate committed goes with its file's state: the next run reads exactly the rest.
    assert db.execute("SELECT count(*) FROM files").fetchone()[0] == done
    db.close()
    if done < n:
        assert reports == [] or reports[-1].stopped
    assert cli.ingest(folder) == {**QUIET, "new": n - done}
    assert cli.status()["certificates"] == n


def test_a_folder_created_later_is_picked_up(tmp_path: Path, watchers, monkeypatch) -> None:
    monkeypatch.setattr(watch, "RECHECK_SECONDS", 0.5)
    later = tmp_path / "Downloads"
    data = tmp_path / "data"
    w = watchers(settings_for(data), [later])
    w.start()
    assert w.wait_idle(5)
    assert w.folders() == [{"path": str(later), "kind": "cli", "state": "absent", "detail": "dossier introuvable"}]
    spec = mailgen.random_spec(random.Random(8))
    mailgen.write_eml(tmp_path / "tmp", [mailgen.make_message(spec)])
    os.rename(tmp_path / "tmp", later)  # the folder appears with a certificate already in it
    wait_until(lambda: found(data, spec.dossier) == 1, timeout=5)
    assert w.folders()[0]["state"] == "surveillé"
