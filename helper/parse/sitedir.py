"""The site directory: sites keyed by FINESS géographique, read from TOML and from the public FINESS file.

What happens:

1. ``parse_sites`` reads a ``[sites]`` table in either form: the old ``"750712184" = "Nom"`` and the full
   ``[sites."750712184"]`` table (``name``, ``folder``, ``printer``). Anything else is a French error.
2. ``read_finess`` streams the public FINESS extraction (« FINESS Extraction du Fichier des
   établissements »: ``;``-separated, ISO-8859-1 or UTF-8, no header, a first ``finess;etalab;…`` line,
   ``structureet`` lines of 32 fields read by position, ``geolocalisation`` lines ignored). It keeps the
   establishments of one FINESS juridique; a malformed line is reported with its number and skipped.
3. ``merge`` applies an import to the current directory: names come from FINESS, a site's folder and
   printer (set by IT) are kept; it counts the sites added, changed and left as they were.
4. ``render_toml`` writes the directory as ``sites.toml`` (IT can read and edit it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: Positions in a ``structureet`` line (official record layout, 32 fields).
F_SECTION, F_ET, F_EJ, F_RS, F_RSLONGUE = 0, 1, 2, 3, 4
F_CATEG, F_LIBCATEG = 18, 19
STRUCTURE_FIELDS = 32


@dataclass(frozen=True)
class Site:
    finess: str
    name: str = ""
    folder: str = ""  # where dispatched certificates are copied ("" = none)
    printer: str = ""  # the site's printer ("" = the default printer)


class SiteError(Exception):
    """Invalid site table or unreadable FINESS file (message in French)."""


def _finess_key(key: object) -> str:
    text = str(key).strip().upper()
    if len(text) != 9 or not text.isalnum():
        raise SiteError(f"« {key} » n'est pas un numéro FINESS (9 caractères)")
    return text


def parse_sites(value: Any) -> dict[str, Site]:
    """Step 1: a ``[sites]`` table → sites by FINESS."""
    if not isinstance(value, dict):
        raise SiteError("« sites » doit être une table FINESS = \"nom du site\" ou [sites.\"FINESS\"]")
    out: dict[str, Site] = {}
    for key, entry in value.items():
        finess = _finess_key(key)
        if isinstance(entry, str):
            out[finess] = Site(finess, name=entry)
            continue
        if not isinstance(entry, dict):
            raise SiteError(f"site {finess} : texte (nom) ou table name/folder/printer attendu")
        unknown = sorted(set(entry) - {"name", "folder", "printer"})
        if unknown:
            raise SiteError(f"site {finess} : réglage(s) inconnu(s) : {', '.join(unknown)} "
                            "(attendus : name, folder, printer)")
        if not all(isinstance(v, str) for v in entry.values()):
            raise SiteError(f"site {finess} : name, folder et printer sont des textes entre guillemets")
        out[finess] = Site(finess, name=entry.get("name", ""), folder=entry.get("folder", ""),
                           printer=entry.get("printer", ""))
    return out


@dataclass
class FinessRead:
    sites: dict[str, Site]
    bad_lines: list[tuple[int, str]]  # (line number, reason in French)
    structures: int = 0  # structureet lines read, all EJs


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SiteError(f"impossible de lire {path} : {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, 1):
            text = _decode(raw).rstrip("\r\n")
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text


def read_finess(path: Path, ej: str) -> FinessRead:
    """Step 2: the establishments of FINESS juridique ``ej`` in the public FINESS extraction."""
    ej = _finess_key(ej)
    out = FinessRead(sites={}, bad_lines=[])
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split(";")
        kind = fields[0].strip().lower()
        if number == 1 and kind == "finess":
            continue
        if kind == "geolocalisation":
            continue
        if kind != "structureet":
            out.bad_lines.append((number, f"type de ligne inconnu « {fields[0][:20]} »"))
            continue
        if len(fields) != STRUCTURE_FIELDS:
            out.bad_lines.append((number, f"{len(fields)} champs au lieu de {STRUCTURE_FIELDS}"))
            continue
        et, line_ej = fields[F_ET].strip().upper(), fields[F_EJ].strip().upper()
        if len(et) != 9 or not et.isalnum() or len(line_ej) != 9 or not line_ej.isalnum():
            out.bad_lines.append((number, "numéro FINESS (géographique ou juridique) invalide"))
            continue
        out.structures += 1
        if line_ej != ej:
            continue
        name = fields[F_RSLONGUE].strip() or fields[F_RS].strip()
        out.sites[et] = Site(et, name=name)
    return out


@dataclass
class MergeCounts:
    added: list[str]
    changed: list[str]
    left: list[str]  # already there, unchanged
    absent: list[str]  # in the directory, not in this extraction (kept)


def merge(current: dict[str, Site], imported: dict[str, Site]) -> tuple[dict[str, Site], MergeCounts]:
    """Step 3: names from FINESS; folder and printer kept; sites missing from the file kept and listed."""
    result = dict(current)
    counts = MergeCounts([], [], [], sorted(set(current) - set(imported)))
    for finess, site in sorted(imported.items()):
        old = current.get(finess)
        if old is None:
            result[finess] = site
            counts.added.append(finess)
        elif old.name != site.name:
            result[finess] = replace(old, name=site.name)
            counts.changed.append(finess)
        else:
            counts.left.append(finess)
    return result, counts


def render_toml(sites: dict[str, Site], header: str) -> str:
    """Step 4: ``sites.toml`` (one ``[sites."FINESS"]`` table per site)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for finess in sorted(sites):
        site = sites[finess]
        lines += ["", f'[sites."{finess}"]', f"name = {json.dumps(site.name, ensure_ascii=False)}",
                  f"folder = {json.dumps(site.folder, ensure_ascii=False)}",
                  f"printer = {json.dumps(site.printer, ensure_ascii=False)}"]
    return "\n".join(lines) + "\n"


def read_plain_list(path: Path) -> dict[str, Site]:
    """A plain list of sites: one FINESS per line, optionally followed by ``;`` or spaces and a name."""
    out: dict[str, Site] = {}
    for number, line in _lines(path):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        head, _, name = text.replace(";", " ", 1).partition(" ")
        try:
            finess = _finess_key(head)
        except SiteError as exc:
            raise SiteError(f"{path}, ligne {number} : {exc}") from None
        out[finess] = Site(finess, name=name.strip())
    return out


def is_finess_extraction(path: Path) -> bool:
    for _, line in _lines(path):
        return line.lower().startswith(("finess;", "structureet;"))
    return False
