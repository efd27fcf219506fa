"""Check digits of French health identifiers: FINESS (Luhn) and INS matricule (NIR/NIA key)."""

from __future__ import annotations

import re

_INS_CHARS = re.compile(r"[\s.\-]")


def normalize_finess(text: str) -> str:
    return re.sub(r"\s", "", text).upper()


def finess_check(finess: str) -> str | None:
    """None when the FINESS looks valid, else a warning code.

    The 9th character is a Luhn check digit over the first 8. Corsican numbers (2A/2B) are
    never judged on their checksum (the rule for them is not confirmed).
    """
    if len(finess) != 9:
        return "finess_length"
    if finess[:2] in {"2A", "2B"}:
        return None if finess[2:].isdigit() else "finess_format"
    if not finess.isdigit():
        return "finess_format"
    return None if luhn_valid(finess) else "finess_checksum"


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalize_ins(text: str) -> str:
    """INS without spaces, dots or hyphens, upper case (``2a`` → ``2A``)."""
    return _INS_CHARS.sub("", text).upper()


def ins_key(first13: str) -> int:
    """The 2-digit key of an INS: 97 − (number mod 97), with 2A → 19 and 2B → 18."""
    number = first13[:5] + first13[5:7].replace("2A", "19").replace("2B", "18") + first13[7:]
    return 97 - int(number) % 97


def ins_check(ins: str) -> str | None:
    """None when the INS matricule is well formed and its key matches, else a warning code."""
    if len(ins) == 13:
        return "ins_key_missing" if _ins_body_ok(ins) else "ins_format"
    if len(ins) != 15 or not _ins_body_ok(ins[:13]) or not ins[13:].isdigit():
        return "ins_format"
    return None if ins_key(ins[:13]) == int(ins[13:]) else "ins_key"


def _ins_body_ok(first13: str) -> bool:
    return first13[:5].isdigit() and (first13[5:7].isdigit() or first13[5:7] in {"2A", "2B"}) and first13[
        7:
    ].isdigit()


def looks_like_ins(text: str) -> bool:
    """True for 13 or 15 characters shaped like an INS matricule (spaces already removed)."""
    if len(text) not in (13, 15) or text[0] not in "12345678":
        return False
    return _ins_body_ok(text[:13]) and (len(text) == 13 or text[13:].isdigit())
