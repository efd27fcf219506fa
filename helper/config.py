"""Where the helper keeps its files, and the settings in force.

Data directory: ``--data-dir``, else ``$SIDEP_HELPER_HOME``, else the platform's user data
directory (platformdirs). Configuration: ``--config``, else ``config.toml`` in
``$SIDEP_HELPER_HOME`` when set, else in the platform's user config directory. The service
writes the file with commented defaults at first run, so IT can see every setting in one place.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helper.parse import sidep

APP_NAME = "sidep-helper"
ENV_HOME = "SIDEP_HELPER_HOME"
DEFAULT_PORT = 51789

DEFAULT_CONFIG = f"""\
# Configuration de sidep-helper.
# Ce fichier est créé au premier lancement ; les valeurs en commentaire sont les valeurs par défaut.
# Après modification, redémarrez le service (ou la commande en cours).

# Port d'écoute de l'API locale (127.0.0.1 et ::1 uniquement).
# port = {DEFAULT_PORT}

# Dossiers surveillés en plus du dossier Téléchargements et des dossiers locaux de Thunderbird.
# watch = ["D:/Messagerie/Certificats"]

# Surveiller le dossier Téléchargements de l'utilisateur (fichiers .eml et PDF enregistrés depuis le webmail).
# watch_downloads = true

# Surveiller les dossiers de courrier des profils Thunderbird trouvés sur le poste (lecture seule).
# watch_thunderbird = true

# Expéditeurs dont les messages deviennent des certificats.
# trusted_senders = ["noreply.sidep@enovacom.easycrypt.fr"]

# Imprimante : nom de la file d'impression ; vide = imprimante par défaut du système.
# printer = ""

# Durée de conservation des certificats, en jours après leur intégration dans SI-DEP.
# retention_days = 90

# Origines des extensions autorisées à interroger le service,
# par exemple "chrome-extension://abcdefghijklmnopabcdefghijklmnop" ou "moz-extension://<UUID>".
# allowed_origins = []

# Accepter toute extension Chrome/Edge/Firefox/Thunderbird (schémas chrome-extension:// et moz-extension://).
# allow_any_extension_origin = true

# Boîtes aux lettres lues directement en IMAP (plusieurs blocs possibles). Exemple :
# [[sources.imap]]
# name = "bal-labo"                 # nom affiché dans « status »
# host = "imap.mssante.fr"
# port = 143
# tls = "starttls"                  # ou "implicit" (port 993) ; TLS 1.2 au minimum
# ca_file = "C:/IGC-Sante/ac-racines.pem"   # autorités du serveur ; vide = magasin du système
# folders = ["INBOX"]
# cert_file = "C:/IGC-Sante/bal.crt"         # certificat client (connexion SASL EXTERNAL)
# key_file = "C:/IGC-Sante/bal.key"          # clé privée : droits 0600 obligatoires
# user = ""                                   # ou identifiant + fichier de mot de passe (0600)
# password_file = ""
# poll_seconds = 60                 # relève périodique, en plus d'IDLE quand le serveur le propose
# move_processed_to = ""            # dossier où déplacer les certificats lus ; vide = ne rien déplacer

# Noms des sites affichés à côté de leur FINESS géographique.
# [sites]
# "750712184" = "Site de Paris 12e"
"""


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is for IT, in French."""


@dataclass
class Settings:
    data_dir: Path
    config_file: Path
    trusted_senders: frozenset[str] = field(default_factory=lambda: frozenset(sidep.DEFAULT_TRUSTED_SENDERS))
    retention_days: int = 90
    port: int = DEFAULT_PORT
    watch: list[Path] = field(default_factory=list)
    watch_downloads: bool = True
    watch_thunderbird: bool = True
    printer: str = ""
    allowed_origins: frozenset[str] = frozenset()
    allow_any_extension_origin: bool = True
    sites: dict[str, str] = field(default_factory=dict)
    imap_sources: list[ImapSource] = field(default_factory=list)  # [[sources.imap]]

    def in_force(self) -> dict[str, Any]:
        """The settings as IT should read them (``sidep-helper config``)."""
        return {
            "config_file": str(self.config_file),
            "data_dir": str(self.data_dir),
            "port": self.port,
            "watch": [str(p) for p in self.watch],
            "watch_downloads": self.watch_downloads,
            "watch_thunderbird": self.watch_thunderbird,
            "trusted_senders": sorted(self.trusted_senders),
            "printer": self.printer,
            "retention_days": self.retention_days,
            "allowed_origins": sorted(self.allowed_origins),
            "allow_any_extension_origin": self.allow_any_extension_origin,
            "sites": dict(self.sites),
            "sources": {"imap": [src.in_force() for src in self.imap_sources]},
        }


def default_data_dir() -> Path:
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def load(data_dir: str | Path | None = None, config_file: str | Path | None = None) -> Settings:
    settings = Settings(
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        config_file=Path(config_file).expanduser() if config_file else default_config_file(),
    )
    if settings.config_file.is_file():
        try:
            values = tomllib.loads(settings.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Fichier de configuration illisible : {settings.config_file} ({exc})") from exc
        _apply(settings, values)
    return settings


def write_default(path: Path) -> bool:
    """Create the configuration file with commented defaults if it does not exist yet."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(DEFAULT_CONFIG)
    return True


def _apply(settings: Settings, values: dict[str, Any]) -> None:
    where = settings.config_file

    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{where} : « {key} » doit être {expected}")

    known = set(Settings.__dataclass_fields__) - {"data_dir", "config_file", "imap_sources"} | {"sources"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where} : réglage(s) inconnu(s) : {', '.join(unknown)}")
    if "trusted_senders" in values:
        senders = values["trusted_senders"]
        if not isinstance(senders, list) or not all(isinstance(s, str) and "@" in s for s in senders):
            raise fail("trusted_senders", "une liste d'adresses e-mail")
        settings.trusted_senders = frozenset(s.strip().lower() for s in senders)
    if "retention_days" in values:
        retention = values["retention_days"]
        if not isinstance(retention, int) or isinstance(retention, bool) or retention < 1:
            raise fail("retention_days", "un nombre entier de jours, au moins 1")
        settings.retention_days = retention
    if "port" in values:
        port = values["port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
            raise fail("port", "un numéro de port entre 1024 et 65535")
        settings.port = port
    if "watch" in values:
        folders = values["watch"]
        if not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders):
            raise fail("watch", "une liste de dossiers")
        settings.watch = [Path(f).expanduser() for f in folders]
    for key in ("watch_downloads", "watch_thunderbird", "allow_any_extension_origin"):
        if key in values:
            if not isinstance(values[key], bool):
                raise fail(key, "true ou false")
            setattr(settings, key, values[key])
    if "printer" in values:
        if not isinstance(values["printer"], str):
            raise fail("printer", "un nom d'imprimante (texte)")
        settings.printer = values["printer"].strip()
    if "allowed_origins" in values:
        origins = values["allowed_origins"]
        if not isinstance(origins, list) or not all(
            isinstance(o, str) and o.startswith(("chrome-extension://", "moz-extension://")) for o in origins
        ):
            raise fail("allowed_origins", "une liste d'origines chrome-extension://… ou moz-extension://…")
        settings.allowed_origins = frozenset(o.rstrip("/") for o in origins)
    if "sites" in values:
        sites = values["sites"]
        if not isinstance(sites, dict) or not all(isinstance(v, str) for v in sites.values()):
            raise fail("sites", "une table FINESS = \"nom du site\"")
        settings.sites = {str(k).upper(): v for k, v in sites.items()}
    if "sources" in values:
        settings.imap_sources = _imap_sources(values["sources"], where)


# --- [[sources.imap]] (issue 10) ---------------------------------------------------------------------

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


def _imap_sources(value: Any, where: Path) -> list[ImapSource]:
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
