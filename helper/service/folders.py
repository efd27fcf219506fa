"""Where the mail is: the folders ``sidep-helper serve`` watches when none is given.

1. Thunderbird profiles are looked for in the usual places of this platform (``.thunderbird``, snap,
   Flatpak, ``%APPDATA%``, ``~/Library``): those listed in ``profiles.ini`` and those sitting there;
2. their ``Mail/`` and ``ImapMail/`` folders (existing ones only) are the Thunderbird folders;
3. :func:`default_folders` adds the downloads folder (listed even when missing) and the configured
   ``watch`` folders, each real path once, the first kind given winning;
4. :func:`path_id` is what the logs show instead of a file name (PDF names carry patient names).
"""

from __future__ import annotations

import configparser
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from helper.config import Settings

log = logging.getLogger("sidep_helper.watch")
T = TypeVar("T")

DOWNLOADS, THUNDERBIRD, CONFIGURED, CLI = "downloads", "thunderbird", "configured", "cli"


def _thunderbird_roots() -> list[Path]:
    """Folders holding Thunderbird profiles (and their ``profiles.ini``) on this platform."""
    home = Path.home()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        return [Path(appdata) / "Thunderbird"] if appdata else []
    if sys.platform == "darwin":
        return [home / "Library" / "Thunderbird"]
    return [
        home / ".thunderbird",
        home / ".mozilla-thunderbird",
        home / "snap" / "thunderbird" / "common" / ".thunderbird",  # Ubuntu snap
        home / ".var" / "app" / "org.mozilla.Thunderbird" / ".thunderbird",  # Flatpak
    ]


def _profiles_from_ini(root: Path) -> list[Path]:
    """Profile folders listed in ``root/profiles.ini`` (``Path=``, relative when ``IsRelative=1``)."""
    ini = root / "profiles.ini"
    if not ini.is_file():
        return []
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    try:
        with open(ini, encoding="utf-8", errors="replace") as fh:
            parser.read_file(fh)
    except (OSError, configparser.Error) as exc:
        log.warning("profiles.ini de Thunderbird illisible (%s) : %s", ini, exc)
        return []
    profiles = []
    for section in parser.sections():
        if not section.lower().startswith("profile"):
            continue
        raw = parser.get(section, "path", fallback="").strip()
        if not raw:
            continue
        relative = parser.get(section, "isrelative", fallback="1").strip() != "0"
        profiles.append(root / raw if relative else Path(raw).expanduser())
    return profiles


def thunderbird_profiles() -> list[Path]:
    """Every Thunderbird profile folder found: listed in profiles.ini, or sitting in the usual places."""
    found: list[Path] = []
    for root in _thunderbird_roots():
        if not root.is_dir():
            continue
        found.extend(_profiles_from_ini(root))
        for parent in (root, root / "Profiles"):
            try:
                found.extend(sorted(p for p in parent.iterdir() if p.is_dir()))
            except OSError:
                continue
    return _unique(found)


def thunderbird_mail_folders() -> list[Path]:
    """The ``Mail/`` and ``ImapMail/`` folders of the Thunderbird profiles found (existing ones only)."""
    folders = []
    for profile in thunderbird_profiles():
        for name in ("Mail", "ImapMail"):
            folder = profile / name
            if folder.is_dir():
                folders.append(folder)
    return _unique(folders)


def default_folders(settings: Settings) -> list[tuple[Path, str]]:
    """(folder, kind) watched without ``--watch``: downloads, Thunderbird mail folders, configured ones.

    The downloads folder is listed even when missing (reported absent, picked up once created).
    """
    folders: list[tuple[Path, str]] = []
    if settings.watch_downloads:
        import platformdirs

        folders.append((Path(platformdirs.user_downloads_dir()), DOWNLOADS))
    if settings.watch_thunderbird:
        folders.extend((p, THUNDERBIRD) for p in thunderbird_mail_folders())
    folders.extend((Path(p).expanduser(), CONFIGURED) for p in settings.watch)
    return _unique_folders(folders)


def _unique_folders(folders: Iterable[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(folder, kind) pairs without repeats of a folder, the first kind given winning."""
    return _unique(folders, lambda pair: pair[0])


def _key(path: str | os.PathLike[str]) -> str:
    """Identity of a folder for de-duplication and nesting: real path, case-folded where the OS is."""
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _unique(items: Iterable[T], path_of: Callable[[T], Path] = lambda p: p) -> list[T]:  # type: ignore[assignment,return-value]
    """``items`` without repeats of the same real path, first one kept."""
    seen: set[str] = set()
    out = []
    for item in items:
        k = _key(path_of(item))
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _inside(key: str, parent_key: str) -> bool:
    return key != parent_key and key.startswith(parent_key.rstrip(os.sep) + os.sep)


def path_id(path: str) -> str:
    """What the logs show for a file: a short hash, never its name (PDF names carry patient names)."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:12]

