"""Command line: ``sidep-helper COMMANDE`` (``python -m helper``).

1. the parser is built from each command module's ``register`` (``indexcmd``: ingest, search, status;
   ``servicecmd``: serve, config, token, purge, audit; ``directory``: check-annuaire, sites;
   ``dispatchcmd``: dispatch; ``reportcmd``: report), in that order, as ``--help`` lists them;
2. ``main`` sets umask 077, parses, loads the settings (a configuration error: French message, exit 2);
3. it runs the command's handler; Ctrl-C says nothing is lost (exit 130), a closed pipe exits 0.
Messages for people are in French; ``--json`` output is the machine contract.
"""

from __future__ import annotations

import argparse
import os
import sys

from helper import __version__
from helper.cli import directory, dispatchcmd, indexcmd, reportcmd, servicecmd
from helper.cli.french import FrenchParser, install
from helper.config import ConfigError, load


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

    indexcmd.register(sub)
    servicecmd.register(sub)
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
        "ingest": indexcmd.cmd_ingest, "search": indexcmd.cmd_search, "status": indexcmd.cmd_status,
        "serve": servicecmd.cmd_serve, "config": servicecmd.cmd_config, "token": servicecmd.cmd_token,
        "purge": servicecmd.cmd_purge, "audit": servicecmd.cmd_audit,
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
