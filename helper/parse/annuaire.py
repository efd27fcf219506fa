"""Which MSSanté mailbox SI-DEP will write to, per site, from the public MSSanté directory extraction.

The extraction (``Extraction_Correspondance_MSSante``, ANS) is UTF-8, ``|``-separated, one header row and
31 columns; about 535,000 rows. What happens:

1. The header row is read and the needed columns are found by name (« Type de BAL », « Adresse BAL »,
   « Type identifiant structure », « Identification Structure », « Service de rattachement »), so a column
   added or moved by the publisher does not shift the reading. A missing column is a clear error.
2. The rows are streamed with the ``csv`` module (no quoting: a stray quote cannot swallow the lines after
   it), keeping only the rows whose structure is one of the FINESS asked about: memory stays constant
   whatever the file's size. A row with the wrong number of fields is counted, its line number kept (the
   first few), and skipped.
3. For each FINESS, the distinct organisational (``ORG``) mailboxes whose « Service de rattachement »
   contains ``@SIDEP`` are collected (an address listed on several rows counts once); near misses are kept
   too (an ORG mailbox of that FINESS without the stamp, a personal mailbox with it), to explain a « none ».
4. The guide's rule (« Appariement automatique », pages 17–18) is applied per site: exactly one stamped
   mailbox for the FINESS géographique → that one; none for it and exactly one for the FINESS juridique →
   that one; otherwise no mail (none anywhere, or several: ambiguous).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

STAMP = "@SIDEP"

COL_TYPE = "Type de BAL"
COL_ADDRESS = "Adresse BAL"
COL_ID_TYPE = "Type identifiant structure"
COL_ID = "Identification Structure"
COL_SERVICE = "Service de rattachement"
NEEDED = (COL_TYPE, COL_ADDRESS, COL_ID_TYPE, COL_ID, COL_SERVICE)

#: "Type identifiant structure" values that are not FINESS (SIREN, SIRET, RPPS rang).
_NOT_FINESS = frozenset({"2", "3", "4", "SIREN", "SIRET"})

MAX_BAD_LINES = 20


class AnnuaireError(Exception):
    """The file cannot be read as the directory extraction (message in French)."""


@dataclass
class Mailboxes:
    """What the directory holds for one FINESS."""

    stamped: list[str] = field(default_factory=list)  # ORG and @SIDEP: what SI-DEP counts
    unstamped_org: list[str] = field(default_factory=list)  # ORG without @SIDEP
    stamped_personal: list[str] = field(default_factory=list)  # PER with @SIDEP (SI-DEP ignores them)

    def add(self, bucket: list[str], address: str) -> None:
        if address not in bucket:
            bucket.append(address)


@dataclass
class ScanResult:
    by_finess: dict[str, Mailboxes]
    rows: int = 0
    bad_lines: list[int] = field(default_factory=list)
    bad_count: int = 0


def structure_finess(id_type: str, ident: str) -> str | None:
    """The FINESS in a row's structure identifier, or None (SIRET, SIREN, empty...).

    The national identifier may carry its type prefix (``1`` + FINESS).
    """
    ident = ident.strip().upper()
    if id_type.strip().upper() in _NOT_FINESS:
        return None
    if len(ident) == 10 and ident.startswith("1"):
        ident = ident[1:]
    return ident if len(ident) == 9 and ident.isalnum() else None


def scan(path: Path, finess: Iterable[str]) -> ScanResult:
    """Stream the extraction once, collecting the mailboxes of the given FINESS (step 1–3)."""
    wanted = {f.strip().upper() for f in finess}
    result = ScanResult(by_finess={f: Mailboxes() for f in wanted})
    try:
        handle = path.open(encoding="utf-8-sig", newline="", errors="replace")
    except OSError as exc:
        raise AnnuaireError(f"impossible de lire {path} : {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise AnnuaireError(f"{path} est vide : la ligne d'en-tête de l'annuaire MSSanté est attendue")
        names = [h.strip() for h in header]
        missing = [c for c in NEEDED if c not in names]
        if missing:
            raise AnnuaireError(
                f"{path} : colonne(s) absente(s) de l'en-tête : {', '.join(missing)} "
                "(fichier « Extraction_Correspondance_MSSante » attendu, séparateur « | »)")
        width = len(names)
        i_type, i_addr, i_idt, i_id, i_srv = (names.index(c) for c in NEEDED)
        by = result.by_finess
        rows = 0
        for row in reader:
            if len(row) != width:
                if not row:
                    continue
                result.bad_count += 1
                if len(result.bad_lines) < MAX_BAD_LINES:
                    result.bad_lines.append(reader.line_num)
                continue
            rows += 1
            ident = row[i_id].strip().upper()
            if ident not in by:
                if len(ident) != 10 or ident[1:] not in by:
                    continue
            fin = structure_finess(row[i_idt], ident)
            if fin is None or fin not in by:
                continue
            box = by[fin]
            address = row[i_addr].strip().lower()
            if not address:
                continue
            stamped = STAMP in row[i_srv].upper()
            org = row[i_type].strip().upper() == "ORG"
            if org and stamped:
                box.add(box.stamped, address)
            elif org:
                box.add(box.unstamped_org, address)
            elif stamped:
                box.add(box.stamped_personal, address)
        result.rows = rows
    return result


@dataclass
class Verdict:
    finess: str
    name: str
    outcome: str  # "geographique" | "juridique" | "aucune" | "ambigue"
    mailbox: str | None
    explanation: str  # French, for IT
    site_mailboxes: list[str]
    ej_mailboxes: list[str]
    hints: list[str]

    def as_json(self) -> dict[str, object]:
        return {"finess": self.finess, "name": self.name, "outcome": self.outcome, "mailbox": self.mailbox,
                "explanation": self.explanation, "site_mailboxes": self.site_mailboxes,
                "ej_mailboxes": self.ej_mailboxes, "hints": self.hints}


def _hints(box: Mailboxes, what: str) -> list[str]:
    out = [f"BAL organisationnelle du {what} sans la mention {STAMP} dans « Service de rattachement » : {a}"
           for a in box.unstamped_org]
    out += [f"BAL personnelle du {what} estampillée {STAMP} (SI-DEP n'écrit qu'aux BAL organisationnelles) : {a}"
            for a in box.stamped_personal]
    return out


def decide(finess: str, name: str, ej: str, result: ScanResult) -> Verdict:
    """The guide's rule for one site (step 4)."""
    geo = result.by_finess.get(finess, Mailboxes())
    jur = result.by_finess.get(ej, Mailboxes())
    common = dict(finess=finess, name=name, site_mailboxes=list(geo.stamped), ej_mailboxes=list(jur.stamped))
    if len(geo.stamped) == 1:
        return Verdict(outcome="geographique", mailbox=geo.stamped[0], hints=[], **common,
                       explanation=f"BAL du site (FINESS géographique {finess}) : {geo.stamped[0]}")
    if len(geo.stamped) > 1:
        return Verdict(outcome="ambigue", mailbox=None, hints=[], **common, explanation=(
            f"aucun envoi : {len(geo.stamped)} BAL organisationnelles estampillées {STAMP} pour le FINESS "
            f"géographique {finess} ({', '.join(geo.stamped)}) ; il en faut une seule "
            "(SI-DEP ne se replie pas sur la BAL du FINESS juridique dans ce cas)"))
    hints = _hints(geo, "site")
    if len(jur.stamped) == 1:
        return Verdict(outcome="juridique", mailbox=jur.stamped[0], hints=hints, **common, explanation=(
            f"BAL mutualisée du laboratoire (FINESS juridique {ej}) : {jur.stamped[0]} "
            f"(aucune BAL estampillée {STAMP} pour le site)"))
    hints += _hints(jur, "FINESS juridique")
    if len(jur.stamped) > 1:
        return Verdict(outcome="ambigue", mailbox=None, hints=hints, **common, explanation=(
            f"aucun envoi : aucune BAL estampillée {STAMP} pour le site, et {len(jur.stamped)} pour le FINESS "
            f"juridique {ej} ({', '.join(jur.stamped)}) ; il en faut une seule"))
    return Verdict(outcome="aucune", mailbox=None, hints=hints, **common, explanation=(
        f"aucun envoi : aucune BAL organisationnelle estampillée {STAMP} ni pour le site ({finess}) "
        f"ni pour le FINESS juridique ({ej})"))
