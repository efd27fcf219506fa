"""Where the helper keeps its files, and the settings in force.

Data directory: ``--data-dir``, else ``$SIDEP_HELPER_HOME``, else the platform's user data
directory (platformdirs). Configuration: ``--config``, else ``config.toml`` in
``$SIDEP_HELPER_HOME`` when set, else in the platform's user config directory. The service
writes the file with commented defaults at first run, so IT can see every setting in one place.

Machine-wide configuration (set by IT or by the installers), read in this order:
1. defaults (the ``Settings`` fields);
2. the machine file: Linux ``/etc/sidep-helper/config.toml``, Windows
   ``%ProgramData%\\sidep-helper\\config.toml``; ``$SIDEP_HELPER_MACHINE_CONFIG`` names another file
   (empty: none, which the tests use). Every key it sets is ENFORCED;
3. the user's file: a key the machine file enforces is ignored, whole (lists such as
   ``trusted_senders`` or ``watch`` cannot be extended, tables such as ``sites`` not completed), with a
   French warning in ``Settings.warnings`` that ``config`` prints and ``serve`` logs; other keys apply.
``Settings.value_files`` tells, for each key, which file its value comes from (``config`` shows it).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helper.extension_ids import CHROMIUM_ORIGINS
from helper.parse import sidep
from helper.parse.sitedir import Site, SiteError, parse_sites
from helper.parse.trust import TrustPolicy, canonical_entry

APP_NAME = "sidep-helper"
ENV_HOME = "SIDEP_HELPER_HOME"
ENV_MACHINE_CONFIG = "SIDEP_HELPER_MACHINE_CONFIG"
DEFAULT_PORT = 51789

def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


DEFAULT_CONFIG = f"""\
# Configuration de sidep-helper.
# Ce fichier est créé au premier lancement ; les valeurs en commentaire sont les valeurs par défaut.
# Après modification, redémarrez le service (ou la commande en cours).
# Un réglage fixé par la configuration du poste (/etc/sidep-helper/config.toml sous Linux,
# %ProgramData%\\sidep-helper\\config.toml sous Windows) l'emporte sur ce fichier.

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

# Imprimantes que l'extension peut choisir (noms des files d'impression), en plus de « printer ».
# Liste vide = seule l'imprimante ci-dessus (ou, à défaut, celle par défaut du système) est utilisée.
# printers = ["Accueil", "Secrétariat"]

# Durée de conservation des certificats, en jours après leur intégration dans SI-DEP.
# Un certificat déjà plus ancien à son arrivée n'est pas conservé (compté « expiré »).
# retention_days = 90

# Taille maximale, en Mo, des messages mis en quarantaine (les plus anciens sont supprimés au-delà).
# quarantine_max_mb = 500

# Extensions Chrome/Edge autorisées à interroger le service (par défaut : l'extension sidep-helper,
# identifiant fixe). Les extensions Firefox et Thunderbird (moz-extension://<UUID>, UUID tiré au hasard
# par profil) sont acceptées dès que l'origine est bien formée : le jeton les protège.
# allowed_origins = {_toml_list(CHROMIUM_ORIGINS)}

# Accepter toute extension Chrome/Edge (n'importe quel identifiant chrome-extension://) : déconseillé.
# allow_any_extension_origin = false

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


#: Settings fields that no configuration file sets.
_NOT_IN_FILES = frozenset({"site_directory", "data_dir", "config_file", "machine_config_file", "value_files", "warnings", "demo",
                           "imap_sources"})


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is for IT, in French."""


@dataclass
class Settings:
    data_dir: Path
    config_file: Path
    trusted_senders: frozenset[str] = field(default_factory=lambda: frozenset(sidep.DEFAULT_TRUSTED_SENDERS))
    trusted_forwarders: frozenset[str] = frozenset()
    retention_days: int = 90
    quarantine_max_mb: int = 500
    port: int = DEFAULT_PORT
    watch: list[Path] = field(default_factory=list)
    watch_downloads: bool = True
    watch_thunderbird: bool = True
    printer: str = ""
    printers: tuple[str, ...] = ()
    allowed_origins: frozenset[str] = frozenset(CHROMIUM_ORIGINS)
    allow_any_extension_origin: bool = False
    sites: dict[str, str] = field(default_factory=dict)  # FINESS -> name (all sites below)
    site_directory: dict[str, Site] = field(default_factory=dict)  # sites.toml, then [sites] of the files
    machine_config_file: Path | None = None
    value_files: dict[str, str] = field(default_factory=dict)  # key -> file its value comes from
    warnings: list[str] = field(default_factory=list)  # French, for IT
    demo: bool = False  # « serve --demo »: fictitious certificates in their own data directory
    imap_sources: list[ImapSource] = field(default_factory=list)  # [[sources.imap]]
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
            "printers": list(self.printers),
            "retention_days": self.retention_days,
            "quarantine_max_mb": self.quarantine_max_mb,
            "allowed_origins": sorted(self.allowed_origins),
            "allow_any_extension_origin": self.allow_any_extension_origin,
            "sites": dict(self.sites),
            "sources.imap": [src.in_force() for src in self.imap_sources],
            "verify_barcodes": self.verify_barcodes,
            "barcode_trust_list": str(self.trust_list_dir()),
        }

    def source_of(self, key: str) -> str:
        """The file a setting comes from, or « défaut »."""
        return self.value_files.get(key, "défaut")

    def enforced(self, key: str) -> bool:
        """True when the machine-wide file sets ``key`` (the user cannot change it)."""
        return self.machine_config_file is not None and self.value_files.get(key) == str(self.machine_config_file)

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


def machine_config_file() -> Path | None:
    """The machine-wide file's place (it may not exist); None when disabled by an empty variable."""
    override = os.environ.get(ENV_MACHINE_CONFIG)
    if override is not None:
        return Path(override).expanduser() if override.strip() else None
    if os.name == "nt":
        program_data = os.environ.get("ProgramData") or os.environ.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        return Path(program_data) / APP_NAME / "config.toml"
    return Path("/etc") / APP_NAME / "config.toml"


def _read(path: Path) -> dict[str, Any] | None:
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


def load(data_dir: str | Path | None = None, config_file: str | Path | None = None) -> Settings:
    settings = Settings(
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        config_file=Path(config_file).expanduser() if config_file else default_config_file(),
        machine_config_file=machine_config_file(),
    )
    _load_site_directory(settings)
    machine = _read(settings.machine_config_file) if settings.machine_config_file else None
    if machine is not None:
        assert settings.machine_config_file is not None
        _apply(settings, machine, settings.machine_config_file)
    if settings.config_file == settings.machine_config_file:
        return settings
    user = _read(settings.config_file)
    if user is not None:
        locked = sorted(k for k in user if machine is not None and k in machine)
        for key in locked:
            settings.warnings.append(
                f"réglage « {key} » imposé par la configuration du poste ({settings.machine_config_file}) : "
                f"la valeur de {settings.config_file} est ignorée"
            )
        _apply(settings, {k: v for k, v in user.items() if k not in locked}, settings.config_file)
    return settings


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


def sites_file(settings: Settings) -> Path:
    """The imported site directory (``sidep-helper sites import``), beside the configuration file."""
    return settings.config_file.parent / "sites.toml"


def _load_site_directory(settings: Settings) -> None:
    values = _read(sites_file(settings))
    if values is None:
        return
    try:
        settings.site_directory = parse_sites(values.get("sites", {}))
    except SiteError as exc:
        raise ConfigError(f"{sites_file(settings)} : {exc}") from None
    settings.sites = {f: s.name for f, s in settings.site_directory.items()}


def toml_error_fr(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """A TOML syntax error for IT, in French, with the file and the line."""
    import re

    text = str(exc)
    where = re.search(r"\(at line (\d+), column (\d+)\)", text)
    what = next((fr for en, fr in _TOML_MESSAGES if text.startswith(en)), "syntaxe TOML invalide")
    if where:
        return f"Fichier de configuration {path}, ligne {where[1]}, colonne {where[2]} : {what}."
    return f"Fichier de configuration {path}, à la fin du fichier : {what}."


def write_default(path: Path) -> bool:
    """Create the configuration file with commented defaults if it does not exist yet."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(DEFAULT_CONFIG)
    return True


def _apply(settings: Settings, values: dict[str, Any], where: Path) -> None:

    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{where} : « {key} » doit être {expected}")

    known = (set(Settings.__dataclass_fields__) - _NOT_IN_FILES) | {"sources"}
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
    if "quarantine_max_mb" in values:
        cap = values["quarantine_max_mb"]
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise fail("quarantine_max_mb", "un nombre entier de Mo, au moins 1")
        settings.quarantine_max_mb = cap
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
    if "printers" in values:
        queues = values["printers"]
        if not isinstance(queues, list) or not all(isinstance(q, str) and q.strip() for q in queues):
            raise fail("printers", "une liste de noms d'imprimantes (texte)")
        settings.printers = tuple(dict.fromkeys(q.strip() for q in queues))
    if "allowed_origins" in values:
        origins = values["allowed_origins"]
        if not isinstance(origins, list) or not all(
            isinstance(o, str) and o.startswith(("chrome-extension://", "moz-extension://")) for o in origins
        ):
            raise fail("allowed_origins", "une liste d'origines chrome-extension://… ou moz-extension://…")
        settings.allowed_origins = frozenset(o.rstrip("/") for o in origins)
    if "sites" in values:
        sites = values["sites"]
        try:
            settings.site_directory.update(parse_sites(sites))
        except SiteError as exc:
            raise ConfigError(f"{where} : {exc}") from None
        settings.sites = {f: s.name for f, s in settings.site_directory.items()}
    if "sources" in values:
        settings.imap_sources = _imap_sources(values["sources"], where)
    for key in values:
        settings.value_files[key] = str(where)


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


def machine_template() -> str:
    """The commented machine-wide file the installers ship (every setting, none enforced yet)."""
    body = DEFAULT_CONFIG.split("\n# port =", 1)[0].count("\n")
    lines = DEFAULT_CONFIG.splitlines(keepends=True)[body - 1:]
    return (
        "# Configuration de sidep-helper pour tout le poste (tous les utilisateurs).\n"
        "# Un réglage décommenté ici est IMPOSÉ : la configuration d'un utilisateur ne peut ni le changer\n"
        "# ni le compléter (une liste fixée ici, comme trusted_senders ou watch, ne peut pas être étendue).\n"
        "# « sidep-helper config » indique pour chaque réglage le fichier d'où vient sa valeur.\n"
        "# Après modification, chaque utilisateur doit relancer le service (ou se reconnecter).\n"
        + "".join(lines)
    )


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
