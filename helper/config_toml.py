"""Reading a TOML configuration file, with errors IT can act on.

1. ``read_toml`` returns None when the file is missing, its values otherwise;
2. a file that is not valid TOML, not UTF-8 or not readable raises ``ConfigError`` with a French
   message naming the file (and, for a syntax error, the line and column: ``toml_error_fr``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is for IT, in French."""


def read_toml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(toml_error_fr(path, exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Fichier de configuration illisible : {path} (il doit être en UTF-8)") from exc
    except OSError as exc:
        raise ConfigError(f"Fichier de configuration illisible : {path} ({exc.strerror})") from exc


_TOML_MESSAGES = (  # tomllib's English messages (their start) → French
    ("Expected '=' after a key", "signe « = » attendu après le nom du réglage"),
    ("Invalid value", "valeur invalide (texte entre guillemets, nombre, true/false ou liste [ … ])"),
    ("Unclosed array", "liste non refermée (« ] » manquant)"),
    ("Unclosed inline table", "table non refermée (« } » manquant)"),
    ("Unterminated string", "texte non refermé (guillemet manquant)"),
    ("Illegal character", "caractère interdit"),
    ("Cannot overwrite a value", "réglage défini deux fois"),
    ("Cannot declare", "table déclarée deux fois"),
    ("Invalid statement", "ligne incompréhensible"),
    ("Invalid initial character for a key part", "nom de réglage invalide"),
    ("Expected newline or end of document", "fin de ligne attendue après la valeur"),
    ("Invalid date or datetime", "date invalide"),
)


def toml_error_fr(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """A TOML syntax error for IT, in French, with the file and the line."""
    import re

    text = str(exc)
    where = re.search(r"\(at line (\d+), column (\d+)\)", text)
    what = next((fr for en, fr in _TOML_MESSAGES if text.startswith(en)), "syntaxe TOML invalide")
    if where:
        return f"Fichier de configuration {path}, ligne {where[1]}, colonne {where[2]} : {what}."
    return f"Fichier de configuration {path}, à la fin du fichier : {what}."
