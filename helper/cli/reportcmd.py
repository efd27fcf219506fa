"""``sidep-helper report --date D [--site F] [--csv | --json]``: the day per site (see ``helper/index/report.py``)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from typing import Any

from helper.config import Settings
from helper.index import report
from helper.index.schema import DB_NAME
from helper.index.store import Store

HEADERS_FR = {"received": "reçus", "dispatched": "répartis", "printed": "imprimés", "handed_over": "remis",
              "waiting": "en attente", "oldest_waiting_days": "plus ancienne attente (jours)",
              "superseded": "remplacés", "unassigned": "à affecter"}


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="bilan d'une journée par site (reçus, répartis, imprimés, remis, en attente…)")
    p.add_argument("--date", metavar="AAAA-MM-JJ", help="jour du bilan (par défaut : aujourd'hui)")
    p.add_argument("--site", metavar="FINESS", help="un seul site (FINESS géographique)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="sortie CSV (séparateur « ; », pour un tableur)")
    out.add_argument("--json", action="store_true", help="sortie JSON")


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    try:
        day = dt.date.fromisoformat(args.date) if args.date else dt.date.today()
    except ValueError:
        print(f"Erreur : date invalide « {args.date} » (format AAAA-MM-JJ)", file=sys.stderr)
        return 2
    site = args.site.strip().upper() if args.site else None
    if not (settings.data_dir / DB_NAME).exists():
        rows: dict[str, dict[str, Any]] = {}
    else:
        store = Store(settings.data_dir, readonly=True)
        try:
            rows = report.daily(store, day, site)
        finally:
            store.close()
    if args.json:
        json.dump({"date": day.isoformat(), "sites": [{"finess": f, "name": settings.sites.get(f, ""), **v}
                                                      for f, v in rows.items()]}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if args.csv:
        writer = csv.writer(sys.stdout, delimiter=";", lineterminator="\r\n")
        writer.writerow(["date", "FINESS", "site", *HEADERS_FR.values()])
        for finess, values in rows.items():
            writer.writerow([day.isoformat(), finess, settings.sites.get(finess, ""),
                             *(values[k] for k in HEADERS_FR)])
        return 0
    print(f"Bilan du {day:%d/%m/%Y}" + (f" — site {site}" if site else ""))
    if not rows:
        print("Aucun certificat.")
    for finess, v in rows.items():
        label = f"{finess or 'FINESS absent'} {settings.sites.get(finess, '')}".strip()
        wait = f", en attente {v['waiting']}" + (f" (la plus ancienne depuis {v['oldest_waiting_days']} j)"
                                                 if v["waiting"] else "")
        print(f"- {label} : reçus {v['received']}, répartis {v['dispatched']}, imprimés {v['printed']}, "
              f"remis {v['handed_over']}{wait}, remplacés {v['superseded']}, à affecter {v['unassigned']}")
    return 0
