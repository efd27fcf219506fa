"""Command-line behaviour IT and secretaries see: progress, messages, defaults, bounded PDF reading."""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import mailgen
from conftest import Cli

from helper.parse.pdftext import extract_text


def test_progress_bar_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(1)
    mailgen.write_maildir(tmp_path / "md", [raw for _, raw in mailgen.corpus(rng, 400)])
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "helper", "ingest", str(tmp_path / "md")],
        stdout=subprocess.PIPE, stderr=slave, env=cli.env(),
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=60)[0].decode()
    os.close(master)
    assert proc.returncode == 0
    assert b"\rIndexation [" in seen
    assert b"100.0 %" in seen
    assert "400 nouveau(x) certificat(s)" in out


def test_plain_output_without_a_terminal_has_no_control_characters(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(2)
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(mailgen.random_spec(rng)) for _ in range(3)])
    proc = cli.run("ingest", tmp_path / "eml")
    assert proc.returncode == 0
    assert "\r" not in proc.stderr
    assert "3 nouveau(x) certificat(s)" in proc.stdout


def test_default_ingest_reads_the_downloads_folder(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "user"
    downloads = home / "Downloads"
    downloads.mkdir(parents=True)
    spec = mailgen.random_spec(random.Random(3))
    (downloads / "certificat.eml").write_bytes(mailgen.make_message(spec))
    env = cli.env() | {"HOME": str(home), "XDG_DOWNLOAD_DIR": str(downloads)}
    proc = subprocess.run(
        [sys.executable, "-m", "helper", "ingest", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert '"new": 1' in proc.stdout
    assert cli.search(spec.dossier)["total"] == 1


def test_missing_path_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("ingest", tmp_path / "nulle-part", check=False)
    assert proc.returncode == 2
    assert "chemin introuvable" in proc.stderr


def test_bad_configuration_is_a_clear_error(cli: Cli) -> None:
    cli.home.mkdir(parents=True)
    (cli.home / "config.toml").write_text("trusted_senders = 'pas une liste'\n")
    proc = cli.run("status", check=False)
    assert proc.returncode == 2
    assert "trusted_senders" in proc.stderr


def test_status_lists_counts_in_french(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(4)
    spec = mailgen.random_spec(rng)
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(spec), mailgen.truncate(mailgen.make_message(spec))])
    cli.ingest(tmp_path / "eml")
    out = cli.run("status").stdout
    assert "Certificats indexés : 1" in out
    assert "En quarantaine : 1" in out
    assert "truncated" in out


def test_pdf_text_reading_is_bounded_in_time_and_memory() -> None:
    spec = mailgen.random_spec(random.Random(5))
    pdf = mailgen.make_pdf(spec)
    text = extract_text(pdf)
    assert text is not None and spec.dossier in text
    assert extract_text(pdf, timeout=0.001) is None  # over the time bound: not read
    assert extract_text(pdf, memory=16 * 1024 * 1024) is None  # over the memory bound: not read
    assert extract_text(b"%PDF-1.4 garbage") is None


def test_config_command_shows_file_and_settings_in_force(cli: Cli) -> None:
    before = cli.json("config")
    assert before["config_exists"] is False
    assert before["port"] == 51789 and before["retention_days"] == 90
    assert before["trusted_senders"] == ["noreply.sidep@enovacom.easycrypt.fr"]
    from helper.config import DEFAULT_CONFIG, write_default

    assert write_default(cli.home / "config.toml") is True
    text = (cli.home / "config.toml").read_text(encoding="utf-8")
    assert text == DEFAULT_CONFIG and "# port = 51789" in text  # every default, commented
    assert (cli.home / "config.toml").stat().st_mode & 0o777 == 0o600
    assert cli.json("config")["config_exists"] is True  # the commented file changes nothing
    (cli.home / "config.toml").write_text('port = 50123\nretention_days = 30\n[sites]\n"750712184" = "Lilas"\n')
    after = cli.json("config")
    assert (after["port"], after["retention_days"], after["sites"]) == (50123, 30, {"750712184": "Lilas"})
    human = cli.run("config").stdout
    assert f"Fichier de configuration : {cli.home / 'config.toml'}" in human


def test_unknown_setting_is_named(cli: Cli) -> None:
    cli.home.mkdir(parents=True)
    (cli.home / "config.toml").write_text("prot = 1234\n")
    proc = cli.run("config", check=False)
    assert proc.returncode == 2 and "prot" in proc.stderr


def test_token_is_private_stable_and_rotates(cli: Cli) -> None:
    first = cli.run("token").stdout.strip()
    assert len(first) >= 43
    assert cli.run("token").stdout.strip() == first
    assert (cli.home / "token").stat().st_mode & 0o777 == 0o600
    rotated = cli.run("token", "--rotate")
    new = rotated.stdout.strip()
    assert new != first and "Nouveau jeton" in rotated.stderr
    assert cli.run("token").stdout.strip() == new
    assert ",token_rotated," in cli.run("audit", "export").stdout


def test_audit_export_to_a_file_since_a_date(cli: Cli, tmp_path: Path) -> None:
    cli.run("token", "--rotate")
    out = tmp_path / "audit.csv"
    proc = cli.run("audit", "export", "--since", "2000-01-01", "--output", out)
    assert proc.returncode == 0
    assert out.read_text().startswith("horodatage,action,certificats,origine,detail\n")
    assert out.stat().st_mode & 0o777 == 0o600
    future = cli.run("audit", "export", "--since", "2999-01-01").stdout
    assert future.strip() == "horodatage,action,certificats,origine,detail"
    assert cli.run("audit", "export", "--since", "hier", check=False).returncode == 2


def test_relative_data_dir(tmp_path: Path) -> None:
    spec = mailgen.random_spec(random.Random(6))
    mailgen.write_eml(tmp_path / "eml", [mailgen.make_message(spec)])
    env = Cli(tmp_path / "unused").env()
    for args in (["ingest", "eml", "--json"], ["search", "--json", spec.dossier], ["status", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "helper", "--data-dir", "donnees", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    assert '"total": 1' in proc.stdout or '"certificates": 1' in proc.stdout
