"""Realistic generator of SI-DEP certificate e-mails (and of the noise around them).

SI-DEP sends, by MSSanté secure mail, the COVID-19 test certificate of patients who have neither a valid
mobile number nor an e-mail address to the organisational mailbox of the lab site.  This module builds such
messages byte by byte (string templates, no ``email`` package on the hot path) so that tests and benchmarks
can exercise every encoding a parser may meet: RFC 2047 subjects (B, Q, ISO-8859-1, raw 8-bit), RFC 2231 /
RFC 2047 / plain attachment names, plain / HTML / alternative bodies in several charsets and transfer
encodings, CRLF or LF line ends, forwarded copies, spoofed senders, truncated files, and the on-disk layouts
of Roundcube downloads (.eml), Thunderbird mbox and Maildir.

Only the standard library is used.  ``make_message`` is fast (the PDF padding and its base64 form are cached)
so that benchmarks can generate tens of thousands of messages.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import html
import itertools
import os
import random
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, replace
from email.parser import BytesHeaderParser
from email.policy import default as _default_policy
from email.utils import parsedate_tz
from pathlib import Path

__all__ = [
    "ANALYSES",
    "SPOOF_SENDER",
    "FEMALE_FIRST_NAMES",
    "MALE_FIRST_NAMES",
    "SURNAMES",
    "TRUSTED_SENDER",
    "CertSpec",
    "ascii_fold",
    "corpus",
    "corpus_variant",
    "encode_words",
    "expected_subject",
    "format_ins",
    "forward",
    "ins_key",
    "luhn_finess",
    "make_message",
    "make_pdf",
    "make_text_pdf",
    "other_mail",
    "pdf_filename",
    "pdf_text_lines",
    "random_finess",
    "random_ins",
    "random_spec",
    "spoof",
    "synth_surname",
    "truncate",
    "write_eml",
    "write_maildir",
    "write_mbox",
]

TRUSTED_SENDER = "noreply.sidep@enovacom.easycrypt.fr"
SPOOF_SENDER = "noreply.sidep@enovacom-easycrypt.fr.evil.example"


# --------------------------------------------------------------------------------------------------------------
# Specification of one certificate
# --------------------------------------------------------------------------------------------------------------
@dataclass
class CertSpec:
    finess: str  # 9 chars, site FINESS (ET)
    dossier: str  # "2106221234" or "A2106220042"
    last_name: str  # as written in SI-DEP: uppercase with accents
    first_name: str  # given name(s) as written: "Émilie", "Marie Christine Louise"
    sex: str  # "M" or "F"
    birth_date: datetime.date
    ins: str | None  # 15 chars (2A/2B allowed at positions 6-7) or None
    analysis_code: str  # LOINC, e.g. "94500-6"
    analysis_label: str  # French Bioloinc label
    sampled_at: datetime.datetime
    integrated_at: datetime.datetime
    result: str  # as written: "NEGATIF", "Positif", "X", ...
    message_id: str  # "<...@enovacom.easycrypt.fr>"
    sender: str = TRUSTED_SENDER
    recipient: str = "lbm-site@labo.mssante.fr"


# --------------------------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------------------------
def _luhn_digit(payload: str) -> str:
    """Luhn check digit of a digit string (the digit that makes payload+digit valid)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # rightmost payload digit is doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_finess(first8: str) -> str:
    """9-character FINESS: ``first8`` followed by its Luhn check digit (2A/2B: any digit, rule unknown)."""
    if len(first8) != 8:
        raise ValueError(f"FINESS payload must have 8 characters: {first8!r}")
    if not first8.isdigit():
        # Corsican numbers: the checksum rule is not confirmed, use a deterministic digit.
        return first8 + str(sum(map(ord, first8)) % 10)
    return first8 + _luhn_digit(first8)


_DEPTS = [
    ("75", 12), ("92", 6), ("93", 6), ("94", 5), ("69", 8), ("13", 8), ("59", 7), ("33", 5), ("31", 5),
    ("06", 4), ("67", 4), ("44", 4), ("34", 4), ("35", 3), ("38", 3), ("76", 3), ("62", 3), ("57", 3),
    ("01", 1), ("14", 2), ("21", 2), ("29", 2), ("37", 2), ("45", 2), ("51", 2), ("63", 2), ("64", 2),
    ("2A", 1), ("2B", 1), ("971", 1), ("972", 1), ("973", 1), ("974", 2), ("976", 1),
]
_DEPT_NAMES = [d for d, _ in _DEPTS]
_DEPT_WEIGHTS = [w for _, w in _DEPTS]


def random_finess(rng: random.Random, dept: str | None = None) -> str:
    """Random site FINESS for a département ("75", "2A", "971"...); valid Luhn except for Corsica."""
    if dept is None:
        dept = rng.choices(_DEPT_NAMES, _DEPT_WEIGHTS)[0]
    body = dept + "".join(str(rng.randrange(10)) for _ in range(8 - len(dept)))
    if dept in ("2A", "2B"):
        return body + str(rng.randrange(10))
    return luhn_finess(body)


def ins_key(first13: str) -> str:
    """2-digit NIR/INS key: 97 - (first13 mod 97), with 2A -> 19 and 2B -> 18 (Corsica)."""
    if len(first13) != 13:
        raise ValueError(f"INS payload must have 13 characters: {first13!r}")
    num = first13.upper().replace("2A", "19").replace("2B", "18")
    return f"{97 - int(num) % 97:02d}"


def random_ins(rng: random.Random, sex: str, birth_date: datetime.date, corsica: bool = False) -> str:
    """Random 15-character INS (NIR) consistent with sex and birth date."""
    first = "1" if sex == "M" else "2"
    if corsica:
        dept = rng.choice(("2A", "2B"))
    else:
        dept = rng.choice(_INS_DEPTS)
    first13 = (
        f"{first}{birth_date.year % 100:02d}{birth_date.month:02d}{dept}"
        f"{rng.randrange(1, 1000):03d}{rng.randrange(1, 1000):03d}"
    )
    return first13 + ins_key(first13)


_INS_DEPTS = [f"{d:02d}" for d in range(1, 96) if d != 20] + ["99"]


def format_ins(ins: str, style: str) -> str:
    """'plain' (15 chars), 'spaced' (1 85 05 78 006 084 36) or 'none' (empty)."""
    if style == "none" or not ins:
        return ""
    if style == "spaced":
        return f"{ins[0]} {ins[1:3]} {ins[3:5]} {ins[5:7]} {ins[7:10]} {ins[10:13]} {ins[13:15]}"
    if style != "plain":
        raise ValueError(f"unknown ins_style {style!r}")
    return ins


# --------------------------------------------------------------------------------------------------------------
# Identity pools
# --------------------------------------------------------------------------------------------------------------
SURNAMES: tuple[str, ...] = (
    # the most common French surnames
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT",
    "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD",
    "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFÈVRE", "FAURE", "ANDRÉ",
    "MERCIER", "BLANC", "GUÉRIN", "BOYER", "GARNIER", "CHEVALIER", "FRANÇOIS", "LEGRAND", "GAUTHIER",
    "GARCIA", "PERRIN", "ROBIN", "CLÉMENT", "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER",
    "MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOËL", "MEYER", "DUFOUR",
    "MEUNIER", "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIÈRE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER",
    "ARNAUD", "MARTINEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL",
    "CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER",
    "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOÎT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ",
    "GUILLAUME", "LECOMTE", "LOPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER",
    "SANCHEZ", "DUPUIS", "MOULIN", "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER", "FLEURY",
    "ROYER", "KLEIN", "JACQUET", "ADAM", "PARIS", "POIRIER", "MARTY", "AUBRY", "GUYOT", "CARRÉ", "CHARLES",
    "RENAULT", "CHARPENTIER", "MÉNARD", "MAILLARD", "BARON", "BERTIN", "BAILLY", "HERVÉ", "SCHNEIDER",
    "FERNANDEZ", "LE GALL", "COLLET", "LÉGER", "BOUVIER", "JULIEN", "PRÉVOST", "MILLET", "PERROT", "DANIEL",
    "LE ROUX", "COUSIN", "GERMAIN", "BRETON", "BESSON", "LANGLOIS", "RÉMY", "PELLETIER", "LÉVÊQUE",
    "PERRIER", "LEBLANC", "BARRÉ", "LEBRUN", "MARCHAL", "WEBER", "MALLET", "HAMON", "BOULANGER", "JACOB",
    "MONNIER", "MICHAUD", "RODRIGUEZ", "GUICHARD", "GILLET", "ÉTIENNE", "GRONDIN", "POULAIN", "TESSIER",
    "CHEVALLIER", "COLLIN", "CHAUVIN", "DA SILVA", "BOUCHET", "GAY", "LEMAÎTRE", "BÉNARD", "MARÉCHAL",
    "HUMBERT", "REYNAUD", "ANTOINE", "HOARAU", "PERRET", "BARTHÉLEMY", "CORDIER", "PICHON", "LEJEUNE",
    "GILBERT", "LAMY", "DELAUNAY", "PASQUIER", "CARLIER", "LAPORTE", "BÉRANGER", "CÔTÉ", "FÉLIX",
    # particles, apostrophes, hyphens, spaces, ligatures, diaereses
    "D'ALMEIDA", "N'DIAYE", "DE LA FONTAINE", "DU PONT", "SAINT-ÉTIENNE", "MARTIN-DUPONT", "L'HERMITE",
    "CŒUR", "CHAÏB", "LE GOFF", "LE BIHAN", "DE SOUSA", "DOS SANTOS", "D'ARGENT", "DE GAULLE", "LE BRIS",
    "SAINT-CLAIR", "DUPONT-AIGNAN", "O'NEILL", "N'GUESSAN", "M'BAPPÉ", "LECŒUR", "BŒUF", "DELAÏ", "HAÜY",
    "VAN DER BERG", "DE SAINT-EXUPÉRY", "L'ÉPÉE", "MOUSSA-DIALLO", "DIALLO", "TRAORÉ", "KONATÉ", "BENAÏSSA",
    "NGUYEN", "TRAN", "PHAM", "COHEN", "LÉVY", "BENOIST", "ZÉNON", "D'ORNANO",
)

FEMALE_FIRST_NAMES: tuple[str, ...] = (
    "Émilie", "Zoé", "Hélène", "Anaïs", "Maëlle", "Marie-Thérèse", "Marie", "Camille", "Léa", "Chloé",
    "Manon", "Inès", "Jade", "Louise", "Lina", "Clémence", "Sophie", "Nathalie", "Isabelle", "Sylvie",
    "Catherine", "Françoise", "Monique", "Nicole", "Valérie", "Sandrine", "Céline", "Aurélie", "Julie",
    "Élodie", "Mélanie", "Laëtitia", "Noémie", "Agnès", "Geneviève", "Bérénice", "Joséphine", "Anne-Sophie",
    "Marie-Claire", "Christine", "Martine", "Brigitte", "Océane", "Romane", "Margaux", "Lucie", "Éloïse",
    "Gaëlle", "Solène", "Ophélie", "Héloïse", "Anne", "Jeanne", "Élise", "Aïcha", "Fatoumata", "Yasmine",
    "Christelle", "Danièle", "Renée", "Thérèse", "Mathilde", "Juliette", "Cécile", "Béatrice", "Zoë",
    "Marie-Noëlle", "Chloë", "Léonie", "Rose", "Ambre", "Jeanne-Marie",
)

MALE_FIRST_NAMES: tuple[str, ...] = (
    "Jérôme", "François", "Jean-Pierre", "Jean", "Pierre", "Michel", "Philippe", "Alain", "Nicolas",
    "Christophe", "Stéphane", "Frédéric", "Sébastien", "Julien", "Thomas", "Lucas", "Hugo", "Louis",
    "Gabriel", "Raphaël", "Noé", "Loïc", "Gaël", "Joël", "Noël", "Benoît", "Hervé", "Rémi", "Jérémy",
    "Mickaël", "Clément", "Théo", "Mathéo", "Timothée", "Jean-Baptiste", "Jean-François", "Jean-Luc",
    "Pierre-Yves", "André", "René", "Gérard", "Bernard", "Daniel", "Patrick", "Éric", "Denis", "Olivier",
    "Laurent", "Thierry", "Didier", "Cédric", "Grégory", "Mehdi", "Mamadou", "Karim", "Yannick", "Aurélien",
    "Anthony", "Maxime", "Antoine", "Baptiste", "Valentin", "Adrien", "Léo", "Enzo", "Nathan", "Mohamed",
    "Côme", "Anatole", "Hippolyte", "Ismaël", "Anaël", "Célestin", "Josué",
)

_FEMALE_SIMPLE = tuple(n for n in FEMALE_FIRST_NAMES if "-" not in n)
_MALE_SIMPLE = tuple(n for n in MALE_FIRST_NAMES if "-" not in n)

# Syllables for the long tail of synthesised surnames (~60k combinations).
_SYL_START = (
    "BA", "BE", "BO", "BRA", "BRI", "CA", "CHA", "CHE", "CO", "CRE", "DA", "DE", "DU", "FA", "FE", "FO", "GA",
    "GO", "GRA", "GUI", "JA", "JO", "LA", "LE", "LI", "LO", "MA", "ME", "MO", "NA", "NO", "PA", "PE", "PO",
    "RA", "RO", "SA", "SE", "TA", "TO", "VA", "VE", "VI", "BÉ", "LÉ", "RÉ", "MÉ", "CHÂ", "TRÉ", "GÉ",
)
_SYL_MID = (
    "", "", "", "", "BER", "CAR", "DEL", "GAR", "LAN", "LER", "MAR", "NIER", "PER", "RAN", "RIN", "SSEL",
    "TEL", "TER", "VAL", "VER", "BOU", "COU", "LOU", "MOU", "ROU", "TOU", "GNO", "CHON", "NEL", "RIÈ",
)
_SYL_END = (
    "AUD", "AULT", "EAU", "EAUX", "ET", "ETTE", "IER", "IN", "OT", "OUX", "AC", "AT", "ARD", "ART", "Y", "ON",
    "ONNET", "ENS", "IÈRE", "ÉE", "EL", "AN", "OIS", "OUD", "IGNAC", "ERT", "IS", "AZ", "ÈS", "EUX",
)


def synth_surname(rng: random.Random) -> str:
    """A plausible but synthetic French surname (e.g. 'BRIGARAUD', 'LÉTOUEAU')."""
    return rng.choice(_SYL_START) + rng.choice(_SYL_MID) + rng.choice(_SYL_END)


ANALYSES: tuple[tuple[str, str], ...] = (
    ("94500-6", "SARS-CoV-2 (Covid 19) ARN [Présence] Voies respiratoires ; Résultat nominal ; Amplification génique"),
    ("94309-2", "SARS-CoV-2 (Covid 19) ARN [Présence] Échantillon biologique ; Résultat nominal ; Amplification génique"),
    ("94845-5", "SARS-CoV-2 (Covid 19) ARN [Présence] Salive ; Résultat nominal ; Amplification génique"),
    ("94558-4", "SARS-CoV-2 (Covid 19) Ag [Présence] Voies respiratoires ; Résultat nominal ; Immunochromatographie"),
)
_ANALYSIS_WEIGHTS = (55, 10, 5, 30)

_RESULT_SPELLINGS = {
    # outcome -> (upper, capitalised, letter)
    "N": ("NEGATIF", "Négatif", "N"),
    "P": ("POSITIF", "Positif", "P"),
    "X": ("Ininterprétable", "Ininterprétable", "X"),
}


_SURNAME_CUM_WEIGHTS = tuple(itertools.accumulate(1 / (rank + 8) for rank in range(len(SURNAMES))))


def _pick_surname(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.62:
        # Zipf-like preference for the head of the list (MARTIN ~2 %)
        return rng.choices(SURNAMES, cum_weights=_SURNAME_CUM_WEIGHTS)[0]
    if r < 0.97:
        return synth_surname(rng)
    # compound surname of two names
    return f"{rng.choice(SURNAMES[:150])}-{rng.choice(SURNAMES[:150] + (synth_surname(rng),))}"


def _pick_first_name(rng: random.Random, sex: str) -> str:
    pool, simple = (MALE_FIRST_NAMES, _MALE_SIMPLE) if sex == "M" else (FEMALE_FIRST_NAMES, _FEMALE_SIMPLE)
    first = rng.choice(pool)
    if rng.random() < 0.12:  # several given names, as in civil status: "Marie Christine Louise"
        extra = rng.sample(simple, rng.choice((1, 1, 2)))
        return " ".join([first, *[e for e in extra if e != first]])
    return first


SAMPLED_WITHIN_DAYS = 60


def random_spec(rng: random.Random, **overrides: object) -> CertSpec:
    """Random, realistic certificate specification; any CertSpec field may be overridden."""
    o = overrides
    sex = o.get("sex") or rng.choice("MF")
    first_name = o.get("first_name") or _pick_first_name(rng, sex)  # type: ignore[arg-type]
    last_name = o.get("last_name") or _pick_surname(rng)
    birth_date = o.get("birth_date") or (
        datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randrange(33237))  # up to 2020-12-31
    )
    finess = o.get("finess") or random_finess(rng)
    if "ins" in o:
        ins = o["ins"]
    elif rng.random() < 0.12:
        ins = None
    else:
        corsica = finess[:2] in ("2A", "2B") or rng.random() < 0.02
        ins = random_ins(rng, sex, birth_date, corsica=corsica)  # type: ignore[arg-type]
    # Within the last two months by default: older certificates are past the helper's default
    # retention (90 days) and would not be stored. Pass ``sampled_at`` for an older one.
    sampled_at = o.get("sampled_at") or (
        datetime.datetime.combine(datetime.date.today(), datetime.time(7, 0))
        - datetime.timedelta(days=3 + rng.randrange(SAMPLED_WITHIN_DAYS))
        + datetime.timedelta(seconds=rng.randrange(13 * 3600))
    )
    if "integrated_at" in o:
        integrated_at = o["integrated_at"]
    else:
        # a few minutes to 2 days after sampling, mostly within hours
        minutes = min(2880, 3 + int(rng.expovariate(1 / 240)))
        integrated_at = sampled_at + datetime.timedelta(minutes=minutes, seconds=rng.randrange(60))  # type: ignore[operator]
    if "dossier" in o:
        dossier = o["dossier"]
    else:
        day = f"{sampled_at:%y%m%d}"
        if rng.random() < 0.15:
            dossier = f"{rng.choice('ABCDEFGHKLMPRSTV')}{day}{rng.randrange(10000):04d}"
        else:
            dossier = f"{day}{rng.randrange(10000):04d}"
    if "analysis_code" in o and "analysis_label" not in o:
        label = dict(ANALYSES).get(o["analysis_code"], ANALYSES[0][1])  # type: ignore[call-overload]
        code = o["analysis_code"]
    else:
        code, label = rng.choices(ANALYSES, _ANALYSIS_WEIGHTS)[0]
        code = o.get("analysis_code", code)
        label = o.get("analysis_label", label)
    if "result" in o:
        result = o["result"]
    else:
        outcome = rng.choices("NPX", (85, 12, 3))[0]
        result = _RESULT_SPELLINGS[outcome][rng.choices((0, 1, 2), (50, 35, 15))[0]]
    message_id = o.get("message_id") or (
        f"<{rng.getrandbits(64):016x}.{rng.getrandbits(40)}.JavaMail.sidep@enovacom.easycrypt.fr>"
    )
    extra = {k: v for k, v in o.items() if k in ("sender", "recipient")}
    known = {
        "finess", "dossier", "last_name", "first_name", "sex", "birth_date", "ins", "analysis_code",
        "analysis_label", "sampled_at", "integrated_at", "result", "message_id", "sender", "recipient",
    }
    unknown = set(o) - known
    if unknown:
        raise TypeError(f"unknown CertSpec fields: {sorted(unknown)}")
    return CertSpec(
        finess=finess, dossier=dossier, last_name=last_name, first_name=first_name, sex=sex,  # type: ignore[arg-type]
        birth_date=birth_date, ins=ins, analysis_code=code, analysis_label=label,  # type: ignore[arg-type]
        sampled_at=sampled_at, integrated_at=integrated_at, result=result,  # type: ignore[arg-type]
        message_id=message_id, **extra,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------------------
_FOLD_SPECIAL = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "’": "'", "Ø": "O"})


def ascii_fold(text: str) -> str:
    """'LEFÈVRE_Émilie' -> 'LEFEVRE_Emilie', 'CŒUR' -> 'COEUR' (as a plain-ASCII mailer would write it)."""
    text = text.translate(_FOLD_SPECIAL)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def expected_subject(spec: CertSpec) -> str:
    """The subject exactly as in the guide's facsimile."""
    return (
        f"[Projet SI-DEP] Certificat de test : {spec.finess} | {spec.dossier} | "
        f"{spec.last_name} | {spec.first_name}"
    )


def pdf_filename(spec: CertSpec) -> str:
    """'{FINESS}_{dossier}_{NOM}_{Prénom}.pdf' as written (accents and spaces kept)."""
    return f"{spec.finess}_{spec.dossier}_{spec.last_name}_{spec.first_name}.pdf"


def _fmt_date(d: datetime.date, style: str) -> str:
    if style == "iso":
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def _fmt_datetime(dt: datetime.datetime, style: str) -> str:
    if style == "fr":
        return f"{dt.day:02d}/{dt.month:02d}/{dt.year:04d} {dt.hour:02d}:{dt.minute:02d}"
    if style == "fr_seconds":
        return f"{dt.day:02d}/{dt.month:02d}/{dt.year:04d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if style == "iso":
        return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if style == "fr_a":
        return f"{dt.day:02d}/{dt.month:02d}/{dt.year:04d} à {dt.hour:02d}h{dt.minute:02d}"
    raise ValueError(f"unknown date_style {style!r}")


_SEX_WORDS = {
    "letter": {"M": "M", "F": "F"},
    "word": {"M": "Masculin", "F": "Féminin"},
    "lower": {"M": "masculin", "F": "féminin"},
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DST_CACHE: dict[int, tuple[datetime.datetime, datetime.datetime]] = {}


def _paris_offset(dt: datetime.datetime) -> str:
    """UTC offset of Europe/Paris for a naive local time (EU rule: last Sunday of March/October)."""
    if dt.tzinfo is not None:
        off = dt.utcoffset() or datetime.timedelta(0)
        minutes = int(off.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    bounds = _DST_CACHE.get(dt.year)
    if bounds is None:
        mar = datetime.datetime(dt.year, 3, 31, 2)
        mar -= datetime.timedelta(days=(mar.weekday() + 1) % 7)
        octo = datetime.datetime(dt.year, 10, 31, 3)
        octo -= datetime.timedelta(days=(octo.weekday() + 1) % 7)
        bounds = _DST_CACHE[dt.year] = (mar, octo)
    return "+0200" if bounds[0] <= dt < bounds[1] else "+0100"


def _rfc2822(dt: datetime.datetime) -> str:
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {_paris_offset(dt)}"
    )


# RFC 2047 -----------------------------------------------------------------------------------------------------
_Q_SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TABLE = tuple(
    "_" if b == 0x20 else (chr(b) if b in _Q_SAFE else f"={b:02X}") for b in range(256)
)


def _split_bytes(data: bytes, size: int, utf8: bool) -> list[bytes]:
    """Split into chunks of at most ``size`` bytes without cutting a UTF-8 sequence."""
    out = []
    i, n = 0, len(data)
    while i < n:
        j = min(i + size, n)
        if utf8:
            while j < n and j > i + 1 and (data[j] & 0xC0) == 0x80:
                j -= 1
        out.append(data[i:j])
        i = j
    return out


def encode_words(text: str, charset: str = "utf-8", mode: str = "b") -> str:
    """RFC 2047 encoded-words (each <= 75 chars) joined by folding whitespace ``\\n ``."""
    data = text.encode(charset)
    utf8 = charset.lower() in ("utf-8", "utf8")
    prefix = f"=?{charset}?{mode.upper()}?"
    room = 75 - len(prefix) - 2
    words = []
    if mode == "b":
        for chunk in _split_bytes(data, room // 4 * 3, utf8):
            words.append(prefix + binascii.b2a_base64(chunk, newline=False).decode("ascii") + "?=")
    elif mode == "q":
        cur: list[str] = []
        cur_len = 0
        tokens: list[str] = []
        if utf8:
            for ch in text:
                tokens.append("".join(_Q_TABLE[b] for b in ch.encode("utf-8")))
        else:
            tokens = [_Q_TABLE[b] for b in data]
        for tok in tokens:
            if cur_len + len(tok) > room and cur:
                words.append(prefix + "".join(cur) + "?=")
                cur, cur_len = [], 0
            cur.append(tok)
            cur_len += len(tok)
        if cur:
            words.append(prefix + "".join(cur) + "?=")
    else:
        raise ValueError(f"unknown RFC 2047 mode {mode!r}")
    return "\n ".join(words)


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def _encode_subject(subject: str, encoding: str) -> str:
    if encoding == "raw":
        return subject
    if encoding == "b":
        return encode_words(subject, "utf-8", "b")
    if encoding == "q":
        return encode_words(subject, "utf-8", "q")
    if encoding == "iso":
        # Œ/Ÿ/’ are not Latin-1: a Windows mailer then labels the words windows-1252.
        cs = "iso-8859-1" if _encodable(subject, "iso-8859-1") else "windows-1252"
        if not _encodable(subject, cs):
            return encode_words(subject, "utf-8", "q")
        return encode_words(subject, cs, "q")
    raise ValueError(f"unknown subject_encoding {encoding!r}")


def _filename_params(name: str, encoding: str) -> tuple[str, str]:
    """(Content-Type params, Content-Disposition params) for the attachment name, folded with '\\n '."""
    if encoding == "rfc2231":
        quoted = urllib.parse.quote(name, safe="")
        if len(quoted) <= 60:
            return f"name*=utf-8''{quoted}", f"filename*=utf-8''{quoted}"
        # Thunderbird-style continuations, never splitting a %XX escape
        parts = []
        i = 0
        while i < len(quoted):
            j = min(i + 60, len(quoted))
            if "%" in quoted[j - 2 : j]:
                j = i + quoted[i:j].rindex("%")
            parts.append(quoted[i:j])
            i = j
        ct = ";\n ".join(
            (f"name*{k}*=utf-8''{p}" if k == 0 else f"name*{k}*={p}") for k, p in enumerate(parts)
        )
        cd = ";\n ".join(
            (f"filename*{k}*=utf-8''{p}" if k == 0 else f"filename*{k}*={p}") for k, p in enumerate(parts)
        )
        return ct, cd
    if encoding == "rfc2047":
        words = encode_words(name, "utf-8", "b").replace("\n ", " ")
        return f'name="{words}"', f'filename="{words}"'
    if encoding == "plain":
        folded = ascii_fold(name).replace("\\", "_").replace('"', "_")
        return f'name="{folded}"', f'filename="{folded}"'
    raise ValueError(f"unknown filename_encoding {encoding!r}")


# --------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------
_PDF_ESCAPE = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)", "\r": " ", "\n": " "})
_PDF_OVERHEAD = 1800  # approximate size of everything but the image


def pdf_text_lines(spec: CertSpec) -> list[str]:
    """The text lines of the certificate PDF, in order."""
    dt = spec.sampled_at
    return [
        "CERTIFICAT DE TEST COVID-19",
        f"Nom : {spec.last_name}",
        f"Prénom(s) : {spec.first_name}",
        f"Sexe : {'Masculin' if spec.sex == 'M' else 'Féminin'}",
        f"Date de naissance : {_fmt_date(spec.birth_date, 'fr')}",
        f"Identifiant de la structure ayant réalisé le test : {spec.finess}",
        f"Numéro de dossier : {spec.dossier}",
        f"Type de test : {spec.analysis_code} {spec.analysis_label}",
        f"Date et heure du prélèvement : {_fmt_datetime(dt, 'fr')}",
        f"Résultat du test : {spec.result}",
    ]


class _PdfPrefix:
    """Constant head of the PDF for one target size: header, catalog, pages, font and the image object.

    Its length is a multiple of 57 bytes so that its base64 form (76-char lines) can be cached and
    reused by make_message: only the variable tail has to be encoded for each message.
    """

    __slots__ = ("data", "offsets", "b64")

    def __init__(self, size: int) -> None:
        n = max(64, size - _PDF_OVERHEAD)
        side = max(8, int(n**0.5))
        image = random.Random(0x5D1DE9 + size).randbytes(side * side)  # fixed seed: deterministic padding
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        objs = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 4 0 R >> /XObject << /Im1 5 0 R >> >> /Contents 6 0 R >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        ]
        for num, body in enumerate(objs, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
        offsets.append(len(out))
        out += (
            b"5 0 obj\n<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (side, side, len(image))
        )
        out += image
        out += b"\nendstream\nendobj\n"
        pad = (-(len(out) + 2)) % 57
        out += b"%" + b"0" * pad + b"\n"
        self.data = bytes(out)
        self.offsets = offsets
        self.b64: dict[str, bytes] = {}

    def base64(self, newline: str) -> bytes:
        cached = self.b64.get(newline)
        if cached is None:
            enc = base64.encodebytes(self.data)
            if newline != "\n":
                enc = enc.replace(b"\n", newline.encode("ascii"))
            cached = self.b64[newline] = enc
        return cached


_PDF_PREFIXES: dict[int, _PdfPrefix] = {}


def _pdf_prefix(size: int) -> _PdfPrefix:
    p = _PDF_PREFIXES.get(size)
    if p is None:
        p = _PDF_PREFIXES[size] = _PdfPrefix(size)
    return p


def _pdf_string(text: str) -> bytes:
    return b"(" + text.translate(_PDF_ESCAPE).encode("cp1252", "replace") + b")"


def make_text_pdf(lines: list[str], size: int = 40_000, created: datetime.datetime | None = None) -> bytes:
    """One-page PDF 1.4 (Helvetica, WinAnsiEncoding) showing ``lines``, padded to about ``size`` bytes."""
    prefix = _pdf_prefix(size)
    side_box = 140
    # the 2D-DOC stand-in first, then the text (so that text extraction ends with the last line)
    parts = [
        b"q\n%d 0 0 %d 405 600 cm\n/Im1 Do\nQ\n" % (side_box, side_box),
        b"BT\n/F1 14 Tf\n50 790 Td\n",
        _pdf_string(lines[0]) if lines else b"()",
        b" Tj\n/F1 9 Tf\n14 TL\n0 -8 Td\n",
    ]
    for line in lines[1:]:
        parts.append(b"T* ")
        parts.append(_pdf_string(line))
        parts.append(b" Tj\n")
    parts.append(b"ET\n")
    content = b"".join(parts)
    # Default: a recent creation date, so that a bare certificate PDF is within the retention period.
    when = created or datetime.datetime.combine(datetime.date.today() - datetime.timedelta(days=5),
                                                datetime.time(10, 0))
    tz = _paris_offset(when)
    info = (
        b"<< /Producer (SI-DEP) /Title (Certificat de test COVID-19) /CreationDate (D:%s%s'%s') >>"
        % (when.strftime("%Y%m%d%H%M%S").encode(), tz[:3].encode(), tz[3:].encode())
    )
    out = [prefix.data]
    pos = len(prefix.data)
    offsets = list(prefix.offsets)
    offsets.append(pos)
    obj6 = b"6 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (len(content), content)
    out.append(obj6)
    pos += len(obj6)
    offsets.append(pos)
    obj7 = b"7 0 obj\n%s\nendobj\n" % info
    out.append(obj7)
    pos += len(obj7)
    xref = [b"xref\n0 8\n0000000000 65535 f \n"]
    xref.extend(b"%010d 00000 n \n" % off for off in offsets)
    xref.append(b"trailer\n<< /Size 8 /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % pos)
    out.extend(xref)
    return b"".join(out)


def make_pdf(spec: CertSpec, size: int = 40_000) -> bytes:
    """The certificate PDF of ``spec`` (about ``size`` bytes; the image padding is cached per size)."""
    return make_text_pdf(pdf_text_lines(spec), size, created=spec.integrated_at)


def _pdf_base64(pdf: bytes, newline: str) -> bytes:
    """Base64 (76-char lines, each ending with ``newline``) using the cached prefix when possible."""
    nl = newline.encode("ascii")
    for prefix in _PDF_PREFIXES.values():
        if pdf.startswith(prefix.data):
            tail = base64.encodebytes(pdf[len(prefix.data) :])
            if newline != "\n":
                tail = tail.replace(b"\n", nl)
            return prefix.base64(newline) + tail
    enc = base64.encodebytes(pdf)
    return enc if newline == "\n" else enc.replace(b"\n", nl)


# --------------------------------------------------------------------------------------------------------------
# Message bodies
# --------------------------------------------------------------------------------------------------------------
_INTRO = (
    "Vous avez transmis vers l’application SI-DEP un résultat de test Covid-19 ne comportant aucun moyen de "
    "contacter le patient. Un document certifiant le résultat de ce test a été produit mais ne peut donc pas "
    "être transmis au patient. Veuillez trouver ci-joint le certificat et ci-dessous les caractéristiques du "
    "patient, du test et le résultat :"
)
_PROMO = (
    "N’hésitez pas à promouvoir auprès du patient les différents outils numériques : l’application mobile "
    "TousAntiCovid, {u1} pour obtenir des conseils personnalisés en fonction de sa situation et {u2} pour "
    "trouver facilement les lieux de dépistage les plus proches de chez soi et aller s’y faire tester, en ayant "
    "préalablement rempli le formulaire de pré-enregistrement."
)
_URL1 = "https://mesconseilscovid.sante.gouv.fr"
_URL2 = "https://sante.fr/recherche/trouver/DepistageCovid"
_THANKS = "En vous remerciant pour votre rôle déterminant dans la lutte contre l’épidémie."
_NOREPLY = "Ne tentez pas de répondre à ce mail envoyé automatiquement par SI-DEP, votre réponse ne serait pas traitée."
_TEAM = "L’équipe projet SI-DEP"

_LABELS = (
    "Nom",
    "Prénom",
    "Sexe",
    "Date de naissance",
    "Matricule Identifiant National de Santé (INS)",
    "Test réalisé",
    "Identifiant de la structure ayant réalisé le test",
    "Date de prélèvement",
    "Date d’intégration du résultat dans l’application SI-DEP",
    "Résultat du test",
)
_ANALYSIS_PREFIX = "Type d’analyse (voir le site de Bioloinc pour la terminologie): "


def _field_values(spec: CertSpec, date_style: str, sex_style: str, ins_style: str) -> list[str]:
    try:
        sex = _SEX_WORDS[sex_style].get(spec.sex, spec.sex)
    except KeyError:
        raise ValueError(f"unknown sex_style {sex_style!r}") from None
    return [
        spec.last_name,
        spec.first_name,
        sex,
        _fmt_date(spec.birth_date, "iso" if date_style == "iso" else "fr"),
        format_ins(spec.ins or "", ins_style),
        f"{_ANALYSIS_PREFIX}{spec.analysis_code} {spec.analysis_label}",
        spec.finess,
        _fmt_datetime(spec.sampled_at, date_style),
        _fmt_datetime(spec.integrated_at, date_style),
        spec.result,
    ]


def _plain_body(values: list[str]) -> str:
    fields = "\n".join(f"{label} : {value}" for label, value in zip(_LABELS, values, strict=True))
    return (
        f"Bonjour,\n\n{_INTRO}\n\nPatient concerné :\n{fields}\n\n"
        f"{_PROMO.format(u1=_URL1, u2=_URL2)}\n\n{_THANKS}\n\n{_NOREPLY}\n\nBien cordialement,\n\n{_TEAM}\n\n"
        f"{_URL1}/\n{_URL2}\n"
    )


_ENTITIES = {"é": "&eacute;", "è": "&egrave;", "à": "&agrave;", "ê": "&ecirc;", "ô": "&ocirc;", "’": "&#39;"}
_ENTITY_TABLE = str.maketrans(_ENTITIES)


def _h(static: str) -> str:
    """Static template text: HTML-escaped, with named entities for accents and &#39; for apostrophes."""
    return html.escape(static, quote=False).replace("'", "&#39;").translate(_ENTITY_TABLE)


def _hv(value: str) -> str:
    """Dynamic value: minimal escaping, accents kept literal (the charset matters)."""
    return html.escape(value, quote=False).replace("'", "&#39;").replace("’", "&#39;")


_HTML_HEAD = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n<html>\n<head>\n'
    '<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
    "<title>Certificat de test</title>\n</head>\n<body style=\"font-family: Arial, sans-serif; font-size: 10pt\">\n"
)
_HTML_TAIL = (
    "<p>"
    + _h(_PROMO).format(
        u1=f'<a href="{_URL1}">{_URL1}</a>', u2=f'<a href="{_URL2}">{_URL2}</a>'
    )
    + "</p>\n<p>"
    + _h(_THANKS)
    + "</p>\n<p>"
    + _h(_NOREPLY)
    + "</p>\n<p>Bien cordialement,<br>\n"
    + _h(_TEAM)
    + "</p>\n</body>\n</html>\n"
)
_HTML_LABELS = tuple(f"<b>{_h(label)} :</b> " for label in _LABELS)
_HTML_INTRO = f"<p>Bonjour,</p>\n<p>{_h(_INTRO)}</p>\n<p>{_h('Patient concerné :')}<br>\n"
_HTML_ANALYSIS_PREFIX = _h(_ANALYSIS_PREFIX)


def _html_body(values: list[str], charset: str) -> str:
    rows = []
    for i, (label, value) in enumerate(zip(_HTML_LABELS, values, strict=True)):
        if i == 5:  # "Type d’analyse ...": template text, then code and label
            value = _HTML_ANALYSIS_PREFIX + _hv(value[len(_ANALYSIS_PREFIX) :])
        else:
            value = _hv(value)
        rows.append(f"{label}{value}<br>\n")
    return _HTML_HEAD.format(charset=charset) + _HTML_INTRO + "".join(rows) + "</p>\n" + _HTML_TAIL


def _encode_part(text: str, charset: str, cte: str, html_part: bool) -> tuple[str, bytes]:
    """Encode a text part; returns (effective charset, payload using '\\n' line ends)."""
    cs = charset.lower()
    if cs == "iso-8859-1":
        if html_part:
            data = text.replace("’", "'").encode(cs, "xmlcharrefreplace")
        else:
            latin = text.replace("’", "'")
            if _encodable(latin, cs):
                data = latin.encode(cs)
            else:  # e.g. "CŒUR": a real system would fall back to its Windows code page
                cs = "windows-1252"
                data = text.encode(cs)
    elif cs in ("utf-8", "windows-1252"):
        data = text.encode(cs, "xmlcharrefreplace" if html_part else "strict")
    else:
        raise ValueError(f"unknown charset {charset!r}")
    if cte == "quoted-printable":
        payload = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    elif cte == "base64":
        payload = base64.encodebytes(data)
    elif cte == "8bit":
        payload = data
    else:
        raise ValueError(f"unknown body_cte {cte!r}")
    if not payload.endswith(b"\n"):
        payload += b"\n"
    return cs, payload


def _text_part(text: str, subtype: str, charset: str, cte: str) -> bytes:
    cs, payload = _encode_part(text, charset, cte, subtype == "html")
    head = f"Content-Type: text/{subtype}; charset={cs}\nContent-Transfer-Encoding: {cte}\n\n"
    return head.encode("ascii") + payload


# --------------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------------
def _boundary(seed: str, kind: str) -> str:
    return f"----=_Part_{kind}_{hashlib.md5(seed.encode('utf-8', 'replace')).hexdigest()}"


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def make_message(
    spec: CertSpec,
    *,
    pdf: bytes | None = None,
    subject_encoding: str = "b",
    filename_encoding: str = "rfc2231",
    body_cte: str = "quoted-printable",
    charset: str = "utf-8",
    newline: str = "\r\n",
    body_kind: str = "plain",
    date_style: str = "fr",
    sex_style: str = "letter",
    ins_style: str = "plain",
    subject: str | None = None,
    include_pdf: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """Raw RFC 5322 bytes of the SI-DEP certificate message described by ``spec``."""
    if newline not in ("\r\n", "\n"):
        raise ValueError("newline must be '\\r\\n' or '\\n'")
    subj = expected_subject(spec) if subject is None else subject
    outer = _boundary(spec.message_id + body_kind + subject_encoding, "mix")
    sender_domain = _domain(spec.sender)
    received_at = spec.integrated_at + datetime.timedelta(seconds=2)
    head = [
        f"Return-Path: <{spec.sender}>",
        f"Received: from smtp.{sender_domain} (smtp.{sender_domain} [185.24.184.31]) by mx1.mssante.fr "
        f"(Postfix) with ESMTPS id {outer[-12:].upper()} for <{spec.recipient}>; {_rfc2822(received_at)}",
        f"Date: {_rfc2822(spec.integrated_at)}",
        f"From: {spec.sender}",
        f"To: {spec.recipient}",
        f"Message-ID: {spec.message_id}",
        f"Subject: {_encode_subject(subj, subject_encoding)}",
        "MIME-Version: 1.0",
    ]
    if extra_headers:
        head.extend(f"{k}: {v}" for k, v in extra_headers.items())
    head.append(f'Content-Type: multipart/mixed;\n boundary="{outer}"')
    head.append("")
    head.append("This is a multi-part message in MIME format.")

    values = _field_values(spec, date_style, sex_style, ins_style)
    if body_kind == "plain":
        body = _text_part(_plain_body(values), "plain", charset, body_cte)
    elif body_kind == "html":
        body = _text_part(_html_body(values, charset), "html", charset, body_cte)
    elif body_kind == "alternative":
        alt = _boundary(spec.message_id, "alt")
        body = b"".join(
            (
                f'Content-Type: multipart/alternative;\n boundary="{alt}"\n\n--{alt}\n'.encode("ascii"),
                _text_part(_plain_body(values), "plain", charset, body_cte),
                f"\n--{alt}\n".encode("ascii"),
                _text_part(_html_body(values, charset), "html", charset, body_cte),
                f"\n--{alt}--\n".encode("ascii"),
            )
        )
    else:
        raise ValueError(f"unknown body_kind {body_kind!r}")

    pieces = [
        "\n".join(head).encode("utf-8"),
        f"\n\n--{outer}\n".encode("ascii"),
        body,
    ]
    if include_pdf:
        if pdf is None:
            pdf = make_pdf(spec)
        ct_name, cd_name = _filename_params(pdf_filename(spec), filename_encoding)
        pieces.append(
            f"\n--{outer}\nContent-Type: application/pdf;\n {ct_name}\nContent-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment;\n {cd_name}\n\n".encode()
        )
    pieces.append(f"\n--{outer}--\n".encode("ascii"))
    text = b"".join(pieces)
    if include_pdf:
        # split so that the (large) base64 payload is produced directly with the right line ends
        before, after = text[: -len(outer) - 6], text[-len(outer) - 6 :]
        if newline != "\n":
            before = before.replace(b"\n", b"\r\n")
            after = after.replace(b"\n", b"\r\n")
        return before + _pdf_base64(pdf, newline) + after  # type: ignore[arg-type]
    return text if newline == "\n" else text.replace(b"\n", b"\r\n")


def spoof(spec: CertSpec, sender: str = SPOOF_SENDER, **kwargs: object) -> bytes:
    """A certificate look-alike from an untrusted sender (same content, forged From)."""
    return make_message(replace(spec, sender=sender), **kwargs)  # type: ignore[arg-type]


_HEADER_PARSER = BytesHeaderParser(policy=_default_policy)


def _subject_of(raw: bytes) -> str | None:
    try:
        msg = _HEADER_PARSER.parsebytes(raw)
        value = msg.get("Subject")
    except Exception:  # noqa: BLE001 - truncated or broken input: no subject
        return None
    return None if value is None else str(value)


_FORWARD_COUNTER = itertools.count(1)


def forward(
    raw: bytes,
    *,
    sender: str = "secretariat@labo.mssante.fr",
    to: str = "accueil@labo.mssante.fr",
    newline: str = "\r\n",
    message_id: str | None = None,
) -> bytes:
    """'Tr: <subject>' message carrying ``raw`` unchanged as a message/rfc822 attachment."""
    subject = "Tr: " + (_subject_of(raw) or "")
    digest = hashlib.md5(raw).hexdigest()
    if message_id is None:
        message_id = f"<fwd.{digest[:16]}.{next(_FORWARD_COUNTER)}@{_domain(sender)}>"
    boundary = _boundary(message_id + digest, "fwd")
    try:
        orig_date = parsedate_tz(str(_HEADER_PARSER.parsebytes(raw).get("Date", "")))
    except Exception:  # noqa: BLE001
        orig_date = None
    when = datetime.datetime(2021, 6, 22, 11, 0)
    if orig_date:
        when = datetime.datetime(*orig_date[:6]) + datetime.timedelta(minutes=37)
    text = (
        "Bonjour,\n\nJe vous transfère le certificat ci-joint pour remise au patient.\n\n"
        "Cordialement,\n\nLe secrétariat\n"
    )
    eml_name = (ascii_fold(subject[4:])[:60].strip() or "message").translate(_FS_UNSAFE) + ".eml"
    cte8 = not raw.isascii()
    head = (
        f"Date: {_rfc2822(when)}\nFrom: {sender}\nTo: {to}\nMessage-ID: {message_id}\n"
        f"Subject: {encode_words(subject, 'utf-8', 'b')}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed;\n boundary="{boundary}"\n\n'
        f"This is a multi-part message in MIME format.\n--{boundary}\n"
        "Content-Type: text/plain; charset=utf-8; format=flowed\nContent-Transfer-Encoding: 8bit\n\n"
        f"{text}\n--{boundary}\n"
        f'Content-Type: message/rfc822;\n name="{eml_name}"\n'
        f"Content-Transfer-Encoding: {'8bit' if cte8 else '7bit'}\n"
        f'Content-Disposition: attachment;\n filename="{eml_name}"\n\n'
    ).encode()
    nl = newline.encode("ascii")
    if newline != "\n":
        head = head.replace(b"\n", nl)
    # the line end before the closing delimiter belongs to the delimiter: keep the original intact
    sep = nl if raw.endswith(b"\n") else nl + nl
    return head + raw + sep + f"--{boundary}--".encode("ascii") + nl


_OTHER_SUBJECTS = (
    ("Compte rendu de biologie - {name}", True),
    ("Résultats d'analyses : {name} ({date})", True),
    ("Commande de réactifs n° {n}", False),
    ("Planning des gardes - semaine {week}", True),
    ("[MSSanté] Votre boîte aux lettres a été mise à jour", False),
    ("Demande de prélèvement à domicile", False),
    ("[Projet SI-DEP] Information : maintenance programmée le {date}", False),
    ("RE: Facture {n}", True),
    ("Livraison écouvillons / deliveries", False),
    ("Contrôle qualité externe - campagne {n}", True),
)


def other_mail(rng: random.Random, i: int) -> bytes:
    """An ordinary, non-certificate lab message (some with a PDF attachment)."""
    template, with_pdf = _OTHER_SUBJECTS[i % len(_OTHER_SUBJECTS)]
    last = _pick_surname(rng)
    first = _pick_first_name(rng, rng.choice("MF"))
    when = datetime.datetime(2021, 6, 1, 8) + datetime.timedelta(minutes=rng.randrange(600_000))
    subject = template.format(
        name=f"{last} {first}", date=_fmt_date(when.date(), "fr"), n=rng.randrange(10_000, 99_999),
        week=when.isocalendar()[1],
    )
    senders = (
        "biologiste@labo.mssante.fr", "qualite@labo.mssante.fr", "noreply@mailiz.mssante.fr",
        "commandes@fournisseur-diag.fr", "dr.martin@medecin.mssante.fr", TRUSTED_SENDER,
    )
    # the SI-DEP maintenance notice comes from the trusted sender but is not a certificate
    sender = TRUSTED_SENDER if "SI-DEP" in subject else senders[rng.randrange(len(senders) - 1)]
    boundary = _boundary(f"other{i}{subject}", "oth")
    body = (
        "Bonjour,\n\nVeuillez trouver ci-joint le document demandé.\n"
        "Pour toute question, merci de contacter le secrétariat au 01 23 45 67 89.\n\n"
    )
    if "deliveries" in subject:
        # an English quote with a line starting with "From " (exercises mbox escaping)
        body += "----- Message transféré -----\nFrom Monday 5 July, deliveries will be made before 9 am.\n\n"
    body += "Cordialement,\n-- \nLaboratoire de biologie médicale\n"
    parts = [
        f"Return-Path: <{sender}>\nDate: {_rfc2822(when)}\nFrom: {sender}\nTo: lbm-site@labo.mssante.fr\n"
        f"Message-ID: <{rng.getrandbits(64):016x}.{i}@{_domain(sender)}>\n"
        f"Subject: {encode_words(subject, 'utf-8', rng.choice('bq'))}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed;\n boundary="{boundary}"\n\n--{boundary}\n'.encode(),
        _text_part(body, "plain", rng.choice(("utf-8", "iso-8859-1")), rng.choice(("quoted-printable", "8bit"))),
    ]
    if with_pdf:
        name = f"Compte_rendu_{ascii_fold(last).replace(' ', '_')}_{when:%Y%m%d}.pdf"
        pdf = make_text_pdf(
            ["COMPTE RENDU D'ANALYSES", f"Patient : {last} {first}", f"Édité le {_fmt_date(when.date(), 'fr')}"],
            size=12_000, created=when,
        )
        parts.append(
            f'\n--{boundary}\nContent-Type: application/pdf; name="{name}"\nContent-Transfer-Encoding: base64\n'
            f'Content-Disposition: attachment; filename="{name}"\n\n'.encode()
        )
        parts.append(_pdf_base64(pdf, "\n"))
    parts.append(f"\n--{boundary}--\n".encode())
    return b"".join(parts).replace(b"\n", b"\r\n")


def truncate(raw: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of the message (an interrupted download or copy)."""
    return raw[: max(0, int(len(raw) * fraction))]


# --------------------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------------------
_FS_UNSAFE = str.maketrans({c: "_" for c in '\\/:*?"<>|\t\r\n'})


def write_eml(directory: str | os.PathLike[str], messages: list[bytes], prefix: str = "msg") -> list[Path]:
    """Write messages as Roundcube "Télécharger (.eml)" would name them: '<sanitized subject>.eml'.

    Duplicated names get ' (1)', ' (2)'... as a browser does; messages without subject use ``prefix``.
    """
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    paths = []
    for i, raw in enumerate(messages):
        subject = _subject_of(raw)
        stem = (subject or "").translate(_FS_UNSAFE).strip(" .")
        while len(stem.encode("utf-8")) > 180:
            stem = stem[:-1]
        if not stem:
            stem = f"{prefix}-{i:05d}"
        name = f"{stem}.eml"
        k = 1
        while name.lower() in used:
            name = f"{stem} ({k}).eml"
            k += 1
        used.add(name.lower())
        path = out_dir / name
        path.write_bytes(raw)
        paths.append(path)
    return paths


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)
_DATE_HEADER = re.compile(rb"^Date:[ \t]*([^\r\n]*)", re.MULTILINE | re.IGNORECASE)


def _mbox_date(raw: bytes, fallback: datetime.datetime) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = _DATE_HEADER.search(head)
    dt = fallback
    if m:
        parsed = parsedate_tz(m.group(1).decode("ascii", "replace"))
        if parsed:
            try:
                dt = datetime.datetime(*parsed[:6])
            except ValueError:
                pass
    return f"{_DAYS[dt.weekday()]} {_MONTHS[dt.month - 1]} {dt.day:2d} {dt:%H:%M:%S} {dt.year}"


def write_mbox(path: str | os.PathLike[str], messages: list[bytes], thunderbird: bool = True) -> Path:
    """mboxo file as Thunderbird writes it (From_ line, X-Mozilla-* headers, '>From ' escaping, .msf)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    base = datetime.datetime(2021, 6, 22, 10, 0)
    with open(target, "wb") as fh:
        for i, raw in enumerate(messages):
            nl = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
            when = _mbox_date(raw, base + datetime.timedelta(minutes=i))
            fh.write(f"From - {when}".encode("ascii") + nl)
            if thunderbird:
                fh.write(b"X-Mozilla-Status: 0001" + nl + b"X-Mozilla-Status2: 00000000" + nl)
                fh.write(b"X-Mozilla-Keys: " + b" " * 80 + nl)
            body = _FROM_LINE.sub(b">From ", raw)
            fh.write(body)
            if not body.endswith(b"\n"):
                fh.write(nl)
            fh.write(nl)
    if thunderbird:
        target.with_name(target.name + ".msf").write_bytes(b"")
    return target


def write_maildir(directory: str | os.PathLike[str], messages: list[bytes]) -> Path:
    """Maildir with cur/, new/, tmp/; even messages in new/, odd ones in cur/ with the ':2,S' flag."""
    root = Path(directory)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    t0 = 1624356000
    for i, raw in enumerate(messages):
        name = f"{t0 + i * 7}.M{(i * 7919) % 1_000_000}P{4000 + i % 97}Q{i}.mx1.labo.local"
        if i % 2 == 0:
            (root / "new" / name).write_bytes(raw)
        else:
            (root / "cur" / f"{name}:2,S").write_bytes(raw)
    return root


# --------------------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------------------
_SUBJECT_ENCODINGS = ("b", "q", "raw", "iso")
_FILENAME_ENCODINGS = ("rfc2231", "rfc2047", "plain")
_CTES = ("quoted-printable", "base64", "8bit")
_CHARSETS = ("utf-8", "iso-8859-1", "windows-1252")
_BODY_KINDS = ("plain", "html", "alternative")
_DATE_STYLES = ("fr", "fr_seconds", "iso", "fr_a")
_SEX_STYLES = ("letter", "word", "lower")
_INS_STYLES = ("plain", "spaced", "none")
_NEWLINES = ("\r\n", "\n")


def corpus_variant(i: int) -> dict[str, str]:
    """make_message keyword arguments of the i-th corpus message.

    Every 27 consecutive indices cover all (body_cte, charset, body_kind) triples and every value of every
    other option; every 108 cover all (triple, subject_encoding) pairs.
    """
    j = i % 27
    d0, d1, d2 = j % 3, (j // 3) % 3, j // 9
    return {
        "body_cte": _CTES[d0],
        "charset": _CHARSETS[d1],
        "body_kind": _BODY_KINDS[d2],
        "filename_encoding": _FILENAME_ENCODINGS[(d0 + d1 + d2) % 3],
        "sex_style": _SEX_STYLES[(d0 + 2 * d1 + i // 27) % 3],
        "ins_style": _INS_STYLES[(d1 + d2 + i // 27) % 3],
        "subject_encoding": _SUBJECT_ENCODINGS[i % 4],
        "date_style": _DATE_STYLES[(i + i // 4) % 4],
        "newline": _NEWLINES[(i // 4) % 2],
    }


def corpus(rng: random.Random, n: int) -> list[tuple[CertSpec, bytes]]:
    """n varied certificate messages cycling through all encoding variants (see corpus_variant)."""
    out = []
    for i in range(n):
        spec = random_spec(rng)
        out.append((spec, make_message(spec, **corpus_variant(i))))  # type: ignore[arg-type]
    return out
