"""``sidep-helper dispatch run | assign ID FINESS | replay --since D [--site F] | list``: copy certificates to their site's folder.

``run`` does one pass (see ``helper/service/dispatch.py``); ``assign`` routes an « à affecter »
certificate to a site of the directory; ``list`` shows what waits (« à affecter », retries).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from helper.cli.french import positive_int
from helper.cli.output import emit
from helper.config import Settings
from helper.index import dispatchjournal as journal
from helper.index.store import Store
from helper.service import dispatch


def register(sub: Any) -> None:
    p = sub.add_parser("dispatch", help="répartir les certificats dans les dossiers des sites (BAL mutualisée)")
    actions = p.add_subparsers(dest="dispatch_command", required=True, metavar="ACTION")
    r = actions.add_parser("run", help="copier les nouveaux certificats dans le dossier de leur site")
    r.add_argument("--json", action="store_true", help="sortie JSON")
    a = actions.add_parser("assign", help="affecter un certificat « à affecter » à un site")
    a.add_argument("cert_id", type=positive_int, metavar="ID", help="numéro du certificat (voir « dispatch list »)")
    a.add_argument("finess", metavar="FINESS", help="FINESS géographique du site (présent dans l'annuaire des sites)")
    rp = actions.add_parser("replay", help="recopier les certificats reçus depuis une date (fichiers effacés)")
    rp.add_argument("--since", required=True, metavar="AAAA-MM-JJ", help="date de réception à partir de laquelle recopier")
    rp.add_argument("--site", metavar="FINESS", help="un seul site")
    lst = actions.add_parser("list", help="certificats à affecter et copies en attente")
    lst.add_argument("--json", action="store_true", help="sortie JSON")



def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    store = Store(settings.data_dir)
    try:
        journal.ensure(store)
        if args.dispatch_command == "run":
            report = dispatch.run_once(store, settings)
            if args.json:
                emit({"enqueued": report.enqueued, "done": report.done, "unassigned": report.unassigned,
                       "no_folder": report.no_folder, "retry": report.retry})
            else:
                print(f"Copiés : {len(report.done)} ; à affecter : {len(report.unassigned)} ; "
                      f"site sans dossier : {len(report.no_folder)} ; à réessayer : {len(report.retry)}.")
            return 1 if report.retry else 0
        if args.dispatch_command == "replay":
            try:
                since = dt.date.fromisoformat(args.since).isoformat()
            except ValueError:
                print(f"Erreur : date invalide « {args.since} » (format AAAA-MM-JJ)", file=sys.stderr)
                return 2
            site = args.site.strip().upper() if args.site else None
            queued = journal.replay(store, since, site)
            report = dispatch.run_once(store, settings)
            print(f"{queued} certificat(s) repris depuis le {since} : {len(report.done)} présent(s) ou recopié(s) "
                  f"dans le dossier de leur site, {len(report.retry)} à réessayer.")
            return 1 if report.retry else 0
        if args.dispatch_command == "assign":
            finess = args.finess.strip().upper()
            if finess not in settings.site_directory:
                print(f"Erreur : le FINESS {finess} n'est pas dans l'annuaire des sites "
                      "(sidep-helper sites list)", file=sys.stderr)
                return 2
            if not journal.assign(store, args.cert_id, finess):
                print(f"Erreur : certificat {args.cert_id} inconnu de la répartition, ou déjà copié "
                      "(lancez d'abord « sidep-helper dispatch run »)", file=sys.stderr)
                return 2
            print(f"Certificat {args.cert_id} affecté au site {finess} : il sera copié à la prochaine répartition.")
            return 0
        waiting = {"unassigned": journal.rows(store, "unassigned"), "retry": journal.rows(store, "retry"),
                   "print_unknown": journal.print_unknown(store)}
        if args.json:
            emit({k: [{"id": r["cert_id"], "finess": r["finess"], "error": r["last_error"],
                        "next_try": r["next_try"]} for r in v] for k, v in waiting.items()})
            return 0
        print(f"À affecter : {len(waiting['unassigned'])}")
        for r in waiting["unassigned"]:
            print(f"  - certificat {r['cert_id']} : FINESS {r['finess'] or 'absent'} hors de l'annuaire des sites")
        print(f"Copies à réessayer : {len(waiting['retry'])}")
        for r in waiting["retry"]:
            print(f"  - certificat {r['cert_id']} : {r['last_error']} (prochain essai : {r['next_try']})")
        if waiting["print_unknown"]:
            print(f"Impressions à vérifier (arrêt pendant l'envoi, jamais réimprimées d'office) : "
                  f"{len(waiting['print_unknown'])}")
            for r in waiting["print_unknown"]:
                print(f"  - certificat {r['cert_id']} (site {r['finess']})")
        return 0
    finally:
        store.close()


def print_status(summary: dict[str, Any], settings: Settings) -> None:
    """The dispatch lines of ``sidep-helper status``: counts, then each site whose folder cannot be written."""
    d = summary["counts"]
    if not d:
        return
    print(f"Répartition vers les sites : {d.get('done', 0)} copié(s), {d.get('unassigned', 0)} à affecter, "
          f"{d.get('retry', 0)} à réessayer (détail : sidep-helper dispatch list)")
    for row in summary.get("unreachable", []):
        name = settings.sites.get(row["finess"] or "", "")
        when = (row["next_try"] or "").replace("T", " à ")
        print(f"  - dossier du site {row['finess']}{f' ({name})' if name else ''} inaccessible : {row['error']} — "
              f"{row['count']} certificat(s) en attente, prochain essai le {when}")
