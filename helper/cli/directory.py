"""``sidep-helper check-annuaire`` and ``sidep-helper sites import|list``: the group's sites and their mailbox.

``check-annuaire`` answers IT's question before SI-DEP writes: for each site, which MSSanté mailbox will
receive its certificates (see ``helper/parse/annuaire.py`` for the rule). ``sites import`` fills the site
directory (``sites.toml`` beside the configuration file) from the public FINESS extraction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from helper.cli.output import emit
from helper.config import Settings, sites_file
from helper.parse import annuaire, sitedir

OUTCOME_FR = {"geographique": "BAL du site", "juridique": "BAL mutualisée (FINESS juridique)",
              "aucune": "aucune BAL", "ambigue": "ambiguë"}


def register(sub: Any) -> None:
    p = sub.add_parser("check-annuaire",
                       help="vérifier dans l'annuaire MSSanté quelle BAL SI-DEP choisira pour chaque site")
    p.add_argument("file", metavar="FICHIER", help="extraction de l'annuaire MSSanté (Extraction_Correspondance_MSSante)")
    p.add_argument("--finess-juridique", required=True, metavar="EJ", help="FINESS juridique du laboratoire")
    p.add_argument("--sites", metavar="FICHIER",
                   help="sites à vérifier : extraction FINESS ou liste (un FINESS par ligne) ; "
                        "par défaut : l'annuaire des sites configuré")
    p.add_argument("--json", action="store_true", help="sortie JSON")

    p = sub.add_parser("sites", help="annuaire des sites du laboratoire (FINESS géographiques)")
    sites_sub = p.add_subparsers(dest="sites_command", required=True, metavar="ACTION")
    i = sites_sub.add_parser("import", help="importer les sites d'un FINESS juridique depuis l'extraction FINESS")
    i.add_argument("file", metavar="FICHIER", help="extraction FINESS (etalab-cs1100507-stock-….csv)")
    i.add_argument("--finess-juridique", required=True, metavar="EJ", help="FINESS juridique du laboratoire")
    i.add_argument("--json", action="store_true", help="sortie JSON")
    lst = sites_sub.add_parser("list", help="afficher l'annuaire des sites")
    lst.add_argument("--json", action="store_true", help="sortie JSON")



def _valid_ej(text: str) -> str | None:
    ej = text.strip().upper()
    return ej if len(ej) == 9 and ej.isalnum() else None


def _sites_to_check(args: argparse.Namespace, settings: Settings, ej: str) -> dict[str, sitedir.Site]:
    if not args.sites:
        return dict(settings.site_directory)
    path = Path(args.sites).expanduser()
    if sitedir.is_finess_extraction(path):
        read = sitedir.read_finess(path, ej)
        for number, reason in read.bad_lines[:annuaire.MAX_BAD_LINES]:
            print(f"Avertissement : {path}, ligne {number} ignorée : {reason}", file=sys.stderr)
        return read.sites
    return sitedir.read_plain_list(path)


def cmd_check_annuaire(args: argparse.Namespace, settings: Settings) -> int:
    ej = _valid_ej(args.finess_juridique)
    if ej is None:
        print(f"Erreur : « {args.finess_juridique} » n'est pas un FINESS juridique (9 caractères)", file=sys.stderr)
        return 2
    try:
        sites = _sites_to_check(args, settings, ej)
        result = annuaire.scan(Path(args.file).expanduser(), [*sites, ej])
    except (sitedir.SiteError, annuaire.AnnuaireError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 2
    verdicts = [annuaire.decide(f, sites[f].name, ej, result) for f in sorted(sites)]
    ej_box = result.by_finess[ej].stamped
    if args.json:
        emit({"finess_juridique": ej, "ej_mailboxes": ej_box, "rows": result.rows,
               "malformed_lines": result.bad_count, "malformed_line_numbers": result.bad_lines,
               "sites": [v.as_json() for v in verdicts]})
        return 0 if all(v.mailbox for v in verdicts) else 1
    if result.bad_count:
        shown = ", ".join(map(str, result.bad_lines))
        print(f"Avertissement : {result.bad_count} ligne(s) mal formée(s) ignorée(s) dans l'annuaire "
              f"(lignes {shown}{' …' if result.bad_count > len(result.bad_lines) else ''})", file=sys.stderr)
    print(f"Annuaire MSSanté : {result.rows} lignes lues. FINESS juridique {ej} : "
          + (", ".join(ej_box) if ej_box else f"aucune BAL estampillée {annuaire.STAMP}"))
    if not verdicts:
        print("Aucun site à vérifier : indiquez --sites FICHIER ou importez l'annuaire des sites "
              "(sidep-helper sites import).")
        return 1
    for v in verdicts:
        label = f"{v.finess} {v.name}".strip()
        print(f"- {label} : {OUTCOME_FR[v.outcome]} — {v.explanation}")
        for hint in v.hints:
            print(f"    remarque : {hint}")
    missing = sum(1 for v in verdicts if not v.mailbox)
    print(f"{len(verdicts)} site(s) : {len(verdicts) - missing} avec une BAL, {missing} sans BAL ou ambigu(s).")
    return 0 if missing == 0 else 1


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def cmd_sites(args: argparse.Namespace, settings: Settings) -> int:
    if args.sites_command == "list":
        if args.json:
            emit({"file": str(sites_file(settings)), "sites": [
                {"finess": s.finess, "name": s.name, "folder": s.folder, "printer": s.printer}
                for _, s in sorted(settings.site_directory.items())]})
            return 0
        print(f"Annuaire des sites : {sites_file(settings)} (+ table [sites] de la configuration)")
        for _, s in sorted(settings.site_directory.items()):
            extra = "".join([f" — dossier : {s.folder}" if s.folder else "",
                             f" — imprimante : {s.printer}" if s.printer else ""])
            print(f"- {s.finess} {s.name}{extra}")
        print(f"{len(settings.site_directory)} site(s).")
        return 0
    ej = _valid_ej(args.finess_juridique)
    if ej is None:
        print(f"Erreur : « {args.finess_juridique} » n'est pas un FINESS juridique (9 caractères)", file=sys.stderr)
        return 2
    path = Path(args.file).expanduser()
    target = sites_file(settings)
    try:
        read = sitedir.read_finess(path, ej)
        current: dict[str, sitedir.Site] = {}
        if target.is_file():
            import tomllib

            current = sitedir.parse_sites(tomllib.loads(target.read_text(encoding="utf-8")).get("sites", {}))
    except (sitedir.SiteError, OSError, ValueError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 2
    for number, reason in read.bad_lines:
        print(f"Avertissement : {path}, ligne {number} ignorée : {reason}", file=sys.stderr)
    if not read.sites:
        print(f"Erreur : aucun établissement du FINESS juridique {ej} dans {path} "
              f"({read.structures} établissements lus) : rien n'est modifié", file=sys.stderr)
        return 1
    merged, counts = sitedir.merge(current, read.sites)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"Annuaire des sites, importé par « sidep-helper sites import » le {now}\n"
              f"depuis {path.name} (FINESS juridique {ej}).\n"
              "Les noms viennent du fichier FINESS et sont remplacés à chaque import ;\n"
              "« folder » (dossier de dépôt) et « printer » (imprimante) sont conservés : complétez-les ici.")
    _write_private(target, sitedir.render_toml(merged, header))
    if args.json:
        emit({"file": str(target), "added": len(counts.added), "changed": len(counts.changed),
               "left": len(counts.left), "absent": counts.absent, "malformed_lines": [n for n, _ in read.bad_lines]})
        return 0
    print(f"Annuaire des sites enregistré dans {target} : {len(counts.added)} site(s) ajouté(s), "
          f"{len(counts.changed)} modifié(s), {len(counts.left)} inchangé(s).")
    if counts.absent:
        print(f"{len(counts.absent)} site(s) de l'annuaire absent(s) du fichier FINESS, conservé(s) : "
              + ", ".join(counts.absent))
    if read.bad_lines:
        print(f"{len(read.bad_lines)} ligne(s) mal formée(s) ignorée(s) (détail ci-dessus).")
    return 0
