"""``sidep-helper ingest | search | status``: the commands that fill and read the index.

1. ``ingest`` indexes the given files or folders (default: the Downloads folder) and prints the counts;
2. ``search`` opens the index read-only (an earlier schema is brought up to date once) and prints one
   line per certificate, or why nothing was found (not there, or purged after the retention period);
3. ``status`` prints the counts, the quarantine with reasons, the IMAP sources and the dispatch state.
``--json`` output is the machine contract; the rest is French for the secretary.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from helper.cli import dispatchcmd
from helper.cli.french import positive_int
from helper.cli.output import emit
from helper.config import Settings


def register(sub: Any) -> None:
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
        emit(out)
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
        emit(result)
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
        emit(status)
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
