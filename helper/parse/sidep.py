"""Everything specific to the SI-DEP certificate message format, in one place.

Source: the ANS/SI-DEP guide "Raccordement des LBM à MSSanté" (facsimile pages 4/3) — sender,
subject line, attachment name and body field labels. A change of format, or a second kind of
message from a national system, is a change here only.
"""

from __future__ import annotations

import re
from functools import lru_cache

from helper.parse.text import fold

#: Kind of record this format produces (stored with each certificate).
KIND = "sidep-certificate"

#: Default trusted senders; the configuration may replace this list.
DEFAULT_TRUSTED_SENDERS: tuple[str, ...] = ("noreply.sidep@enovacom.easycrypt.fr",)

#: ``[Projet SI-DEP] Certificat de test : {FINESS} | {dossier} | {Nom} | {Prénom}``: the fixed
#: start only. The four fields are cut on ``|`` and stripped in Python (:func:`parse_subject`); every
#: quantifier here is possessive, so matching is linear whatever the subject (no backtracking).
SUBJECT_PREFIX_RE = re.compile(
    r"\s*+\[\s*+Projet\s++SI-?DEP\s*+\]\s*+Certificat\s++de\s++test\s*+(?::\s*+)?",
    re.I,
)

#: Longer subjects are not certificate subjects (a real one is under 200 characters); bounding the
#: length bounds the work spent on a hostile one.
MAX_SUBJECT_CHARS = 2000

#: A cheap test run on every subject before the full parse.
SUBJECT_MARKER = re.compile(r"Certificat\s++de\s++test", re.I)

#: Attachment / saved file name: ``{FINESS}_{dossier}_{NOM}_{Prénom}.pdf`` (browsers may add `` (1)``).
#: Bounded to 255 characters (a file name's limit) by the leading look-ahead, so the lazy groups
#: below cost at most a constant however long a hostile attachment name is.
FILENAME_RE = re.compile(
    r"^(?=(?s:.){1,255}\Z)(?P<finess>(?:\d{2}|2[AB])\d{7})_(?P<dossier>[A-Za-z0-9\-]+)_(?P<last_name>.+?)_(?P<first_name>[^_]+?)"
    r"(?:\s*\(\d+\))?\.pdf$",
    re.I,
)

#: Body labels (folded: lower case, no accents, apostrophes as ``'``) → record field.
#: Matched against the text before the first colon of each line.
BODY_LABELS: tuple[tuple[str, str], ...] = (
    ("nom de naissance", "last_name"),
    ("nom", "last_name"),
    ("prenoms", "first_name"),
    ("prenom(s)", "first_name"),
    ("prenom", "first_name"),
    ("sexe", "sex"),
    ("date de naissance", "birth_date"),
    ("matricule identifiant national de sante (ins)", "ins"),
    ("matricule ins", "ins"),
    ("ins", "ins"),
    ("test realise", "analysis"),
    ("type d'analyse", "analysis"),
    ("type de test", "analysis"),
    ("identifiant de la structure ayant realise le test", "finess"),
    ("date de prelevement", "sampled_at"),
    ("date et heure de prelevement", "sampled_at"),
    ("date et heure du prelevement", "sampled_at"),
    ("date de", "sampled_at"),  # the guide's facsimile 3/3 prints "Date de : {Date et heure de prélèvement}"
    ("date d'integration du resultat dans l'application si-dep", "integrated_at"),
    ("date d'integration", "integrated_at"),
    ("resultat du test", "result"),
    ("resultat", "result"),
    ("numero de dossier", "dossier"),
)
_LABELS = dict(BODY_LABELS)

#: Within the analysis field: ``Type d'analyse (voir le site de Bioloinc ...): 94500-6 Libellé``.
ANALYSIS_RE = re.compile(r"(?:.*\)\s*:\s*|.*?:\s*)?(?P<code>\d{4,6}-\d)\s*(?P<label>.*)$", re.S)


@lru_cache(maxsize=4096)
def field_for_label(label: str) -> str | None:
    """The record field a body or PDF line label names, or None."""
    key = fold(label).strip().rstrip(" :")
    key = re.sub(r"\s+", " ", key)
    return _LABELS.get(key)


def parse_subject(subject: str) -> dict[str, str] | None:
    """The four fields of a certificate subject (stripped), or None when it is not one.

    Linear time: one possessive prefix match, then three cuts on ``|`` (the first name may hold
    further ``|``, as before).
    """
    if len(subject) > MAX_SUBJECT_CHARS or SUBJECT_MARKER.search(subject) is None:
        return None
    m = SUBJECT_PREFIX_RE.match(subject)
    if m is None:
        return None
    parts = subject[m.end() :].split("|", 3)
    if len(parts) < 4:
        return None
    return {name: value.strip() for name, value in zip(_SUBJECT_FIELDS, parts, strict=True)}


_SUBJECT_FIELDS = ("finess", "dossier", "last_name", "first_name")


def is_certificate_subject(subject: str) -> bool:
    return parse_subject(subject) is not None
