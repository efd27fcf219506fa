"""Command line: ``sidep-helper ingest | search | status``.

Messages for people are in French; ``--json`` output is the machine contract.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from helper import __version__
from helper.cli import directory, dispatchcmd, reportcmd
from helper.cli.french import FrenchParser, install, positive_int
from helper.config import ConfigError, Settings, load


def _parser() -> argparse.ArgumentParser:
    install()
    parser = FrenchParser(
        prog="sidep-helper",
        description="Retrouver et imprimer les certificats de test SI-DEP reçus par messagerie MSSanté.",
    )
    parser.add_argument("--version", action="version", version=f"sidep-helper {__version__}",
                        help="afficher le numéro de version et quitter")
    parser.add_argument("--data-dir", help="dossier des données (par défaut : dossier utilisateur de l'application)")
    parser.add_argument("--config", help="fichier de configuration TOML")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMANDE")

    p = sub.add_parser("ingest", help="indexer des fichiers de messagerie (.eml, mbox, Maildir, PDF)")
    p.add_argument("paths", nargs="*", metavar="CHEMIN",
                   help="fichiers ou dossiers (par défaut : le dossier Téléchargements)")
    p.add_argument("--json", action="store_true", help="sortie JSON")
    p.add_argument("--workers", type=positive_int, default=None, help="nombre de processus d'analyse (par défaut : un par cœur)")
    p.add_argument("--quiet", "-q", action="store_true", help="sans barre de progression")

    p = sub.add_parser("search", help="rechercher un certificat (nom, prénom, dossier, date de naissance, INS)")
    p.add_argument("query", nargs="*", metavar="RECHERCHE")
    p.add_argument("--site", help="restreindre à un site (FINESS géographique)")
    p.add_argument("--limit", type=positive_int, default=20, help="nombre maximal de résultats (défaut 20)")
    p.add_argument("--json", action="store_true", help="sortie JSON")

    p = sub.add_parser("status", help="état de l'index et messages en quarantaine")
    p.add_argument("--json", action="store_true", help="sortie JSON")

    p = sub.add_parser("serve", help="lancer le service local (API pour les extensions, surveillance des dossiers)")
    p.add_argument("--port", type=int, help="port d'écoute (par défaut : celui de la configuration, 51789)")
    p.add_argument("--watch", action="append", default=[], metavar="DOSSIER", help="dossier supplémentaire à surveiller")
    p.add_argument("--no-watch", action="store_true", help="ne surveiller aucun dossier")
    p.add_argument("--demo", action="store_true",
                   help="démonstration : certificats fictifs, dans un dossier de données séparé (aucune donnée réelle)")

    p = sub.add_parser("config", help="afficher le fichier de configuration et les réglages en vigueur")
    p.add_argument("--json", action="store_true", help="sortie JSON")

    p = sub.add_parser("token", help="afficher le jeton à coller dans l'extension")
    p.add_argument("--rotate", action="store_true", help="remplacer le jeton (l'ancien cesse de fonctionner)")
    p.add_argument("--demo", action="store_true", help="le jeton du mode démonstration (« serve --demo »)")

    p = sub.add_parser("purge", help="supprimer les certificats plus anciens que la durée de conservation")
    p.add_argument("--json", action="store_true", help="sortie JSON")

    p = sub.add_parser("audit", help="journal de traçabilité (pour le DPO)")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    e = audit_sub.add_parser("export", help="exporter le journal au format CSV")
    e.add_argument("--since", help="date de début (AAAA-MM-JJ)")
    e.add_argument("--output", "-o", help="fichier de sortie (par défaut : la sortie standard)")
    directory.register(sub)
    dispatchcmd.register(sub)
    reportcmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if os.name == "posix":
        os.umask(0o077)
    args = _parser().parse_args(argv)
    try:
        settings = load(args.data_dir, args.config)
    except ConfigError as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 2
    handler = {
        "ingest": cmd_ingest, "search": cmd_search, "status": cmd_status, "serve": cmd_serve,
        "config": cmd_config, "token": cmd_token, "purge": cmd_purge, "audit": cmd_audit,
        "check-annuaire": directory.cmd_check_annuaire, "sites": directory.cmd_sites,
        "dispatch": dispatchcmd.cmd_dispatch, "report": reportcmd.cmd_report,
    }[args.command]
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        print("\nInterrompu. Relancez la même commande : rien n'est perdu.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _emit(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from helper.index.ingest import Ingester
    from helper.index.store import Store

    if args.paths:
        paths = [Path(p).expanduser() for p in args.paths]
    else:
        import platformdirs

        paths = [Path(platformdirs.user_downloads_dir())]
        if not paths[0].is_dir():
            print(f"Dossier Téléchargements introuvable ({paths[0]}) : rien à indexer.", file=sys.stderr)
            paths = []
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"Erreur : chemin introuvable : {', '.join(missing)}", file=sys.stderr)
        return 2
    store = Store(settings.data_dir)
    try:
        ingester = Ingester(store, settings.trust(), workers=args.workers,
                            retention_days=settings.retention_days)
        report = ingester.run(paths, progress=not (args.quiet or args.json))
    finally:
        store.close()
    if args.json:
        out: dict[str, Any] = dict(report.counts())
        if report.expired:
            out["expired_files"] = report.expired_files
        _emit(out)
    else:
        print(
            f"{report.new} nouveau(x) certificat(s), {report.duplicates} déjà connu(s), "
            f"{report.ignored} autre(s) message(s) ignoré(s), {report.quarantined} en quarantaine"
            + (f", {report.expired} expiré(s) non conservé(s)" if report.expired else "")
            + f" — {report.files} fichier(s) vu(s) dont {report.unchanged} inchangé(s), en {report.elapsed:.1f} s."
        )
        if report.expired:
            print(
                f"Les certificats expirés ont plus de {settings.retention_days} jours (durée de conservation) : "
                "ils ne sont pas indexés ; retrouvez-les dans la boîte aux lettres MSSanté si besoin."
            )
        if report.quarantined:
            print("Voir « sidep-helper status » pour la liste des messages en quarantaine.")
    return 0


def _open_readonly(settings: Settings) -> Any:
    from helper.index.store import SCHEMA_VERSION, Store

    try:
        store = Store(settings.data_dir, readonly=True)
    except (FileNotFoundError, sqlite3.DatabaseError):
        return None
    try:
        ready = store.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'certificates'").fetchone()
    except sqlite3.DatabaseError:
        ready = None
    if not ready:  # a first ingest stopped before it created the tables: an empty index
        store.close()
        return None
    if (store.meta("schema_version") or "0") != str(SCHEMA_VERSION):
        store.close()  # written by an earlier version: bring it up to date once, then read
        Store(settings.data_dir).close()
        store = Store(settings.data_dir, readonly=True)
    return store


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from helper.index.search import Searcher

    store = _open_readonly(settings)
    if store is None:
        result: dict[str, Any] = {"results": [], "total": 0, "total_exact": True}
    else:
        try:
            result = Searcher(store.db).search(" ".join(args.query), site=args.site, limit=args.limit)
        finally:
            store.close()
    if args.json:
        _emit(result)
        return 0
    if not result["results"]:
        if result.get("purged"):
            days = result["purged"]["retention_days"]
            print(
                f"Ce certificat a été supprimé automatiquement après {days} jours de conservation. "
                "Retrouvez-le dans la boîte aux lettres MSSanté (messagerie) du laboratoire."
            )
            return 1
        print("Aucun certificat trouvé. Vérifiez l'orthographe, ou cherchez par date de naissance (jj/mm/aaaa).")
        return 1
    for cert in result["results"]:
        print(format_line(cert))
    shown = len(result["results"])
    if result["total"] > shown:
        more = result["total"] - shown
        count = f"{more} autre(s)" if result["total_exact"] else f"plus de {more} autres"
        print(f"… {count} résultat(s) : précisez la recherche (prénom, date de naissance) ou utilisez --limit.")
    return 0


def _fr_date(iso: str | None, with_time: bool = False) -> str:
    if not iso:
        return "?"
    date = f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}"
    return f"{date} {iso[11:16]}" if with_time and len(iso) >= 16 else date


def format_line(cert: dict[str, Any]) -> str:
    state = " [remplacé par un certificat plus récent]" if cert["superseded"] else ""
    return (
        f"{cert['last_name']} {cert['first_name']} — né(e) le {_fr_date(cert['birth_date'])}, "
        f"sexe {cert['sex'] or '?'} — site {cert['site_finess'] or '?'}, dossier {cert['dossier'] or '?'} — "
        f"prélevé le {_fr_date(cert['sampled_at'], True)} — {cert['result'] or '?'}{state}"
        f"{verification_note(cert.get('verification'))}  (n° {cert['id']})"
    )


def verification_note(verification: dict[str, Any] | None) -> str:
    """The barcode check in one phrase (empty when it was not made)."""
    if not verification:
        return ""
    status = verification.get("status")
    if status == "verified":
        return " — code-barres : vérifié"
    if status == "mismatch":
        fields = ", ".join(d.get("label", d.get("field", "?")) for d in verification.get("differences", []))
        return f" — ATTENTION code-barres : ne correspond pas ({fields})"
    if status == "invalid_signature":
        return " — ATTENTION code-barres : signature invalide"
    return " — code-barres : signature non vérifiable"


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from helper.index import dispatchjournal, imapstate

    store = _open_readonly(settings)
    if store is None:
        status: dict[str, Any] = {
            "data_dir": str(settings.data_dir),
            "certificates": 0, "superseded": 0, "pdf_only": 0, "files": 0, "quarantined": 0,
            "expired": 0, "quarantine_bytes": 0, "quarantine_evicted": 0,
            "last_ingest": None, "quarantine": [], "imap": [], "dispatch": {"counts": {}, "unassigned": [], "unreachable": []},
        }
    else:
        try:
            status = {"data_dir": str(settings.data_dir), **store.counts(), "last_ingest": store.meta("last_ingest"),
                      "quarantine": store.quarantined(), "imap": imapstate.statuses(store),
                      "dispatch": dispatchjournal.summary(store)}
        finally:
            store.close()
    status["quarantine_max_mb"] = settings.quarantine_max_mb
    status["retention_days"] = settings.retention_days
    if args.json:
        _emit(status)
        return 0
    print(f"Données : {status['data_dir']}")
    print(
        f"Certificats indexés : {status['certificates']} (dont {status['superseded']} remplacés, "
        f"{status['pdf_only']} issus d'un PDF seul)"
    )
    print(f"Fichiers suivis : {status['files']}")
    print(f"Dernière indexation : {status['last_ingest'] or 'jamais'}")
    print(f"Conservation : {status['retention_days']} jours après l'intégration dans SI-DEP ; "
          f"certificats déjà expirés à leur arrivée (non conservés) : {status['expired']}")
    print(f"En quarantaine : {status['quarantined']} ({_fr_mb(status['quarantine_bytes'])} Mo de messages conservés "
          f"sur {status['quarantine_max_mb']} Mo au plus ; {status['quarantine_evicted']} supprimé(s) "
          "pour respecter ce plafond, les plus anciens d'abord)")
    for q in status["quarantine"]:
        where = q["path"] + (f" ({q['item']})" if q["item"] else "")
        print(f"  - {where} : {q['reason']} {q['detail']}".rstrip())
    if any(q["reason"] == "untrusted_forward" for q in status["quarantine"]):
        print("Certificats transférés refusés : si l'expéditeur nommé est une boîte du laboratoire, ajoutez-le à "
              "« trusted_forwarders » dans le fichier de configuration, puis relancez l'indexation.")
    _print_imap(status["imap"])
    dispatchcmd.print_status(status["dispatch"], settings)
    return 0


def _fr_mb(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):.1f}".replace(".", ",")


def _print_imap(rows: list[dict[str, Any]]) -> None:
    """IMAP sources (issue 10): state, last success, last error, per folder."""
    for row in rows:
        print(f"IMAP {row['source']} / {row['folder']} : {row['state']} — dernière relève réussie : "
              f"{_fr_date(row['last_success'], True) if row['last_success'] else 'jamais'}")
        if row["last_error"]:
            print(f"  dernière erreur ({_fr_date(row['last_error_at'], True)}) : {row['last_error']}")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from helper.service.serve import serve

    if args.port is not None:
        if not 1024 <= args.port <= 65535:
            print("Erreur : le port doit être compris entre 1024 et 65535.", file=sys.stderr)
            return 2
        if settings.enforced("port") and args.port != settings.port:
            print(f"Erreur : le port {settings.port} est imposé par la configuration du poste "
                  f"({settings.machine_config_file}) ; --port ne peut pas le changer.", file=sys.stderr)
            return 2
        settings.port = args.port
    folders = [Path(p).expanduser() for p in args.watch]
    if args.demo:
        from helper.service.demo import DEMO_SENDER, demo_data_dir

        # Nothing real in, nothing fictitious out: own folder, own sender, no folder watched.
        settings.demo = True
        settings.data_dir = demo_data_dir(settings.data_dir)
        settings.trusted_senders = frozenset({DEMO_SENDER})
        return serve(settings, watch_folders=[], watch=False)
    return serve(settings, watch_folders=folders, watch=not args.no_watch)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.in_force()
    values["config_exists"] = settings.config_file.is_file()
    machine = settings.machine_config_file
    values["machine_config_file"] = str(machine) if machine else None
    values["machine_config_exists"] = bool(machine and machine.is_file())
    values["sources"] = {key: settings.source_of(key) for key in values if key in _SETTING_KEYS}
    values["warnings"] = list(settings.warnings)
    if args.json:
        _emit(values)
        return 0
    state = "" if values["config_exists"] else " (absent : valeurs par défaut ; créé au premier « serve »)"
    print(f"Fichier de configuration : {settings.config_file}{state}")
    if machine:
        state = "" if values["machine_config_exists"] else " (absent)"
        print(f"Configuration du poste (imposée) : {machine}{state}")
    print(f"Dossier des données : {settings.data_dir}")
    for key in _SETTING_KEYS:
        origin = settings.source_of(key)
        where = "imposé par " + origin if settings.enforced(key) else origin
        print(f"  {key} = {json.dumps(values[key], ensure_ascii=False)}    ({where})")
    for warning in settings.warnings:
        print(f"Attention : {warning}")
    return 0


_SETTING_KEYS = ("port", "watch", "watch_downloads", "watch_thunderbird", "trusted_senders", "printer",
                 "retention_days", "allowed_origins", "allow_any_extension_origin", "sites")


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from helper.service.token import read_or_create, rotate

    if args.demo:
        from helper.service.demo import demo_data_dir

        settings.data_dir = demo_data_dir(settings.data_dir)
    if args.rotate:
        token = rotate(settings.data_dir)
        from helper.service.audit import Audit

        audit = Audit(settings.data_dir)
        audit.record("token_rotated", origin="cli")
        audit.close()
        print("Nouveau jeton (l'ancien ne fonctionne plus) :", file=sys.stderr)
    else:
        token = read_or_create(settings.data_dir)
    print(token)
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from helper.index.store import Store
    from helper.service.api import purge_due
    from helper.service.audit import Audit

    store = Store(settings.data_dir)
    audit = Audit(settings.data_dir)
    try:
        ids = purge_due(store, audit, settings.retention_days, origin="cli")
    finally:
        store.close()
        audit.close()
    if args.json:
        _emit({"purged": len(ids), "ids": ids, "retention_days": settings.retention_days})
    else:
        print(f"{len(ids)} certificat(s) supprimé(s) (conservation : {settings.retention_days} jours).")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from helper.service.audit import Audit

    since = args.since
    if since:
        try:
            since = dt.date.fromisoformat(since).isoformat()
        except ValueError:
            print("Erreur : --since attend une date AAAA-MM-JJ.", file=sys.stderr)
            return 2
    audit = Audit(settings.data_dir)
    try:
        text = audit.export_csv(since)
    finally:
        audit.close()
    if args.output:
        out = Path(args.output)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        print(f"Journal exporté dans {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
