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

The jobs are split: ``config_defaults`` (the commented default file, the machine template),
``config_toml`` (reading a file, French errors), ``config_imap`` (``[[sources.imap]]``),
``config_sites`` (``sites.toml`` and ``[sites]``). This module puts them together in ``load``:
1. ``Settings`` with the paths (data directory, user's file, machine file);
2. the site directory (``sites.toml``);
3. the machine file, every key enforced;
4. the user's file, minus the keys the machine file sets (a French warning for each).
Every name other modules import from ``helper.config`` is still importable from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helper.config_defaults import DEFAULT_CONFIG, DEFAULT_PORT, machine_template, write_default
from helper.config_imap import IMAP_TLS, ImapSource, imap_sources
from helper.config_sites import apply_sites, load_site_directory, sites_file
from helper.config_toml import ConfigError, read_toml, toml_error_fr
from helper.extension_ids import CHROMIUM_ORIGINS
from helper.parse import sidep
from helper.parse.sitedir import Site
from helper.parse.trust import TrustPolicy, canonical_entry

__all__ = [
    "APP_NAME", "DEFAULT_CONFIG", "DEFAULT_PORT", "ENV_HOME", "ENV_MACHINE_CONFIG", "IMAP_TLS", "ConfigError",
    "ImapSource", "Settings", "default_config_file", "default_data_dir", "load", "machine_config_file",
    "machine_template", "sites_file", "toml_error_fr", "write_default",
]

APP_NAME = "sidep-helper"
ENV_HOME = "SIDEP_HELPER_HOME"
ENV_MACHINE_CONFIG = "SIDEP_HELPER_MACHINE_CONFIG"


#: Settings fields that no configuration file sets.
_NOT_IN_FILES = frozenset({"site_directory", "data_dir", "config_file", "machine_config_file", "value_files", "warnings", "demo",
                           "imap_sources"})



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



def load(data_dir: str | Path | None = None, config_file: str | Path | None = None) -> Settings:
    settings = Settings(
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        config_file=Path(config_file).expanduser() if config_file else default_config_file(),
        machine_config_file=machine_config_file(),
    )
    load_site_directory(settings)
    machine = read_toml(settings.machine_config_file) if settings.machine_config_file else None
    if machine is not None:
        assert settings.machine_config_file is not None
        _apply(settings, machine, settings.machine_config_file)
    if settings.config_file == settings.machine_config_file:
        return settings
    user = read_toml(settings.config_file)
    if user is not None:
        locked = sorted(k for k in user if machine is not None and k in machine)
        for key in locked:
            settings.warnings.append(
                f"réglage « {key} » imposé par la configuration du poste ({settings.machine_config_file}) : "
                f"la valeur de {settings.config_file} est ignorée"
            )
        _apply(settings, {k: v for k, v in user.items() if k not in locked}, settings.config_file)
    return settings


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
        apply_sites(settings, values["sites"], where)
    if "sources" in values:
        settings.imap_sources = imap_sources(values["sources"], where)
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

