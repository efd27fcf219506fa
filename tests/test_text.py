"""Name folding, dates, sexes and results as written in the wild."""

from __future__ import annotations

import datetime as dt

import pytest

from helper.parse.text import fold, html_to_text, name_tokens, normalize_sex, outcome_of, parse_datetime


def test_fold_removes_accents_and_ligatures() -> None:
    assert fold("LEFÈVRE Émilie") == "lefevre emilie"
    assert fold("CŒUR") == "coeur"
    assert fold("D’ALMEIDA") == "d'almeida"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("D'ALMEIDA", {"d", "almeida", "dalmeida"}),
        ("SAINT-ÉTIENNE", {"saint", "etienne", "saintetienne"}),
        ("LE GALL", {"le", "gall", "legall"}),
        ("MÜLLER", {"muller", "mueller"}),
    ],
)
def test_name_tokens_include_joined_forms(name: str, expected: set[str]) -> None:
    assert expected <= set(name_tokens(name))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22/06/2021", dt.date(2021, 6, 22)),
        ("22/06/2021 10:32", dt.datetime(2021, 6, 22, 10, 32)),
        ("22/06/2021 10:32:05", dt.datetime(2021, 6, 22, 10, 32, 5)),
        ("22/06/2021 à 10h32", dt.datetime(2021, 6, 22, 10, 32)),
        ("2021-06-22T10:32:00", dt.datetime(2021, 6, 22, 10, 32)),
        ("2021-06-22", dt.date(2021, 6, 22)),
        ("22062021", dt.date(2021, 6, 22)),
        ("pas une date", None),
        ("31/02/2021", None),
    ],
)
def test_parse_datetime(text: str, expected: object) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("M", "M"), ("Masculin", "M"), ("féminin", "F"), ("F", "F"), ("Femme", "F"), ("?", None)],
)
def test_normalize_sex(text: str, expected: str | None) -> None:
    assert normalize_sex(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("POSITIF", "positive"), ("Positif", "positive"), ("P", "positive"), ("Détecté", "positive"),
        ("NEGATIF", "negative"), ("Négatif", "negative"), ("N", "negative"), ("Non détecté", "negative"),
        ("Ininterprétable", "inconclusive"), ("X", "inconclusive"), ("", "unknown"), ("voir PDF", "unknown"),
    ],
)
def test_outcome(text: str, expected: str) -> None:
    assert outcome_of(text) == expected


def test_html_to_text_keeps_field_lines() -> None:
    text = html_to_text("<p><b>Nom :</b> LEF&Egrave;VRE<br><b>Pr&eacute;nom :</b> &Eacute;milie</p>")
    assert "Nom : LEFÈVRE" in text.splitlines()
    assert "Prénom : Émilie" in text.splitlines()
