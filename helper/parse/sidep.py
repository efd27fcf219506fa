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

#: ``[Projet SI-DEP] Certificat de test : {FINESS} | {dossier} | {Nom} | {Prénom}``
SUBJECT_RE = re.compile(
    r"^\s*\[\s*Projet\s+SI-?DEP\s*\]\s*Certificat\s+de\s+test\s*:?\s*"
    r"(?P<finess>[^|]*?)\s*\|\s*(?P<dossier>[^|]*?)\s*\|\s*(?P<last_name>[^|]*?)\s*\|\s*(?P<first_name>.*?)\s*$",
    re.I | re.S,
)

#: A cheap test run on every subject before the full pattern.
SUBJECT_MARKER = re.compile(r"Certificat\s+de\s+test", re.I)

#: Attachment / saved file name: ``{FINESS}_{dossier}_{NOM}_{Prénom}.pdf`` (browsers may add `` (1)``).
FILENAME_RE = re.compile(
    r"^(?P<finess>(?:\d{2}|2[AB])\d{7})_(?P<dossier>[A-Za-z0-9\-]+)_(?P<last_name>.+?)_(?P<first_name>[^_]+?)"
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


def is_certificate_subject(subject: str) -> bool:
    return SUBJECT_MARKER.search(subject) is not None and SUBJECT_RE.match(subject) is not None
