"""``sidep-helper check-annuaire``: which MSSanté mailbox SI-DEP will write to, per site (guide pp. 17–18).

Generated directory files in the published format (UTF-8, ``|``, 31 columns), with duplicates, a malformed
line, a stray quote, a site with two ``@SIDEP`` mailboxes, near misses; run through the real command line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import Cli
from directorygen import ANNUAIRE_COLUMNS, annuaire_header, annuaire_row, finess_file, structureet
from mailgen import luhn_finess

EJ = luhn_finess("75000001")
EJ2 = luhn_finess("69000002")
SITE_GEO = luhn_finess("75000010")  # its own stamped mailbox (listed twice)
SITE_EJ = luhn_finess("75000011")  # nothing of its own: the group's mailbox
SITE_TWO = luhn_finess("75000012")  # two stamped mailboxes: ambiguous
SITE_NEAR = luhn_finess("75000013")  # ORG without stamp + PER with stamp: falls back to the EJ
SITE_PREFIX = luhn_finess("75000014")  # structure id written "1" + FINESS
OTHER = luhn_finess("13000099")


def _write(path: Path, lines: list[str], header: str | None = None) -> Path:
    path.write_text("\n".join([header or annuaire_header(), *lines]) + "\n", encoding="utf-8")
    return path


def _directory(tmp_path: Path) -> Path:
    return _write(tmp_path / "Extraction_Correspondance_MSSante.txt", [
        annuaire_row("ORG", "site.bercy@labo.mssante.fr", SITE_GEO, "Biologie @SIDEP"),
        annuaire_row("ORG", "Site.Bercy@labo.mssante.fr", SITE_GEO, "Biologie @SIDEP"),  # duplicate
        annuaire_row("ORG", "groupe@labo.mssante.fr", EJ, "Direction @SIDEP"),
        annuaire_row("ORG", "groupe@labo.mssante.fr", EJ, "Direction @SIDEP"),  # duplicate
        annuaire_row("ORG", "accueil@labo.mssante.fr", EJ, "Accueil"),
        annuaire_row("ORG", "a@labo.mssante.fr", SITE_TWO, "@SIDEP"),
        annuaire_row("ORG", "b@labo.mssante.fr", SITE_TWO, "Biologie @sidep"),
        "ORG|ligne@tronquee.mssante.fr|||",  # malformed: 5 fields
        annuaire_row("ORG", "secretariat@labo.mssante.fr", SITE_NEAR, "Secrétariat"),
        annuaire_row("PER", "dr.martin@labo.mssante.fr", SITE_NEAR, "Biologie @SIDEP"),
        annuaire_row("ORG", "guillemet@ailleurs.mssante.fr", OTHER, 'Service "Biologie', raison='LABO "X'),
        annuaire_row("ORG", "prefixe@labo.mssante.fr", "1" + SITE_PREFIX, "@SIDEP"),
        annuaire_row("ORG", "siret@labo.mssante.fr", SITE_EJ, "@SIDEP", id_type="3"),  # a SIRET row
        annuaire_row("ORG", "apres-guillemet@labo.mssante.fr", SITE_EJ, "Après"),
    ])


def _sites_list(tmp_path: Path) -> Path:
    path = tmp_path / "sites.txt"
    path.write_text(f"# sites du groupe\n{SITE_GEO};Bercy\n{SITE_EJ} Nation\n{SITE_TWO}\n{SITE_NEAR}\n"
                    f"{SITE_PREFIX}\n", encoding="utf-8")
    return path


def test_each_site_gets_the_mailbox_the_guide_rule_chooses(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("check-annuaire", _directory(tmp_path), "--finess-juridique", EJ,
                   "--sites", _sites_list(tmp_path), "--json")
    assert proc.returncode == 1, proc.stderr  # one site has no mailbox
    data = json.loads(proc.stdout)
    assert data["ej_mailboxes"] == ["groupe@labo.mssante.fr"]
    assert data["rows"] == 13 and data["malformed_lines"] == 1 and data["malformed_line_numbers"] == [9]
    by = {s["finess"]: s for s in data["sites"]}
    assert (by[SITE_GEO]["outcome"], by[SITE_GEO]["mailbox"]) == ("geographique", "site.bercy@labo.mssante.fr")
    assert by[SITE_GEO]["name"] == "Bercy" and by[SITE_GEO]["site_mailboxes"] == ["site.bercy@labo.mssante.fr"]
    assert (by[SITE_EJ]["outcome"], by[SITE_EJ]["mailbox"]) == ("juridique", "groupe@labo.mssante.fr")
    assert by[SITE_EJ]["hints"][0].startswith("BAL organisationnelle du site sans la mention @SIDEP")
    assert "apres-guillemet@labo.mssante.fr" in by[SITE_EJ]["hints"][0]  # read past the stray quote
    assert not any("siret@" in h for h in by[SITE_EJ]["hints"])  # a SIRET row is not this FINESS
    assert by[SITE_TWO]["outcome"] == "ambigue" and by[SITE_TWO]["mailbox"] is None
    assert by[SITE_TWO]["site_mailboxes"] == ["a@labo.mssante.fr", "b@labo.mssante.fr"]
    assert "ne se replie pas" in by[SITE_TWO]["explanation"]
    assert by[SITE_NEAR]["mailbox"] == "groupe@labo.mssante.fr"
    assert any("personnelle" in h and "dr.martin@" in h for h in by[SITE_NEAR]["hints"])
    assert by[SITE_PREFIX]["mailbox"] == "prefixe@labo.mssante.fr"


def test_french_report_and_no_mailbox_anywhere(cli: Cli, tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    proc = cli.run("check-annuaire", directory, "--finess-juridique", EJ, "--sites", _sites_list(tmp_path))
    assert proc.returncode == 1
    assert "1 ligne(s) mal formée(s) ignorée(s) dans l'annuaire (lignes 9)" in proc.stderr
    assert f"- {SITE_GEO} Bercy : BAL du site — BAL du site (FINESS géographique {SITE_GEO}) : " \
           "site.bercy@labo.mssante.fr" in proc.stdout
    assert f"- {SITE_EJ} Nation : BAL mutualisée (FINESS juridique)" in proc.stdout
    assert f"- {SITE_TWO} : ambiguë — aucun envoi : 2 BAL" in proc.stdout
    assert "5 site(s) : 4 avec une BAL, 1 sans BAL ou ambigu(s)." in proc.stdout
    # Another group with nothing stamped: every site « aucune », and why.
    lonely = tmp_path / "seul.txt"
    lonely.write_text(f"{OTHER}\n", encoding="utf-8")
    proc = cli.run("check-annuaire", directory, "--finess-juridique", EJ2, "--sites", lonely, "--json")
    site = json.loads(proc.stdout)["sites"][0]
    assert site["outcome"] == "aucune" and site["mailbox"] is None
    assert f"ni pour le site ({OTHER}) ni pour le FINESS juridique ({EJ2})" in site["explanation"]
    assert "guillemet@ailleurs.mssante.fr" in site["hints"][0]


def test_two_stamped_group_mailboxes_are_ambiguous(cli: Cli, tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", [annuaire_row("ORG", "g1@l.mssante.fr", EJ, "@SIDEP"),
                                       annuaire_row("ORG", "g2@l.mssante.fr", EJ, "x @SIDEP")])
    sites = tmp_path / "s.txt"
    sites.write_text(SITE_EJ + "\n", encoding="utf-8")
    site = json.loads(cli.run("check-annuaire", path, "--finess-juridique", EJ, "--sites", sites,
                              "--json").stdout)["sites"][0]
    assert site["outcome"] == "ambigue" and site["ej_mailboxes"] == ["g1@l.mssante.fr", "g2@l.mssante.fr"]


def test_columns_are_read_by_name(cli: Cli, tmp_path: Path) -> None:
    columns = list(reversed(ANNUAIRE_COLUMNS)) + ["Colonne ajoutée"]
    path = _write(tmp_path / "a.txt", [annuaire_row("ORG", "x@l.mssante.fr", SITE_GEO, "@SIDEP",
                                                    columns=columns)], header="|".join(columns))
    sites = tmp_path / "s.txt"
    sites.write_text(SITE_GEO + "\n", encoding="utf-8")
    data = json.loads(cli.run("check-annuaire", path, "--finess-juridique", EJ, "--sites", sites, "--json").stdout)
    assert data["sites"][0]["mailbox"] == "x@l.mssante.fr"


def test_sites_from_a_finess_extraction_and_from_the_directory(cli: Cli, tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    extraction = finess_file(tmp_path / "etalab.csv", [
        structureet(SITE_GEO, EJ, "LBM BERCY", "Laboratoire de Bercy-Général"),
        structureet(OTHER, EJ2, "AUTRE", ""),
    ])
    data = json.loads(cli.run("check-annuaire", directory, "--finess-juridique", EJ, "--sites", extraction,
                              "--json").stdout)
    assert [(s["finess"], s["name"], s["outcome"]) for s in data["sites"]] == [
        (SITE_GEO, "Laboratoire de Bercy-Général", "geographique")]
    # Without --sites: the configured directory (old form and table form).
    cli.write_config(f'[sites]\n"{SITE_EJ}" = "Nation"\n\n[sites."{SITE_TWO}"]\nname = "Vincennes"\n'
                     'folder = "/srv/partage/vincennes"\n')
    data = json.loads(cli.run("check-annuaire", directory, "--finess-juridique", EJ, "--json").stdout)
    assert [(s["name"], s["outcome"]) for s in data["sites"]] == [("Nation", "juridique"), ("Vincennes", "ambigue")]


@pytest.mark.parametrize(("content", "message"), [
    ("", "est vide"),
    ("Type de BAL|Adresse BAL\nORG|x@y\n", "colonne(s) absente(s) de l'en-tête : Type identifiant structure"),
])
def test_unreadable_directory_is_a_french_error(cli: Cli, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "a.txt"
    path.write_text(content, encoding="utf-8")
    proc = cli.run("check-annuaire", path, "--finess-juridique", EJ, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    proc = cli.run("check-annuaire", tmp_path / "absent.txt", "--finess-juridique", EJ, check=False)
    assert proc.returncode == 2 and "impossible de lire" in proc.stderr
    proc = cli.run("check-annuaire", path, "--finess-juridique", "12", check=False)
    assert proc.returncode == 2 and "n'est pas un FINESS juridique" in proc.stderr


def test_random_rows_never_crash_the_scan(tmp_path: Path) -> None:
    from helper.parse import annuaire

    rng = random.Random(3)
    alphabet = 'ab|"\\;\r@SIDEP\x00é1234567890 '
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(80))) for _ in range(300)]
    path = _write(tmp_path / "a.txt", [*lines, annuaire_row("ORG", "ok@l.mssante.fr", SITE_GEO, "@SIDEP")])
    result = annuaire.scan(path, [SITE_GEO, EJ])
    assert result.by_finess[SITE_GEO].stamped == ["ok@l.mssante.fr"]
    assert result.bad_count > 200
