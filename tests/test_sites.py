"""The site directory: ``sidep-helper sites import`` from the public FINESS extraction, ``sites list``, and the
``[sites]`` table in both forms (``"FINESS" = "nom"`` and ``[sites."FINESS"]`` with folder and printer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli
from directorygen import finess_file, structureet
from mailgen import luhn_finess

EJ = luhn_finess("75000001")
OTHER_EJ = luhn_finess("69000002")
A, B, C, D = (luhn_finess(f"7500002{i}") for i in range(4))


def _json(cli: Cli, *args: str | Path) -> dict:
    proc = cli.run(*args, "--json")
    return json.loads(proc.stdout)


def _extraction(tmp_path: Path, *, encoding: str = "iso-8859-1", name_b: str = "Laboratoire Gare de Lyon",
                with_c: bool = True) -> Path:
    lines = [
        structureet(A, EJ, "LBM BERCY", "Laboratoire Bercy – Cour Saint-Émilion".replace("–", "-")),
        structureet(B, EJ, "LBM GARE", name_b),
        structureet(D, OTHER_EJ, "AUTRE GROUPE", "Autre groupe"),
        "structureet;" + A + ";" + EJ + ";tronquée",  # malformed: 4 fields
        structureet(luhn_finess("75000099"), "ABC", "FINESS juridique invalide"),
    ]
    if with_c:
        lines.insert(2, structureet(C, EJ, "LBM VINCENNES", ""))
    return finess_file(tmp_path / f"etalab-{encoding}.csv", lines, encoding=encoding)


def test_import_keeps_the_group_reports_bad_lines_and_writes_a_private_sites_toml(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("sites", "import", _extraction(tmp_path), "--finess-juridique", EJ)
    assert proc.returncode == 0, proc.stderr
    assert "3 site(s) ajouté(s), 0 modifié(s), 0 inchangé(s)" in proc.stdout
    assert "ligne 6 ignorée : 4 champs au lieu de 32" in proc.stderr
    assert "ligne 7 ignorée : numéro FINESS (géographique ou juridique) invalide" in proc.stderr
    target = cli.home / "sites.toml"
    assert target.stat().st_mode & 0o777 == 0o600
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Annuaire des sites, importé par « sidep-helper sites import »")
    listed = _json(cli, "sites", "list")
    assert listed["file"] == str(target)
    assert [(s["finess"], s["name"]) for s in listed["sites"]] == sorted([
        (A, "Laboratoire Bercy - Cour Saint-Émilion"), (B, "Laboratoire Gare de Lyon"), (C, "LBM VINCENNES")])
    assert D not in text  # another group's site


def test_reimport_counts_changes_and_keeps_folder_and_printer(cli: Cli, tmp_path: Path) -> None:
    cli.run("sites", "import", _extraction(tmp_path), "--finess-juridique", EJ)
    target = cli.home / "sites.toml"
    text = target.read_text(encoding="utf-8").replace(f'[sites."{A}"]\nname = "Laboratoire Bercy - Cour Saint-Émilion"'
                                                      '\nfolder = ""\nprinter = ""',
                                                      f'[sites."{A}"]\nname = "Laboratoire Bercy - Cour Saint-Émilion"'
                                                      '\nfolder = "/srv/partage/bercy"\nprinter = "bercy-accueil"')
    assert "/srv/partage/bercy" in text
    target.write_text(text, encoding="utf-8")
    utf8 = _extraction(tmp_path, encoding="utf-8", name_b="Laboratoire Gare de Lyon (Hall 1)", with_c=False)
    out = _json(cli, "sites", "import", utf8, "--finess-juridique", EJ)
    assert (out["added"], out["changed"], out["left"], out["absent"]) == (0, 1, 1, [C])
    assert out["malformed_lines"] == [5, 6]
    sites = {s["finess"]: s for s in _json(cli, "sites", "list")["sites"]}
    assert sites[A] == {"finess": A, "name": "Laboratoire Bercy - Cour Saint-Émilion",
                        "folder": "/srv/partage/bercy", "printer": "bercy-accueil"}
    assert sites[B]["name"] == "Laboratoire Gare de Lyon (Hall 1)"
    assert C in sites  # kept, listed as absent
    # The names reach the rest of the helper (config, status, search results' site_name).
    assert cli.json("config")["sites"][B] == "Laboratoire Gare de Lyon (Hall 1)"


def test_config_sites_in_both_forms_override_the_imported_directory(cli: Cli, tmp_path: Path) -> None:
    cli.run("sites", "import", _extraction(tmp_path), "--finess-juridique", EJ)
    cli.write_config(f'[sites]\n"{A}" = "Bercy (nom local)"\n\n[sites."{D}"]\nname = "Lyon"\n'
                     'folder = "/srv/lyon"\nprinter = "lyon-1"\n')
    sites = {s["finess"]: s for s in _json(cli, "sites", "list")["sites"]}
    assert sites[A]["name"] == "Bercy (nom local)" and sites[B]["name"] == "Laboratoire Gare de Lyon"
    assert sites[D] == {"finess": D, "name": "Lyon", "folder": "/srv/lyon", "printer": "lyon-1"}
    human = cli.run("sites", "list").stdout
    assert f"- {D} Lyon — dossier : /srv/lyon — imprimante : lyon-1" in human and "4 site(s)." in human


@pytest.mark.parametrize(("config", "message"), [
    ('[sites."750712184"]\nname = "X"\ndossier = "/srv"\n', "réglage(s) inconnu(s) : dossier"),
    ('[sites]\n"75071218" = "X"\n', "« 75071218 » n'est pas un numéro FINESS"),
    ('[sites]\n"750712184" = 3\n', "texte (nom) ou table name/folder/printer attendu"),
    ('[sites."750712184"]\nname = 3\n', "name, folder et printer sont des textes"),
])
def test_bad_site_tables_are_french_errors(cli: Cli, config: str, message: str) -> None:
    cli.write_config(config)
    proc = cli.run("sites", "list", check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_import_errors(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("sites", "import", _extraction(tmp_path), "--finess-juridique", luhn_finess("13000001"),
                   check=False)
    assert proc.returncode == 1 and "aucun établissement du FINESS juridique" in proc.stderr
    assert "4 établissements lus" in proc.stderr and not (cli.home / "sites.toml").exists()
    proc = cli.run("sites", "import", tmp_path / "absent.csv", "--finess-juridique", EJ, check=False)
    assert proc.returncode == 2 and "impossible de lire" in proc.stderr
    proc = cli.run("sites", "import", _extraction(tmp_path), "--finess-juridique", "ABC", check=False)
    assert proc.returncode == 2 and "n'est pas un FINESS juridique" in proc.stderr
