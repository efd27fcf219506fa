"""``sidep-helper serve | config | token | purge | audit``: the service and its upkeep.

1. ``serve`` starts the local service (port from the configuration unless ``--port``, refused when the
   machine file enforces another; ``--demo`` uses fictitious certificates in their own data directory);
2. ``config`` shows the files read and each setting with the file it comes from;
3. ``token`` prints (or ``--rotate``s, recorded in the audit log) the token to paste in the extension;
4. ``purge`` deletes the certificates older than the retention period;
5. ``audit export`` writes the audit log as CSV (file created 0600).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from helper.cli.output import emit
from helper.config import Settings


def register(sub: Any) -> None:
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
        emit(values)
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
        emit({"purged": len(ids), "ids": ids, "retention_days": settings.retention_days})
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
