"""Generic text normalisation: folding names for search, parsing dates, sexes and results.

Nothing here knows about SI-DEP; the format-specific vocabulary lives in ``helper.parse.sidep``.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
import unicodedata

_SPECIAL_FOLDS = str.maketrans(
    {
        "œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss", "ø": "o", "Ø": "o",
        "đ": "d", "Đ": "d", "ł": "l", "Ł": "l", "ı": "i",
        "’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'", "‐": "-", "‑": "-", "–": "-", "—": "-",
        "\u00a0": " ", "\u202f": " ",
    }
)
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lower-case ASCII form of ``text``: accents removed, ligatures expanded, apostrophes unified."""
    if text.isascii():
        return text.replace("`", "'").lower()
    text = text.translate(_SPECIAL_FOLDS)
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).lower()


def words(text: str) -> list[str]:
    """Folded alphanumeric words of ``text`` (hyphens, apostrophes and spaces separate words)."""
    return [w for w in _NON_ALNUM.split(fold(text)) if w]


def name_tokens(name: str) -> list[str]:
    """Index tokens for a person's name.

    Each word, plus the joined forms a secretary may type for particles, apostrophes and
    compound names: ``D'ALMEIDA`` → ``d almeida dalmeida``, ``DE LA FONTAINE`` →
    ``de la fontaine dela lafontaine delafontaine``; German umlauts also give their
    ``ae/oe/ue`` transliteration (``MÜLLER`` → ``muller mueller``).
    """
    parts = words(name)
    tokens: list[str] = list(parts)
    if len(parts) > 1:
        for size in range(2, len(parts) + 1):
            for start in range(0, len(parts) - size + 1):
                tokens.append("".join(parts[start : start + size]))
    if _UMLAUTS_RE.search(name):
        tokens.extend(words(name.translate(_UMLAUTS)))
    seen: set[str] = set()
    unique = []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


_UMLAUTS_RE = re.compile("[äöüÄÖÜ]")


def same_name(a: str, b: str) -> bool:
    """True when two spellings of a name differ only by case, accents and separators."""
    return "".join(words(a)) == "".join(words(b))


# --- dates -------------------------------------------------------------------------------------

_DATE_PATTERNS = [
    # dd/mm/yyyy, dd-mm-yyyy, dd.mm.yyyy, optional time "10:32", "10:32:05", "10h32", "à 10h32"
    re.compile(
        r"(?P<d>\d{1,2})[/.\-](?P<m>\d{1,2})[/.\-](?P<y>\d{4})"
        r"(?:\s*(?:[àaT,]\s*)?(?P<H>\d{1,2})\s*[:hH]\s*(?P<M>\d{2})(?:\s*[:m]\s*(?P<S>\d{2}))?)?"
    ),
    # ISO yyyy-mm-dd with optional time
    re.compile(
        r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"
        r"(?:[T\s]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:\.\d+)?)?"
    ),
    # ddmmyyyy, optionally followed by hhmm (2D-DOC style)
    re.compile(r"(?<!\d)(?P<d>\d{2})(?P<m>\d{2})(?P<y>\d{4})(?:(?P<H>\d{2})(?P<M>\d{2}))?(?!\d)"),
]


def parse_datetime(text: str) -> dt.datetime | dt.date | None:
    """Parse a French or ISO date, with or without a time. Returns None when nothing fits."""
    text = text.strip()
    for pattern in _DATE_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        try:
            day = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            continue
        if m["H"] is None:
            return day
        try:
            return dt.datetime(day.year, day.month, day.day, int(m["H"]), int(m["M"]), int(m["S"] or 0))
        except ValueError:
            return day
    return None


def parse_date(text: str) -> dt.date | None:
    value = parse_datetime(text)
    if isinstance(value, dt.datetime):
        return value.date()
    return value


def iso_datetime(value: dt.datetime | dt.date | None) -> str | None:
    """ISO 8601 text (local French time, as written by SI-DEP): ``2021-06-22T10:32:00``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return dt.datetime(value.year, value.month, value.day).isoformat(timespec="seconds")


# --- sex and result ------------------------------------------------------------------------------

def normalize_sex(text: str) -> str | None:
    """``M`` / ``F`` from the usual spellings, None when not recognised."""
    w = fold(text).strip(" .")
    if w in {"m", "masculin", "homme", "h", "male", "1", "masc"}:
        return "M"
    if w in {"f", "feminin", "femme", "female", "2", "fem"}:
        return "F"
    return None


_NEGATIVE = re.compile(r"\b(negati\w*|non\s+detecte\w*|absence|n)\b")
_POSITIVE = re.compile(r"\b(positi\w*|detecte\w*|presence|p)\b")
_INCONCLUSIVE = re.compile(
    r"\b(ininterpretable|non\s+interpretable|indetermine\w*|douteu\w*|inconclu\w*|invalide|x)\b"
)


def outcome_of(result: str) -> str:
    """positive / negative / inconclusive / unknown, from a result as written."""
    w = fold(result).strip()
    if not w:
        return "unknown"
    if _INCONCLUSIVE.search(w):
        return "inconclusive"
    if _NEGATIVE.search(w):
        return "negative"
    if _POSITIVE.search(w):
        return "positive"
    return "unknown"


# --- HTML ----------------------------------------------------------------------------------------

_HIDDEN = ("script", "style", "head")
_HTML_DROP_CLOSE = {name: re.compile(rf"</{name}\s*+>", re.I) for name in _HIDDEN}


@functools.lru_cache(maxsize=8)
def _opening(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"<({'|'.join(names)})\b", re.I)


_HTML_BREAK = re.compile(r"<\s*+(br|/p|p|/div|div|/tr|/li|/h[1-6]|/table|hr)\b[^>]*+>", re.I)
_HTML_CELL = re.compile(r"<\s*+/t[dh]\s*+>", re.I)
_HTML_TAG = re.compile(r"<[^>]*+>")
_SPACES = re.compile(r"[ \t\u00a0\u202f]+")


def _drop_hidden(markup: str) -> str:
    """``<script>``, ``<style>`` and ``<head>`` elements removed, in one left-to-right pass.

    An element with no closing tag is left as it is (its tags are stripped later). Once a closing
    tag is known to be absent after some point, it is never searched for again: linear time even
    for thousands of unclosed ``<script`` (a regex with a lazy ``.*?`` would rescan the rest each time).
    """
    out: list[str] = []
    pos = start = 0
    names = _HIDDEN
    while names:
        m = _opening(names).search(markup, start)
        if m is None:
            break
        name = m.group(1).lower()
        close = _HTML_DROP_CLOSE[name].search(markup, m.end())
        if close is None:  # never closed from here on: stop looking for this element
            names = tuple(n for n in names if n != name)
            start = m.start()
            continue
        out.append(markup[pos : m.start()])
        pos = start = close.end()
    out.append(markup[pos:])
    return "".join(out)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: block tags become line breaks, entities are decoded.

    Linear time: tags are only looked for before the last ``>`` (after it none can close), so no
    ``<`` ever makes a pattern scan to the end of the text and fail.
    """
    markup = _drop_hidden(markup)
    for pattern, replacement in ((_HTML_BREAK, "\n"), (_HTML_CELL, " "), (_HTML_TAG, "")):
        last = markup.rfind(">") + 1
        markup = pattern.sub(replacement, markup[:last]) + markup[last:]
    text = html.unescape(markup)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.splitlines())
