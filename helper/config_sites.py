"""The lab's sites: FINESS géographique → name, from ``sites.toml`` and the ``[sites]`` tables.

1. ``load_site_directory`` reads ``sites.toml`` beside the configuration file (written by
   ``sidep-helper sites import``) into ``Settings.site_directory``;
2. ``apply_sites`` adds the ``[sites]`` table of a configuration file on top (machine file, then user's);
3. after each step ``Settings.sites`` is the FINESS → name view the service and the CLI show;
   an invalid entry raises ``ConfigError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from helper.config_toml import ConfigError, read_toml
from helper.parse.sitedir import SiteError, parse_sites

if TYPE_CHECKING:
    from helper.config import Settings


def sites_file(settings: Settings) -> Path:
    """The imported site directory (``sidep-helper sites import``), beside the configuration file."""
    return settings.config_file.parent / "sites.toml"


def load_site_directory(settings: Settings) -> None:
    values = read_toml(sites_file(settings))
    if values is None:
        return
    try:
        settings.site_directory = parse_sites(values.get("sites", {}))
    except SiteError as exc:
        raise ConfigError(f"{sites_file(settings)} : {exc}") from None
    settings.sites = {f: s.name for f, s in settings.site_directory.items()}


def apply_sites(settings: Settings, sites: Any, where: Path) -> None:
    """The ``[sites]`` table of the file ``where``, over the directory read so far."""
    try:
        settings.site_directory.update(parse_sites(sites))
    except SiteError as exc:
        raise ConfigError(f"{where} : {exc}") from None
    settings.sites = {f: s.name for f, s in settings.site_directory.items()}
