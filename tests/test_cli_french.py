"""The command line speaks French throughout (issue 7, item 17): argparse's own messages, invalid
arguments, TOML syntax errors, and progress lines that make sense in a log."""

from __future__ import annotations

import random
import re
from pathlib import Path

import mailgen
import pytest
from conftest import Cli

ENGLISH = ("usage:", "error:", "the following arguments", "invalid choice", "show this help", "positional arguments",
           "unrecognized arguments", "expected one argument", "invalid int value", "Traceback")


def assert_french(text: str) -> None:
    for phrase in ENGLISH:
        assert phrase not in text, f"English left: {phrase!r} in\n{text}"


def test_help_is_in_french(cli: Cli) -> None:
    for args in ([], ["search"], ["audit", "export"]):
        proc = cli.run(*args, "--help")
        assert proc.returncode == 0
        assert proc.stdout.startswith("utilisation : sidep-helper")
        assert "-h, --help" in proc.stdout and "afficher cette aide et quitter" in proc.stdout
        assert "options:" in proc.stdout
        assert_french(proc.stdout)
    assert "arguments:" in cli.run("search", "--help").stdout
    assert "afficher le numéro de version" in cli.run("--help").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "erreur : arguments obligatoires manquants : COMMANDE"),
        (["chercher"], "choix invalide : 'chercher'"),
        (["audit"], "arguments obligatoires manquants : ACTION"),
        (["search", "--frobnicate"], "arguments non reconnus : --frobnicate"),
        (["search", "--limit"], "argument --limit : une valeur est attendue"),
        (["search", "--limit", "abc", "martin"], "argument --limit : nombre entier attendu, pas « abc »"),
        (["search", "--limit", "0", "martin"], "argument --limit : doit être au moins 1 (reçu : 0)"),
        (["search", "--limit=-5", "martin"], "argument --limit : doit être au moins 1 (reçu : -5)"),
        (["ingest", "--workers", "0", "."], "argument --workers : doit être au moins 1"),
        (["serve", "--port", "x"], "argument --port : valeur invalide : 'x'"),
    ],
)
def test_bad_arguments_are_french_errors_with_status_2(cli: Cli, args: list[str], expected: str) -> None:
    proc = cli.run(*args, check=False)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("utilisation : sidep-helper")
    assert expected in proc.stderr
    assert proc.stdout == ""  # never "Aucun certificat trouvé"
    assert_french(proc.stderr)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("port = 51790\nretention_days = \n", "ligne 2, colonne 18", "valeur invalide"),
        ("# réglages\nport 51790\n", "ligne 2, colonne 6", "signe « = » attendu"),
        ('watch = ["C:/Mail"\n', "à la fin du fichier", "liste non refermée"),
        ("port = 51790\nport = 51791\n", "ligne 2", "réglage défini deux fois"),
    ],
)
def test_toml_syntax_errors_name_file_and_line_in_french(cli: Cli, text: str, line: str, what: str) -> None:
    cli.home.mkdir(parents=True)
    config = cli.home / "config.toml"
    config.write_text(text, encoding="utf-8")
    proc = cli.run("status", check=False)
    assert proc.returncode == 2
    assert str(config) in proc.stderr and line in proc.stderr and what in proc.stderr, proc.stderr
    assert "at line" not in proc.stderr and "Expected" not in proc.stderr and "Invalid" not in proc.stderr


def test_progress_without_a_terminal_is_log_lines_with_real_figures(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(5)
    messages = [mailgen.make_message(mailgen.random_spec(rng)) for _ in range(300)]
    mailgen.write_eml(tmp_path / "eml", messages)
    total_mb = sum(len(m) for m in messages) / (1024 * 1024)
    proc = cli.run("ingest", tmp_path / "eml")
    assert proc.returncode == 0
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    steps = [re.match(r"Indexation : (\d+) % — (\d+) message\(s\) lu\(s\), ([\d,]+) Mo sur ([\d,]+) Mo, \d+ messages/s, "
                      r"\d+ s écoulée\(s\)$", line) for line in lines[:-1]]
    assert steps and all(steps), lines
    percents = [int(m[1]) for m in steps if m]
    counts = [int(m[2]) for m in steps if m]
    assert percents == sorted(percents) and len(set(percents)) == len(percents)  # one line per 10 % crossed
    assert 5 <= len(percents) <= 10 and counts == sorted(counts) and 0 < counts[0] < 300
    for m in steps:
        assert m is not None and abs(float(m[4].replace(",", ".")) - total_mb) < 0.1
    final = re.match(r"Indexation terminée : (\d+) message\(s\) lu\(s\), ([\d,]+) Mo, en \d+,\d s$", lines[-1])
    assert final and int(final[1]) == 300, lines[-1]
    assert "300 nouveau(x) certificat(s)" in proc.stdout
    # --quiet and --json: no progress at all.
    assert cli.run("ingest", "--quiet", tmp_path / "eml").stderr == ""
