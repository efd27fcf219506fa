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

from helper.extension_ids import CHROMIUM_ORIGINS
from helper.parse import sidep
from helper.parse.trust import TrustPolicy, canonical_entry

APP_NAME = "sidep-helper"
ENV_HOME = "SIDEP_HELPER_HOME"
DEFAULT_PORT = 51789

def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


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

# Expéditeurs dont les messages deviennent des certificats (adresses exactes).
# trusted_senders = ["noreply.sidep@enovacom.easycrypt.fr"]

# Expéditeurs autorisés à TRANSFÉRER un certificat en pièce jointe (message .eml joint) : adresses
# exactes, ou "@domaine" pour toutes les adresses d'un domaine. Vide par défaut : un certificat
# transféré est alors mis en quarantaine (untrusted_forward), car celui qui transfère peut en
# réécrire le contenu. N'ajoutez que des boîtes de votre laboratoire.
# trusted_forwarders = ["secretariat@labo.mssante.fr", "@labo.mssante.fr"]

# Vérifier les codes-barres signés du certificat PDF (2D-DOC et DCC européen) : signature et
# concordance avec le courriel. Voir docs/verification.md.
# verify_barcodes = true

# Dossier de la liste de confiance des codes-barres (clés publiques 2D-DOC et certificats DCC),
# mis à jour par le service informatique. Par défaut : le dossier « liste-de-confiance » à côté de
# ce fichier.
# barcode_trust_list = "C:/ProgramData/sidep-helper/liste-de-confiance"

# Imprimante : nom de la file d'impression ; vide = imprimante par défaut du système.
# printer = ""

# Durée de conservation des certificats, en jours après leur intégration dans SI-DEP.
# retention_days = 90

# Extensions Chrome/Edge autorisées à interroger le service (par défaut : l'extension sidep-helper,
# identifiant fixe). Les extensions Firefox et Thunderbird (moz-extension://<UUID>, UUID tiré au hasard
# par profil) sont acceptées dès que l'origine est bien formée : le jeton les protège.
# allowed_origins = {_toml_list(CHROMIUM_ORIGINS)}

# Accepter toute extension Chrome/Edge (n'importe quel identifiant chrome-extension://) : déconseillé.
# allow_any_extension_origin = false

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
    trusted_forwarders: frozenset[str] = frozenset()
    retention_days: int = 90
    port: int = DEFAULT_PORT
    watch: list[Path] = field(default_factory=list)
    watch_downloads: bool = True
    watch_thunderbird: bool = True
    printer: str = ""
    allowed_origins: frozenset[str] = frozenset(CHROMIUM_ORIGINS)
    allow_any_extension_origin: bool = False
    sites: dict[str, str] = field(default_factory=dict)
    verify_barcodes: bool = True
    barcode_trust_list: Path | None = None  # None: "liste-de-confiance" beside the configuration file

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
            "trusted_forwarders": sorted(self.trusted_forwarders),
            "printer": self.printer,
            "retention_days": self.retention_days,
            "allowed_origins": sorted(self.allowed_origins),
            "allow_any_extension_origin": self.allow_any_extension_origin,
            "sites": dict(self.sites),
            "verify_barcodes": self.verify_barcodes,
            "barcode_trust_list": str(self.trust_list_dir()),
        }

    def trust_list_dir(self) -> Path:
        return self.barcode_trust_list or self.config_file.parent / "liste-de-confiance"


    def trust(self) -> TrustPolicy:
        """The trust settings as the parser applies them (see ``helper/parse/trust.py``)."""
        return TrustPolicy(senders=self.trusted_senders, forwarders=self.trusted_forwarders,
                           verify_barcodes=self.verify_barcodes, barcode_trust_list=str(self.trust_list_dir()))


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

    known = set(Settings.__dataclass_fields__) - {"data_dir", "config_file"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where} : réglage(s) inconnu(s) : {', '.join(unknown)}")
    if "trusted_senders" in values:
        senders = values["trusted_senders"]
        if not isinstance(senders, list) or not all(isinstance(s, str) and "@" in s for s in senders):
            raise fail("trusted_senders", "une liste d'adresses e-mail")
        settings.trusted_senders = frozenset(_addresses(senders, "trusted_senders", where, domains=False))
    if "trusted_forwarders" in values:
        forwarders = values["trusted_forwarders"]
        if not isinstance(forwarders, list) or not all(isinstance(s, str) for s in forwarders):
            raise fail("trusted_forwarders", "une liste d'adresses e-mail ou de domaines « @domaine »")
        settings.trusted_forwarders = frozenset(_addresses(forwarders, "trusted_forwarders", where, domains=True))
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
    if "barcode_trust_list" in values:
        folder = values["barcode_trust_list"]
        if not isinstance(folder, str) or not folder.strip():
            raise fail("barcode_trust_list", "un dossier")
        settings.barcode_trust_list = Path(folder).expanduser()
    for key in ("watch_downloads", "watch_thunderbird", "allow_any_extension_origin", "verify_barcodes"):
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


def _addresses(entries: list[str], key: str, where: Path, *, domains: bool) -> list[str]:
    out = []
    for entry in entries:
        try:
            if entry.strip().startswith("@") and not domains:
                raise ValueError(f"adresse exacte attendue, pas un domaine : {entry!r}")
            out.append(canonical_entry(entry))
        except ValueError as exc:
            raise ConfigError(f"{where} : « {key} » : {exc}") from None
    return out
