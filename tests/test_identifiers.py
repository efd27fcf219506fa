"""Check digits of FINESS and INS, as a secretary's data depends on them."""

from __future__ import annotations

import pytest

from helper.parse.identifiers import finess_check, ins_check, ins_key, looks_like_ins, normalize_ins


@pytest.mark.parametrize("finess", ["750712184", "690781810", "130783293"])
def test_real_finess_numbers_pass_luhn(finess: str) -> None:
    assert finess_check(finess) is None


def test_finess_with_wrong_check_digit_is_flagged() -> None:
    assert finess_check("750712185") == "finess_checksum"


def test_corsican_finess_is_never_judged_on_checksum() -> None:
    assert finess_check("2A0000019") is None
    assert finess_check("2B0000010") is None


def test_finess_with_wrong_length() -> None:
    assert finess_check("75071218") == "finess_length"


def test_ins_key() -> None:
    # 1 85 05 78 006 084: key = 97 - (1850578006084 mod 97)
    body = "1850578006084"
    assert ins_key(body) == 97 - int(body) % 97
    assert ins_check(body + f"{ins_key(body):02d}") is None
    assert ins_check(body + f"{(ins_key(body) % 97) + 1:02d}") == "ins_key"


def test_corsican_ins_key_uses_19_and_18() -> None:
    body_2a = "285052A006084"
    key = 97 - int("2850519006084") % 97
    assert ins_key(body_2a) == key
    assert ins_check(f"{body_2a}{key:02d}") is None
    body_2b = "185052B006084"
    assert ins_key(body_2b) == 97 - int("1850518006084") % 97


def test_ins_spaces_are_ignored_and_13_digits_warn() -> None:
    assert normalize_ins("1 85 05 78 006 084 36") == "185057800608436"
    assert ins_check("1850578006084") == "ins_key_missing"
    assert looks_like_ins("1850578006084")
    assert not looks_like_ins("12345")
