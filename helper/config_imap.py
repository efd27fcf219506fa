"""The IMAP mailboxes of the configuration: the ``[[sources.imap]]`` blocks.

1. ``imap_sources`` takes the ``sources`` table of one file and checks each block: known keys only,
   a host, ``tls`` starttls or implicit (port 143 or 993 by default), folders, ``poll_seconds``;
2. each block names a client certificate (``cert_file``/``key_file``) or a user and a password file;
   names are unique; file paths are kept as paths, never read here (the permission check of the key
   and password files happens at login, ``helper/sources/imaplogin.py``);
3. a block that does not fit raises ``ConfigError`` in French with the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helper.config_toml import ConfigError

IMAP_TLS = ("starttls", "implicit")


@dataclass
class ImapSource:
    """One IMAP mailbox to read (``helper.sources.imap.Account``)."""

    name: str
    host: str
    port: int
    tls: str = "starttls"
    ca_file: Path | None = None
    folders: list[str] = field(default_factory=lambda: ["INBOX"])
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str = ""
    password_file: Path | None = None
    poll_seconds: int = 60
    move_processed_to: str = ""

    def in_force(self) -> dict[str, Any]:
        """As ``config`` shows it: file paths, never a secret."""
        return {
            "name": self.name, "host": self.host, "port": self.port, "tls": self.tls,
            "ca_file": str(self.ca_file or ""), "folders": list(self.folders),
            "cert_file": str(self.cert_file or ""), "key_file": str(self.key_file or ""), "user": self.user,
            "password_file": str(self.password_file or ""), "poll_seconds": self.poll_seconds,
            "move_processed_to": self.move_processed_to,
        }


def imap_sources(value: Any, where: Path) -> list[ImapSource]:
    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{where} : [[sources.imap]] « {key} » doit être {expected}")

    if not isinstance(value, dict) or set(value) - {"imap"}:
        raise ConfigError(f"{where} : « sources » n'accepte que des blocs [[sources.imap]]")
    entries = value.get("imap", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where} : écrivez chaque boîte IMAP dans un bloc [[sources.imap]]")
    allowed = set(ImapSource.__dataclass_fields__)
    out: list[ImapSource] = []
    for i, entry in enumerate(entries, 1):
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where} : [[sources.imap]] n° {i} : réglage(s) inconnu(s) : {', '.join(unknown)}")
        host = entry.get("host")
        if not isinstance(host, str) or not host.strip():
            raise fail("host", "le nom du serveur IMAP")
        tls = entry.get("tls", "starttls")
        if tls not in IMAP_TLS:
            raise fail("tls", "« starttls » ou « implicit »")
        port = entry.get("port", 993 if tls == "implicit" else 143)
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise fail("port", "un numéro de port")
        folders = entry.get("folders", ["INBOX"])
        if not isinstance(folders, list) or not folders or not all(isinstance(f, str) and f for f in folders):
            raise fail("folders", "une liste de dossiers, par exemple [\"INBOX\"]")
        poll = entry.get("poll_seconds", 60)
        if not isinstance(poll, int) or isinstance(poll, bool) or not 5 <= poll <= 1500:
            raise fail("poll_seconds", "un nombre de secondes entre 5 et 1500")
        strings = {k: entry.get(k, "") for k in ("name", "user", "move_processed_to", "ca_file", "cert_file",
                                                  "key_file", "password_file")}
        for key, text in strings.items():
            if not isinstance(text, str):
                raise fail(key, "un texte")

        def path(key: str, strings: dict[str, str] = strings) -> Path | None:
            return Path(strings[key]).expanduser() if strings[key].strip() else None

        src = ImapSource(
            name=strings["name"].strip() or f"{host.strip()}:{port}", host=host.strip(), port=port, tls=tls,
            ca_file=path("ca_file"), folders=list(dict.fromkeys(folders)), cert_file=path("cert_file"),
            key_file=path("key_file"), user=strings["user"].strip(), password_file=path("password_file"),
            poll_seconds=poll, move_processed_to=strings["move_processed_to"].strip(),
        )
        if src.cert_file is None and not (src.user and src.password_file):
            raise ConfigError(f"{where} : [[sources.imap]] « {src.name} » : indiquez « cert_file » (et « key_file ») "
                              "ou « user » et « password_file »")
        if any(s.name == src.name for s in out):
            raise fail("name", f"unique (« {src.name} » apparaît deux fois)")
        out.append(src)
    return out
