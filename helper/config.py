"""Where the helper keeps its files, and the settings in force.

Data directory: ``--data-dir``, else ``$SIDEP_HELPER_HOME``, else the platform's user data
directory (platformdirs). Configuration: ``config.toml`` in ``$SIDEP_HELPER_HOME`` when set,
else in the platform's user config directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from helper import sidep

APP_NAME = "sidep-helper"
ENV_HOME = "SIDEP_HELPER_HOME"


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is for IT, in French."""


@dataclass
class Settings:
    data_dir: Path
    config_file: Path
    trusted_senders: frozenset[str] = field(default_factory=lambda: frozenset(sidep.DEFAULT_TRUSTED_SENDERS))
    retention_days: int = 90


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


def _apply(settings: Settings, values: dict[str, object]) -> None:
    senders = values.get("trusted_senders")
    if senders is not None:
        if not isinstance(senders, list) or not all(isinstance(s, str) and "@" in s for s in senders):
            raise ConfigError(
                f"{settings.config_file} : « trusted_senders » doit être une liste d'adresses e-mail"
            )
        settings.trusted_senders = frozenset(s.strip().lower() for s in senders)
    retention = values.get("retention_days")
    if retention is not None:
        if not isinstance(retention, int) or retention < 1:
            raise ConfigError(f"{settings.config_file} : « retention_days » doit être un entier positif")
        settings.retention_days = retention
