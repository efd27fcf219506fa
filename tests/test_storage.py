"""What the helper leaves on disk: a private data folder, PDFs named by their hash, a WAL database."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import stat
from pathlib import Path

import mailgen
from conftest import Cli, stored_pdfs

from helper.parse.text import fold


def mixed_sources(root: Path, rng: random.Random) -> list[mailgen.CertSpec]:
    """Certificates in every on-disk form (.eml, mbox, Maildir, forwarded, saved PDF), with accented names."""
    specs = [
        mailgen.random_spec(rng, last_name="LEFÈVRE", first_name="Émilie"),
        mailgen.random_spec(rng, last_name="D'ALMEIDA", first_name="Joël"),
        mailgen.random_spec(rng, last_name="SAINT-ÉTIENNE", first_name="Anaïs"),
        mailgen.random_spec(rng, last_name="BRIGARAUD", first_name="Hippolyte"),
        mailgen.random_spec(rng, last_name="NGUYEN", first_name="Bérénice"),
        mailgen.random_spec(rng, last_name="CŒUR", first_name="Timothée"),
    ]
    mailgen.write_eml(root / "Téléchargements", [mailgen.make_message(specs[0]), mailgen.other_mail(rng, 0)])
    # The same certificate also saved as a PDF next to its mail: stored once.
    (root / "Téléchargements" / mailgen.pdf_filename(specs[0])).write_bytes(mailgen.make_pdf(specs[0]))
    mailgen.write_mbox(root / "Thunderbird" / "Inbox", [mailgen.make_message(s) for s in specs[1:3]])
    mailgen.write_maildir(root / "Maildir", [mailgen.make_message(specs[3])])
    mailgen.write_eml(root / "transferts", [mailgen.forward(mailgen.make_message(specs[4]))])
    (root / mailgen.pdf_filename(specs[5])).write_bytes(mailgen.make_pdf(specs[5]))
    mailgen.write_eml(root / "cassé", [mailgen.truncate(mailgen.make_message(mailgen.random_spec(rng)), 0.5)])
    return specs


def everything_under(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def test_data_folder_is_private(cli: Cli, tmp_path: Path) -> None:
    # IT created the folder beforehand with the usual permissions.
    cli.home.mkdir(mode=0o755)
    os.chmod(cli.home, 0o755)
    mixed_sources(tmp_path / "src", random.Random(300))
    cli.trust_forwarders("@labo.mssante.fr")

    counts = cli.ingest(tmp_path / "src")
    assert counts["new"] == 6 and counts["quarantined"] == 1
    cli.search("lefevre")
    cli.status()

    paths = everything_under(cli.home)
    assert (cli.home / "pdf" / "pdfs.sqlite3") in paths and (cli.home / "index.sqlite3") in paths
    wrong = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            if mode != 0o700:
                wrong.append(f"{oct(mode)} {path}")
        elif not path.is_file() or mode != 0o600:
            wrong.append(f"{oct(mode)} {path}")
    assert wrong == []


def test_pdfs_are_stored_once_under_their_sha256_and_nothing_names_a_patient(cli: Cli, tmp_path: Path) -> None:
    specs = mixed_sources(tmp_path / "src", random.Random(301))
    cli.trust_forwarders("@labo.mssante.fr")
    cli.ingest(tmp_path / "src")

    stored = stored_pdfs(cli.home)
    expected = {hashlib.sha256(mailgen.make_pdf(s)).hexdigest(): s for s in specs}
    assert sorted(stored) == sorted(expected)  # each PDF once, under its hash
    for sha, data in stored.items():
        assert hashlib.sha256(data).hexdigest() == sha
        assert data == mailgen.make_pdf(expected[sha])
    assert not [p for p in cli.home.rglob("*.pdf")]  # no file per PDF any more
    for path in (cli.home / "pdf").iterdir():  # the PDF database and its logs
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for sha, spec in expected.items():
        [cert] = cli.search(spec.dossier)["results"]
        assert cert["pdf_sha256"] == sha

    # No file or folder name in the data folder comes from the mail: no patient name, no attachment name.
    forbidden = set()
    for spec in specs:
        attachment = mailgen.pdf_filename(spec)
        forbidden |= {attachment, attachment.removesuffix(".pdf"), spec.dossier}
        for name in (spec.last_name, spec.first_name):
            forbidden |= {name, fold(name), mailgen.ascii_fold(name)}
            forbidden |= {w for w in fold(name).replace("'", " ").replace("-", " ").split() if len(w) >= 3}
    forbidden = {f.lower() for f in forbidden if f}
    leaks = [
        (str(p.relative_to(cli.home)), word)
        for p in everything_under(cli.home)[1:]
        for word in forbidden
        if word in p.name.lower() or word in fold(p.name)
    ]
    assert leaks == []


def test_database_is_in_wal_mode(cli: Cli, tmp_path: Path) -> None:
    mixed_sources(tmp_path / "src", random.Random(302))
    cli.ingest(tmp_path / "src")
    db = cli.home / "index.sqlite3"
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_data_dir_option_overrides_the_environment(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(303)
    spec = mailgen.random_spec(rng)
    mailgen.write_eml(tmp_path / "src", [mailgen.make_message(spec)])
    other = tmp_path / "autre dossier" / "sidep"

    proc = cli.run("--data-dir", other, "ingest", "--json", tmp_path / "src")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["new"] == 1
    assert (other / "index.sqlite3").is_file()
    assert not (cli.home / "index.sqlite3").exists()  # SIDEP_HELPER_HOME untouched
    assert stat.S_IMODE(other.stat().st_mode) == 0o700

    status = json.loads(cli.run("--data-dir", other, "status", "--json").stdout)
    assert status["certificates"] == 1
    assert Path(status["data_dir"]) == other
    found = json.loads(cli.run("--data-dir", other, "search", "--json", spec.dossier).stdout)
    assert [c["last_name"] for c in found["results"]] == [spec.last_name]

    # Without the option, the environment's folder is used — and it holds nothing.
    assert cli.status()["certificates"] == 0
    assert Path(cli.status()["data_dir"]) == cli.home
    assert cli.search(spec.dossier)["total"] == 0
