"""Generated public directory files in their published formats, for tests and benchmarks.

- ``annuaire_header`` / ``annuaire_row``: the MSSanté directory extraction (UTF-8, ``|``, 31 columns).
- ``finess_file``: the FINESS establishment extraction (``;``, ISO-8859-1 by default, no header, first line
  ``finess;etalab;…``, ``structureet`` lines of 32 fields, then ``geolocalisation`` lines).
"""

from __future__ import annotations

import random
from pathlib import Path

from mailgen import luhn_finess

ANNUAIRE_COLUMNS = [
    "Type de BAL", "Adresse BAL", "Type Identifiant PP", "Identifiant PP", "Identification nationale PP",
    "Type identifiant structure", "Identification Structure", "Service de rattachement",
    "Civilité d'exercice", "Nom d'exercice", "Prénom d'exercice", "Catégorie profession",
    "Libellé de catégorie profession", "Code Profession", "Libellé Profession", "Code savoir-faire",
    "Libellé savoir-faire", "Dématérialisation", "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL", "L2COMPLEMENTLOCALISATION structure BAL",
    "L3COMPLEMENTDISTRIBUTION structure BAL", "L4NUMEROVOIE structure BAL",
    "L4COMPLEMENTNUMEROVOIE structure BAL", "NL4TYPEVOIE structure BAL", "L4LIBELLEVOIE structure BAL",
    "L5LIEUDITMENTION structure BAL", "L6LIGNEACHEMINEMENT structure BAL", "Code postal structure BAL",
    "Département structure BAL", "Pays structure BAL",
]
assert len(ANNUAIRE_COLUMNS) == 31


def annuaire_header(columns: list[str] | None = None) -> str:
    return "|".join(columns or ANNUAIRE_COLUMNS)


def annuaire_row(kind: str, address: str, finess: str, service: str, *, id_type: str = "1",
                 raison: str = "LABORATOIRE D'ANALYSES", columns: list[str] | None = None) -> str:
    values = {"Type de BAL": kind, "Adresse BAL": address, "Type identifiant structure": id_type,
              "Identification Structure": finess, "Service de rattachement": service,
              "Raison Sociale structure BAL": raison, "Pays structure BAL": "FRANCE",
              "Code postal structure BAL": "75012", "L4LIBELLEVOIE structure BAL": "rue de Lyon"}
    if kind == "PER":
        values.update({"Type Identifiant PP": "8", "Identifiant PP": "10001234567", "Nom d'exercice": "DUPONT",
                       "Prénom d'exercice": "Hélène", "Libellé Profession": "Médecin"})
    return "|".join(values.get(c, "") for c in (columns or ANNUAIRE_COLUMNS))


def finess(rng: random.Random, dept: str = "75") -> str:
    return luhn_finess(dept + f"{rng.randrange(10**6):06d}")


def structureet(et: str, ej: str, rs: str, rslongue: str = "") -> str:
    fields = ["structureet", et, ej, rs, rslongue, "", "", "12", "R", "DE LYON", "", "", "112", "75", "PARIS",
              "75012 PARIS", "0143000000", "", "611", "Laboratoire d'Analyses de Biologie Médicale", "1110",
              "Laboratoires d'Analyses", "12345678900011", "8690B", "01", "Tarifs libres", "", "",
              "2001-01-01", "2001-01-01", "2021-06-22", ""]
    assert len(fields) == 32
    return ";".join(fields)


def finess_file(path: Path, lines: list[str], *, encoding: str = "iso-8859-1") -> Path:
    head = "finess;etalab;93;2021-06-22"
    geo = [f"geolocalisation;{line.split(';')[1]};652000.1;6860000.2;1,ATLASANTE,100,IGN,BD_ADRESSE,V2.2,LAMBERT_93;"
           "2021-06-22" for line in lines if line.startswith("structureet;")]
    path.write_bytes(("\r\n".join([head, *lines, *geo]) + "\r\n").encode(encoding))
    return path


def big_annuaire(path: Path, rows: int, seed: int = 7) -> Path:
    """A directory of ``rows`` plausible rows (most personal, some organisational, a few stamped)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(annuaire_header() + "\n")
        for i in range(rows):
            fin = finess(rng, f"{rng.randrange(1, 96):02d}")
            r = rng.random()
            if r < 0.8:
                line = annuaire_row("PER", f"prenom.nom{i}@medecin.mssante.fr", fin, "")
            elif r < 0.98:
                line = annuaire_row("ORG", f"secretariat{i}@ch-exemple.mssante.fr", fin, "Secrétariat")
            else:
                line = annuaire_row("ORG", f"labo{i}@labo.mssante.fr", fin, "Biologie @SIDEP")
            out.write(line + "\n")
    return path
