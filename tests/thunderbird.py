"""A real, headless Thunderbird with a throw-away profile, for the tests of the Thunderbird add-on.

``ensure_thunderbird()`` installs Debian's ``thunderbird`` package when it is missing (as root, with
``apt-get``) and returns the path of the real binary. ``make_profile()`` builds a profile folder: a
locked-down ``user.js`` (no first run, updates, telemetry, account wizard, remote content, and no
network except the loopback), the *Local Folders* account with mbox folders holding the given messages,
and the unpacked add-on(s) installed by a proxy file. ``run_thunderbird()`` starts
``thunderbird --headless --profile DIR --no-remote`` and returns a ``ThunderbirdProcess`` whose
``console()`` gives what the add-ons ``console.log`` (``devtools.console.stdout.content``). For a real
window instead of headless mode, pass ``display=":99"`` (an Xvfb of your own) to ``run_thunderbird``.

What the tests can rely on (all checked by ``tests/test_thunderbird_env.py``):

* **Folder summaries.** Thunderbird only lists the messages of a local folder whose summary (``.msf``)
  is up to date: ``messages.query`` / ``messages.list`` silently return nothing for a bare mbox
  (``NS_MSG_ERROR_FOLDER_SUMMARY_OUT_OF_DATE``), and nothing rebuilds it in headless mode. So, when the
  profile has messages, ``make_profile`` runs Thunderbird once with a small *primer* add-on (a
  WebExtension Experiment, allowed for unsigned add-ons) that reparses every local folder, checks the
  message counts, and quits cleanly. The add-on under test is installed after that run: it starts, like
  on a real secretary's workstation, with a profile whose folders are already known to Thunderbird.
* **Managed settings** (``storage.managed``) come from enterprise policies: ``{"policies": {"3rdparty":
  {"Extensions": {ADDON_ID: {...}}}}}``. Debian's build (``MOZ_SYSTEM_POLICIES``) reads
  ``/etc/thunderbird/policies/policies.json`` first, then ``<install dir>/distribution/policies.json``.
  Rather than writing machine-wide files, ``run_thunderbird`` runs a *private install*: a directory
  with a copy of ``thunderbird-bin`` (600 kB; Gecko finds its install directory from the real path of
  the binary) and symbolic links to everything else in ``/usr/lib/thunderbird``, plus its own
  ``distribution/policies.json``. The settings are given to ``make_profile(managed_settings=...)`` and
  kept in the profile folder (``sidep-harness.json``), so a profile carries its own policies.
  ``system_policies()`` writes the machine-wide file instead (and restores what was there), for the
  test of the path an administrator uses; a stray machine-wide file would override the private one, so
  ``run_thunderbird`` refuses to start while one it did not write is present.
* **IMAP.** ``make_profile(imap={"port", "user", "password"})`` adds an IMAP account (plain login, IDLE)
  on a loopback server, e.g. the Dovecot of ``tests/roundcube.py`` (``start_webmail()``). The primer
  run stores the password in the profile's login manager; the account itself is added after that run,
  so the first connection, and the ``onNewMailReceived`` of the mail already on the server, happen in
  the run under test. Mail appended to the inbox (``Webmail.deliver``) is signalled within a second.
* **Add-on start.** At the moment a background script starts, ``folders.query({})``,
  ``accounts.list(true)`` and ``folders.getSubFolders()`` may show the root folder of Local Folders
  only (Thunderbird discovers local subfolders lazily; the same with a real X display), while
  ``messages.query()`` (with or without a ``folderId`` such as ``account1://Inbox``) already finds
  every message. The full folder list comes a few seconds later.
* **Isolation.** Thunderbird runs with its own ``HOME``/``TMPDIR``/XDG directories under the test's
  temporary folder, in its own process group (``stop()`` ends the whole group), with a watchdog that
  kills it after ``timeout`` seconds. Non-loopback traffic goes to a dead SOCKS proxy (127.0.0.1:9).

Anything that cannot be set up raises ``ThunderbirdSetupError``: the tests fail loudly rather than
skip. Standard library only (and ``mailgen``), so that ``python3 tests/thunderbird.py`` can install and
check Thunderbird before any virtual environment exists.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mailgen

ADDON_ID = "sidep-helper@sidep-helper.local"
PACKAGES = ("thunderbird",)
INSTALL_DIR = Path("/usr/lib/thunderbird")
BINARY_NAME = "thunderbird-bin"
MIN_MAJOR = 128  # ESR with the MailExtension APIs the add-on uses (messages.query, storage.managed…)
# The harness itself needs a newer build: ESR 140 in headless mode never restores its main window
# (``sessionstore-windows-restored`` is never reached), so the tests run on Debian's current security
# build. A machine image with stale package lists installs 140: refresh the lists and upgrade.
TESTED_MAJOR = 153
SYSTEM_POLICIES = Path("/etc/thunderbird/policies/policies.json")
HARNESS_FILE = "sidep-harness.json"  # harness metadata kept in the profile (ignored by Thunderbird)
PRIMER_ID = "primer@sidep-test.local"
PRIMER_RESULT = "sidep-primer.json"
LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-thunderbird.lock"
# held exclusively while the machine-wide policies file is written, shared by every Thunderbird startup
POLICIES_LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-thunderbird-policies.lock"
INSTALL_TIMEOUT = 900
DEAD_PORT = 9  # "discard": nothing listens there, connections are refused at once

# --------------------------------------------------------------------------------------------------------------
# Preferences
# --------------------------------------------------------------------------------------------------------------
#: Written to ``user.js`` (re-applied at every start). Grouped by purpose; see the module docstring.
LOCKDOWN_PREFS: dict[str, bool | int | str] = {
    # first run, start page, default-client check, account wizard/hub, rights and donation notices
    "mail.provider.enabled": False,
    "mail.provider.suppress_dialog_on_startup": True,
    "mail.accounthub.thundermail.enabled": False,
    "mailnews.start_page.enabled": False,
    "mailnews.start_page_override.mstone": "ignore",
    "mail.shell.checkDefaultClient": False,
    "mail.shell.checkDefaultMail": False,
    "mail.rights.override": True,
    "mail.rights.version": 1,
    "mail.inappnotifications.enabled": False,
    "mail.cloud_files.enabled": False,
    "mail.biff.show_alert": False,
    "mail.biff.play_sound": False,
    "mail.biff.use_system_alert": False,
    "mailnews.auto_config.fetchFromISP.enabled": False,
    "mailnews.auto_config.fetchFromExchange.enabled": False,
    "mailnews.auto_config.guess.enabled": False,
    "mailnews.auto_config_url": "",
    "browser.startup.homepage_override.mstone": "ignore",
    "toolkit.startup.max_resumed_crashes": -1,  # never offer safe mode after the watchdog killed one
    "browser.sessionstore.resume_from_crash": False,
    # updates (app, add-ons, system add-ons, search, GMP)
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.staging.enabled": False,
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "browser.search.update": False,
    "media.gmp-manager.updateEnabled": False,
    # telemetry and data reporting
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "mail.instrumentation.askUser": False,
    "mail.instrumentation.userOptedIn": False,
    "mail.instrumentation.postUrl": "",
    # remote content
    "mailnews.message_display.disable_remote_image": True,
    # network: loopback only. Everything else goes to a SOCKS proxy on a closed port (socket transports
    # of every protocol honour it, IMAP/SMTP included); loopback is never proxied.
    "network.proxy.type": 1,
    "network.proxy.socks": "127.0.0.1",
    "network.proxy.socks_port": DEAD_PORT,
    "network.proxy.socks_version": 5,
    "network.proxy.socks_remote_dns": True,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": DEAD_PORT,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": DEAD_PORT,
    "network.proxy.no_proxies_on": "localhost, 127.0.0.1, [::1]",
    "network.proxy.allow_hijacking_localhost": False,
    "network.dns.disableIPv6": True,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "geo.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "mailnews.database.global.indexer.enabled": False,  # gloda: background CPU the tests do not need
    # add-ons: unpacked, unsigned, found in the profile at startup and enabled without a prompt
    "xpinstall.signatures.required": False,
    "extensions.autoDisableScopes": 0,
    "extensions.startupScanScopes": 15,
    "extensions.enabledScopes": 15,
    "extensions.experiments.enabled": True,  # the primer is a WebExtension Experiment
    "extensions.webextensions.background-delayed-startup": False,
    "extensions.installDistroAddons": False,
    # console of chrome code and of add-on pages on stdout (console.log from the background script)
    "devtools.console.stdout.chrome": True,
    "devtools.console.stdout.content": True,
    "browser.dom.window.dump.enabled": True,
}


def _pref_line(name: str, value: bool | int | str) -> str:
    return f"user_pref({json.dumps(name)}, {json.dumps(value)});\n"


def _local_folders_prefs() -> dict[str, bool | int | str]:
    return {
        "mail.accountmanager.accounts": "account1",
        "mail.accountmanager.localfoldersserver": "server1",
        "mail.account.account1.server": "server1",
        "mail.server.server1.type": "none",
        "mail.server.server1.hostname": "Local Folders",
        "mail.server.server1.name": "Local Folders",
        "mail.server.server1.userName": "nobody",
        "mail.server.server1.directory-rel": "[ProfD]Mail/Local Folders",
        "mail.server.server1.storeContractID": "@mozilla.org/msgstore/berkeleystore;1",
        "mail.root.none-rel": "[ProfD]Mail",
    }


def _imap_prefs(imap: Mapping[str, Any]) -> dict[str, bool | int | str]:
    """An IMAP account (account2/server2/id1) on a loopback server, plain login, no TLS."""
    host = str(imap.get("host", "127.0.0.1"))
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ThunderbirdSetupError(f"the IMAP server must be on the loopback, not {host!r}")
    user = str(imap["user"])
    email = str(imap.get("email", f"{user}@labo.mssante.fr"))
    return {
        "mail.accountmanager.accounts": "account2,account1",
        "mail.accountmanager.defaultaccount": "account2",
        "mail.account.account2.server": "server2",
        "mail.account.account2.identities": "id1",
        "mail.identity.id1.fullName": str(imap.get("full_name", "Laboratoire")),
        "mail.identity.id1.useremail": email,
        "mail.identity.id1.valid": True,
        "mail.server.server2.type": "imap",
        "mail.server.server2.hostname": host,
        "mail.server.server2.port": int(imap["port"]),
        "mail.server.server2.userName": user,
        "mail.server.server2.name": email,
        "mail.server.server2.socketType": 0,  # plain
        "mail.server.server2.authMethod": 3,  # cleartext password
        "mail.server.server2.directory-rel": "[ProfD]ImapMail/" + host,
        "mail.server.server2.login_at_startup": True,
        "mail.server.server2.check_new_mail": True,
        "mail.server.server2.check_all_folders_for_new": True,
        "mail.server.server2.use_idle": True,
        "mail.server.server2.check_time": 1,
        "mail.root.imap-rel": "[ProfD]ImapMail",
    }


# --------------------------------------------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------------------------------------------
class ThunderbirdSetupError(RuntimeError):
    """Thunderbird or its profile could not be set up; the message says what went wrong."""


@contextlib.contextmanager
def _locked(path: Path = LOCK_FILE, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _binary() -> Path:
    return INSTALL_DIR / BINARY_NAME


def thunderbird_version() -> str:
    """The installed version, as in ``application.ini`` (e.g. ``153.7.0``)."""
    ini = configparser.ConfigParser()
    if not ini.read(INSTALL_DIR / "application.ini"):
        raise ThunderbirdSetupError(f"{INSTALL_DIR / 'application.ini'} is missing")
    return ini.get("App", "Version")


def _apt_install(refresh: bool = False) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ThunderbirdSetupError(
            f"Thunderbird is not installed ({_binary()} missing) or older than ESR {TESTED_MAJOR}, and this is "
            f"not a root shell with apt-get: run `apt-get update && apt-get install thunderbird`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    update = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"]
    if refresh:
        subprocess.run(update, capture_output=True, env=env, timeout=INSTALL_TIMEOUT,
                       stdin=subprocess.DEVNULL, check=False)
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 and not refresh:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], capture_output=True, env=env,
                       timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise ThunderbirdSetupError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr}")


def _major(version: str) -> int:
    found = re.match(r"\d+", version)
    return int(found.group()) if found else 0


def ensure_thunderbird() -> str:
    """Install Debian's Thunderbird if missing; return the path of the real binary (``thunderbird-bin``)."""
    with _locked():
        if not _binary().is_file():
            _apt_install()
        if not _binary().is_file():
            raise ThunderbirdSetupError(f"{_binary()} still missing after installing {' '.join(PACKAGES)}")
        if _major(thunderbird_version()) < TESTED_MAJOR:
            _apt_install(refresh=True)
        version = thunderbird_version()
        if _major(version) < TESTED_MAJOR:
            raise ThunderbirdSetupError(f"Thunderbird {version} is too old for the harness: ESR {TESTED_MAJOR} or "
                                        f"later is needed (apt-get update && apt-get install thunderbird)")
    return str(_binary())


def policies_document(managed_settings: Mapping[str, Mapping[str, Any]] | None = None,
                      policies: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``policies.json`` content: ``managed_settings`` (add-on id → ``storage.managed`` values) + raw policies."""
    doc: dict[str, Any] = {"policies": dict(policies or {})}
    if managed_settings:
        third = dict(doc["policies"].get("3rdparty", {}))
        extensions = dict(third.get("Extensions", {}))
        extensions.update({addon: dict(values) for addon, values in managed_settings.items()})
        third["Extensions"] = extensions
        doc["policies"]["3rdparty"] = third
    return doc


def _private_install(dest: Path, policies: Mapping[str, Any] | None) -> Path:
    """A directory that Gecko takes for its install directory; returns its binary. Cheap to rebuild."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in INSTALL_DIR.iterdir():
        if entry.name == BINARY_NAME:
            shutil.copy2(entry, dest / entry.name)
        elif entry.name == "thunderbird" and entry.is_symlink():
            os.symlink(BINARY_NAME, dest / entry.name)
        elif entry.name != "distribution":
            os.symlink(entry.resolve(), dest / entry.name)
    distribution = dest / "distribution"
    distribution.mkdir()
    system_distribution = INSTALL_DIR / "distribution"
    if system_distribution.is_dir():
        for entry in system_distribution.iterdir():
            if entry.name != "policies.json":
                os.symlink(entry.resolve(), distribution / entry.name)
    if policies is not None:
        (distribution / "policies.json").write_text(json.dumps(policies, indent=1), encoding="utf-8")
    return dest / BINARY_NAME


_SYSTEM_POLICIES_OWNED: list[Path] = []


@contextlib.contextmanager
def system_policies(document: Mapping[str, Any]) -> Iterator[Path]:
    """Write the machine-wide ``/etc/thunderbird/policies/policies.json``; restore what was there after.

    This is the file an administrator deploys. It is read by every Thunderbird of the machine, so tests
    use it only for the test of that path; ``run_thunderbird`` accepts it while this context is open.
    Thunderbird startups of other processes wait for the end of this context (a file lock).
    """
    with _locked(POLICIES_LOCK_FILE):
        with _system_policies(document) as path:
            yield path


@contextlib.contextmanager
def _system_policies(document: Mapping[str, Any]) -> Iterator[Path]:
    path = SYSTEM_POLICIES
    if os.geteuid() != 0 and not os.access(path.parent if path.parent.exists() else path.parent.parent, os.W_OK):
        raise ThunderbirdSetupError(f"{path} is not writable: run as root")
    created_dirs = [d for d in (path.parent.parent, path.parent) if not d.exists()]
    backup = path.read_bytes() if path.exists() else None
    for d in created_dirs:
        d.mkdir()
    tmp = path.with_name(path.name + ".sidep-test")
    tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    _SYSTEM_POLICIES_OWNED.append(path)
    try:
        yield path
    finally:
        _SYSTEM_POLICIES_OWNED.remove(path)
        if backup is None:
            path.unlink(missing_ok=True)
        else:
            tmp.write_bytes(backup)
            os.replace(tmp, path)
        for d in reversed(created_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()


# --------------------------------------------------------------------------------------------------------------
# Add-ons
# --------------------------------------------------------------------------------------------------------------
def addon_id(extension_dir: Path) -> str:
    """The Gecko id declared by an unpacked add-on's ``manifest.json``."""
    manifest_path = Path(extension_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ThunderbirdSetupError(f"cannot read {manifest_path}: {exc}") from exc
    for key in ("browser_specific_settings", "applications"):
        gecko = manifest.get(key, {}).get("gecko", {})
        if gecko.get("id"):
            return str(gecko["id"])
    raise ThunderbirdSetupError(f"{manifest_path} declares no browser_specific_settings.gecko.id")


def install_addon(profile: Path, extension_dir: Path) -> str:
    """Install an unpacked add-on in the profile with a proxy file (its content: the folder's absolute path).

    Thunderbird picks it up at the next start (``extensions.startupScanScopes``) and enables it without
    asking (``extensions.autoDisableScopes`` 0); unsigned is fine (``xpinstall.signatures.required``).
    """
    source = Path(extension_dir).resolve()
    ident = addon_id(source)
    extensions = profile / "extensions"
    extensions.mkdir(exist_ok=True)
    (extensions / ident).write_text(str(source), encoding="utf-8")
    return ident


def uninstall_addon(profile: Path, ident: str) -> None:
    (profile / "extensions" / ident).unlink(missing_ok=True)


_PRIMER_MANIFEST = {
    "manifest_version": 2,
    "name": "sidep-helper test primer",
    "version": "1.0",
    "browser_specific_settings": {"gecko": {"id": PRIMER_ID, "strict_min_version": f"{MIN_MAJOR}.0"}},
    "background": {"scripts": ["background.js"]},
    "experiment_apis": {
        "primer": {
            "schema": "schema.json",
            "parent": {"scopes": ["addon_parent"], "paths": [["primer"]], "script": "implementation.js"},
        }
    },
}
_PRIMER_SCHEMA = [{"namespace": "primer", "functions": [
    {"name": "run", "type": "function", "async": True, "parameters": [{"name": "logins", "type": "array", "items": {"type": "object", "additionalProperties": True}}]},
]}]
_PRIMER_BACKGROUND = """\
fetch(browser.runtime.getURL("logins.json"))
  .then(r => r.json())
  .then(logins => browser.primer.run(logins))
  .catch(e => console.error("sidep-test-primer: " + e));
"""
# Parent-process code: waits for the accounts, reparses every local folder (the .msf summaries),
# stores the passwords of test accounts, writes a report in the profile and quits cleanly.
_PRIMER_IMPLEMENTATION = """\
/* global ExtensionCommon, ChromeUtils, Components, Ci, Cr, Cc, Services, IOUtils, PathUtils */
"use strict";
var primer = class extends ExtensionCommon.ExtensionAPI {
  getAPI() {
    const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
    const { setTimeout } = ChromeUtils.importESModule("resource://gre/modules/Timer.sys.mjs");
    const sleep = ms => new Promise(r => setTimeout(r, ms));
    const reparse = folder => new Promise((resolve, reject) => {
      const listener = {
        QueryInterface: ChromeUtils.generateQI(["nsIUrlListener"]),
        OnStartRunningUrl() {},
        OnStopRunningUrl(url, status) {
          if (Components.isSuccessCode(status)) resolve(); else reject(new Error(`${folder.URI}: ${status}`));
        },
      };
      try {
        folder.QueryInterface(Ci.nsIMsgLocalMailFolder).getDatabaseWithReparse(listener, null);
        resolve();
      } catch (e) {
        if (e.result !== Cr.NS_ERROR_NOT_INITIALIZED) reject(e);  // else: reparse started, listener called
      }
    });
    return {
      primer: {
        async run(logins) {
          const report = { folders: {}, logins: 0, errors: [] };
          try {
            for (let i = 0; i < 200 && !MailServices.accounts.accounts.length; i++) await sleep(100);
            for (const login of logins) {
              const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
              info.init(login.origin, null, login.realm, login.user, login.password, "", "");
              await Services.logins.addLoginAsync(info);
              report.logins++;
            }
            for (const server of MailServices.accounts.allServers) {
              if (server.type !== "none" && server.type !== "pop3") continue;
              // subFolders (not descendants) makes a local folder scan its directory for new mbox files
              const walk = folder => folder.subFolders.flatMap(sub => [sub, ...walk(sub)]);
              for (const folder of walk(server.rootFolder)) {
                await reparse(folder);
                folder.msgDatabase.commit(Ci.nsMsgDBCommitType.kLargeCommit);
                const path = folder.URI.replace(/^[^/]*\\/\\/[^/]*\\//, "");
                report.folders[decodeURIComponent(path)] = folder.getTotalMessages(false);
              }
            }
          } catch (e) {
            report.errors.push(String(e));
          }
          await IOUtils.writeJSON(PathUtils.join(PathUtils.profileDir, "%(result)s"), report);
          Services.startup.quit(Ci.nsIAppStartup.eForceQuit);
        },
      },
    };
  }
};
""".replace("%(result)s", PRIMER_RESULT)


def _write_primer(directory: Path, logins: Sequence[Mapping[str, str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(_PRIMER_MANIFEST, indent=1), encoding="utf-8")
    (directory / "schema.json").write_text(json.dumps(_PRIMER_SCHEMA), encoding="utf-8")
    (directory / "background.js").write_text(_PRIMER_BACKGROUND, encoding="utf-8")
    (directory / "implementation.js").write_text(_PRIMER_IMPLEMENTATION, encoding="utf-8")
    (directory / "logins.json").write_text(json.dumps(list(logins)), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------------------------
def _folder_path(local_folders: Path, name: str) -> Path:
    """'Inbox' -> Local Folders/Inbox; 'Archives/2021' -> Local Folders/Archives.sbd/2021."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ThunderbirdSetupError(f"bad folder name {name!r}")
    path = local_folders
    for parent in parts[:-1]:
        if not (path / parent).exists():
            (path / parent).parent.mkdir(parents=True, exist_ok=True)
            (path / parent).write_bytes(b"")  # a parent folder is an mbox file too, next to its .sbd
        path = path / f"{parent}.sbd"
    return path / parts[-1]


def make_profile(
    tmp: Path,
    *,
    extension_dir: Path | None = None,
    local_mbox_messages: list[bytes] | None = None,
    imap: dict[str, Any] | None = None,
    local_folders: Mapping[str, list[bytes]] | None = None,
    managed_settings: Mapping[str, Mapping[str, Any]] | None = None,
    policies: Mapping[str, Any] | None = None,
    extra_prefs: Mapping[str, bool | int | str] | None = None,
    prime: bool = True,
    timeout: float = 90,
) -> Path:
    """A ready-to-run profile in ``tmp/thunderbird-profile``; returns its path.

    ``local_mbox_messages`` go to Local Folders/Inbox, ``local_folders`` maps other folder names
    ('Certificats', 'Archives/2021') to their messages. ``imap``: ``{"port", "user", "password"[, "host",
    "email"]}`` of a loopback server (plain login). ``managed_settings`` (add-on id → values) and
    ``policies`` become the ``policies.json`` that ``run_thunderbird`` puts in its private install.
    When there are messages or an IMAP password, Thunderbird is run once (``prime``) to build the folder
    summaries and store the password, then ``extension_dir`` is installed (never present during that run).
    """
    ensure_thunderbird()
    tmp = Path(tmp).resolve()
    profile = tmp / "thunderbird-profile"
    if profile.exists():
        raise ThunderbirdSetupError(f"{profile} already exists")
    profile.mkdir(parents=True)
    for d in ("home", "tmp"):
        (tmp / f"thunderbird-{d}").mkdir(exist_ok=True)

    imap_prefs = _imap_prefs(imap) if imap else {}  # validated now, written after the primer run
    (profile / "prefs.js").write_text(
        "// Written by tests/thunderbird.py: the accounts (Thunderbird rewrites this file).\n"
        + "".join(_pref_line(k, v) for k, v in _local_folders_prefs().items()),
        encoding="utf-8",
    )
    (profile / "user.js").write_text(
        "// Written by tests/thunderbird.py: re-applied at each start.\n"
        + "".join(_pref_line(k, v) for k, v in {**LOCKDOWN_PREFS, **(extra_prefs or {})}.items()),
        encoding="utf-8",
    )

    folders: dict[str, list[bytes]] = {"Inbox": list(local_mbox_messages or [])}
    for name, messages in (local_folders or {}).items():
        folders.setdefault(name.strip("/"), []).extend(messages)
    mail_root = profile / "Mail" / "Local Folders"
    mail_root.mkdir(parents=True)
    for name, messages in folders.items():
        path = _folder_path(mail_root, name)
        mailgen.write_mbox(path, messages)
        # write_mbox leaves an empty .msf (as on disk next to a Thunderbird mbox); Thunderbird must build it
        path.with_name(path.name + ".msf").unlink(missing_ok=True)

    logins = []
    if imap and imap.get("password"):
        host = str(imap.get("host", "127.0.0.1"))
        logins.append({"origin": f"imap://{host}", "realm": f"imap://{host}", "user": str(imap["user"]),
                       "password": str(imap["password"])})
    meta = {
        "home": str(tmp / "thunderbird-home"),
        "tmp": str(tmp / "thunderbird-tmp"),
        "install": str(tmp / "thunderbird-install"),
        "policies": policies_document(managed_settings, policies) if (managed_settings or policies) else None,
        "folders": {name: len(messages) for name, messages in folders.items()},
    }
    (profile / HARNESS_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    if prime and (any(folders.values()) or logins):
        _prime(profile, tmp / "thunderbird-primer", logins, meta["folders"], timeout)
    if imap_prefs:
        # added after the primer run, so that the first connection to the server (and the first
        # onNewMailReceived) happens in the run under test, with the password already stored
        with open(profile / "prefs.js", "a", encoding="utf-8") as fh:
            fh.write("".join(_pref_line(k, v) for k, v in imap_prefs.items()))
    if extension_dir is not None:
        install_addon(profile, Path(extension_dir))
    return profile


def _prime(profile: Path, primer_dir: Path, logins: list[dict[str, str]], expected: Mapping[str, int],
           timeout: float) -> None:
    _write_primer(primer_dir, logins)
    install_addon(profile, primer_dir)
    result = profile / PRIMER_RESULT
    result.unlink(missing_ok=True)
    tb = run_thunderbird(profile, timeout=timeout, wait_ready=False)
    try:
        code = tb.wait_exit(timeout)
    finally:
        tb.stop()
        uninstall_addon(profile, PRIMER_ID)
    if not result.exists():
        raise ThunderbirdSetupError(
            f"the primer run (exit {code}) did not report; Thunderbird said:\n{tb.output()[-4000:]}"
        )
    report = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    if report["errors"]:
        raise ThunderbirdSetupError(f"priming the profile failed: {report['errors']}\n{tb.output()[-4000:]}")
    counts = report["folders"]
    wrong = {name: (n, counts.get(name)) for name, n in expected.items() if counts.get(name) != n}
    if wrong:
        raise ThunderbirdSetupError(
            f"Thunderbird did not see the messages written to Local Folders ({{folder: (written, seen)}}): "
            f"{wrong}\nall folders: {counts}"
        )
    if report["logins"] != len(logins):
        raise ThunderbirdSetupError(f"stored {report['logins']} of {len(logins)} passwords")


# --------------------------------------------------------------------------------------------------------------
# Process
# --------------------------------------------------------------------------------------------------------------
_CONSOLE = re.compile(r"^console\.(log|info|warn|error|debug|trace): (.*)$")
# error lines worth a test's attention; benign headless noise is filtered by ``errors()``
_ERROR_LINE = re.compile(
    r"JavaScript error|console\.error|Extension error|\bError\b.*\bmanifest\b|Reading manifest|"
    r"Assertion failure|Crash Annotation|SIGSEGV|Hit MOZ_CRASH|Sandbox: .*denied|Enterprise Policies.*(error|failed)",
    re.IGNORECASE,
)
BENIGN_ERRORS = (
    "SharedDataMap: in shutdown",  # Nimbus, when quitting right after start
    "RenderCompositorSWGL failed mapping default framebuffer",  # headless software rendering
    "Polling for changes failed",  # remote settings, network locked down
    "failed to cleanup Glean crash pings",  # Debian ships no crashreporter binary
    "getActivePolicies().filter is not a function",  # ServiceRequest.sys.mjs, whenever policies are set
)


@dataclass
class ThunderbirdProcess:
    """A running Thunderbird. Its stdout and stderr (console included) go to ``log_path``."""

    proc: subprocess.Popen[bytes]
    profile: Path
    log_path: Path
    binary: Path
    started: float = field(default_factory=time.monotonic)
    _watchdog: threading.Timer | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def console(self, prefix: str = "") -> list[str]:
        """Messages of ``console.*`` calls (chrome and add-ons), decoded; only those starting with ``prefix``."""
        out = []
        for line in self.output().splitlines():
            match = _CONSOLE.match(line)
            if not match:
                continue
            text = match.group(2)
            if text.startswith('"'):
                with contextlib.suppress(ValueError):
                    text, end = json.JSONDecoder().raw_decode(text)
                    text = str(text) + match.group(2)[end:]
            if text.startswith(prefix):
                out.append(text)
        return out

    def errors(self, allow: Sequence[str] = BENIGN_ERRORS) -> list[str]:
        return [line for line in self.output().splitlines()
                if _ERROR_LINE.search(line) and not any(a in line for a in allow)]

    def wait_console(self, prefix: str, timeout: float = 30) -> str:
        """The first console message starting with ``prefix``; AssertionError after ``timeout`` s or on exit."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.console(prefix)
            if found:
                return found[0]
            if not self.alive():
                raise AssertionError(f"Thunderbird exited ({self.proc.returncode}) before logging {prefix!r}:\n"
                                     f"{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no console message {prefix!r} after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait for the startup checkpoint 'sessionstore-windows-restored' (main window up); seconds since start."""
        checkpoints = self.profile / "sessionCheckpoints.json"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(checkpoints.read_text()).get("sessionstore-windows-restored"):
                    return time.monotonic() - self.started
            if not self.alive():
                raise ThunderbirdSetupError(f"Thunderbird exited ({self.proc.returncode}) during startup:\n"
                                            f"{self.tail()}")
            if time.monotonic() > deadline:
                raise ThunderbirdSetupError(f"Thunderbird not started after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def addons(self) -> dict[str, dict[str, Any]]:
        """The add-on database (``extensions.json``) by id: active, userDisabled, appDisabled, location…"""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.profile / "extensions.json").read_text(encoding="utf-8"))
            return {a["id"]: a for a in data.get("addons", [])}
        return {}

    def wait_addon_active(self, ident: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            addon = self.addons().get(ident)
            if addon and addon.get("active"):
                return addon
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"add-on {ident} not active (record: {addon}):\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 60) -> str:
        """The end of the output, without the GTK noise of headless mode."""
        kept = [line for line in self.output().splitlines()
                if line.strip() and "Gtk-CRITICAL" not in line and "gtk_icon_theme" not in line]
        return "\n".join(kept[-lines:])

    def stop(self, grace: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` s; the whole process group (content processes) goes too."""
        if self._watchdog:
            self._watchdog.cancel()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group, or a hung parent
        return self.proc.wait(30)

    def __enter__(self) -> ThunderbirdProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _foreign_system_policies() -> bool:
    return SYSTEM_POLICIES.exists() and SYSTEM_POLICIES not in _SYSTEM_POLICIES_OWNED


def run_thunderbird(profile: Path, *, timeout: float, wait_ready: bool = True, args: Sequence[str] = (),
                    display: str | None = None) -> ThunderbirdProcess:
    """Start ``thunderbird --headless --profile PROFILE --no-remote``; killed after ``timeout`` s at most.

    The policies kept in the profile by ``make_profile`` go into a private install's ``distribution/``.
    With ``wait_ready``, returns once the main window is up (add-ons start at about the same moment).
    ``display`` (an X display such as Xvfb's ``":99"``) runs it with a real window instead of headless.
    """
    ensure_thunderbird()
    profile = Path(profile).resolve()
    try:
        meta = json.loads((profile / HARNESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ThunderbirdSetupError(f"{profile} was not made by make_profile(): {exc}") from exc
    # policies are read during startup: no other process may write the machine-wide file meanwhile
    with contextlib.ExitStack() as startup:
        if SYSTEM_POLICIES not in _SYSTEM_POLICIES_OWNED:
            startup.enter_context(_locked(POLICIES_LOCK_FILE, fcntl.LOCK_SH))
        if _foreign_system_policies():
            raise ThunderbirdSetupError(
                f"{SYSTEM_POLICIES} exists and would override the test's policies: move it away to run the tests"
            )
        return _start(profile, meta, timeout=timeout, wait_ready=wait_ready, args=args, display=display)


def _start(profile: Path, meta: dict[str, Any], *, timeout: float, wait_ready: bool, args: Sequence[str],
           display: str | None) -> ThunderbirdProcess:
    binary = _private_install(Path(meta["install"]), meta.get("policies"))
    home, tmpdir = Path(meta["home"]), Path(meta["tmp"])
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "MOZ_LOG", "XAUTHORITY")}
    env.update(
        HOME=str(home), TMPDIR=str(tmpdir), XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
        XDG_RUNTIME_DIR=str(tmpdir), MOZ_CRASHREPORTER_DISABLE="1", MOZ_DISABLE_AUTO_SAFE_MODE="1",
        MOZ_NO_REMOTE="1",
    )
    if display:
        env["DISPLAY"] = display
    else:
        env["MOZ_HEADLESS"] = "1"
    (profile / "sessionCheckpoints.json").unlink(missing_ok=True)
    log_path = profile.parent / f"thunderbird-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), *([] if display else ["--headless"]), "--profile", str(profile), "--no-remote", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmpdir),
            start_new_session=True,
        )
    tb = ThunderbirdProcess(proc=proc, profile=profile, log_path=log_path, binary=binary)
    tb._watchdog = threading.Timer(timeout, tb.stop)
    tb._watchdog.daemon = True
    tb._watchdog.start()
    if wait_ready:
        try:
            tb.wait_ready(min(timeout, 60))
        except BaseException:
            tb.stop()
            raise
    return tb


def main() -> int:
    started = time.monotonic()
    try:
        binary = ensure_thunderbird()
    except ThunderbirdSetupError as exc:
        print(f"Thunderbird: {exc}", file=sys.stderr)
        return 1
    print(f"Thunderbird {thunderbird_version()} ready: {binary} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
