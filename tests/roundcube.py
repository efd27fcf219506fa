"""A real Roundcube webmail on a real Dovecot IMAP server, for browser end-to-end tests of the extension.

``ensure_roundcube()`` brings the machine to this state, doing only what is missing (so it is cheap to
call again, from every test session):

1. the Debian packages ``dovecot-imapd roundcube-core roundcube-sqlite3`` and the PHP pieces Roundcube
   needs are installed (``apt-get``, as root, Debian prompts pre-answered: no dbconfig, no web server —
   ``php-cgi`` is named first so that the ``php`` dependency does not pull Apache in);
2. a private Dovecot (tests/dovecot.py's ``Dovecot``, ``pki=None``) listens on ``127.0.0.1:<free port>``,
   plain IMAP (``ssl = no``, ``disable_plaintext_auth = no``: test only), with one user from a
   passwd-file whose Maildir lives in the temporary folder and belongs to the system user ``mail``, and
   the special-use folders (Drafts, Sent, Junk, Trash) Roundcube expects;
3. Roundcube 1.6 (Debian's ``/var/lib/roundcube/public_html``) is served by PHP's built-in server on
   ``127.0.0.1:<free port>`` with a configuration of our own: ``ROUNDCUBE_CONFIG_DIR`` points Roundcube at
   a private folder holding our ``config.inc.php`` (SQLite database initialised from Roundcube's
   ``SQL/sqlite.initial.sql``, logs and temp files in the same temporary folder) and Debian's
   ``defaults.inc.php``; nothing under ``/etc/roundcube`` is read or changed.

Mail is put into the mailbox with ``Webmail.deliver(raw)`` (IMAP APPEND: Dovecot stores the bytes as
given and the UID is known at once). ``Webmail.login(page)`` and ``Webmail.open_message(page, …)``
drive a Playwright page through Roundcube's elastic skin. ``Webmail.serve_https(host…)`` adds a TLS
front (self-signed, loopback) so that a content script matching ``https://<webmail host>/*`` runs on
it: Chromium is then started with ``chromium_host_rules(hosts)``, which resolves those names to
127.0.0.1. ``ensure_chromium()`` (Debian's ``chromium``) and ``ensure_playwright()`` (the Python
package, with pip; ``playwright install`` is never run) prepare the browser side.

The servers are children of the test process: ``Webmail.stop()`` (called by the test fixtures, and at
exit in any case) stops them and removes the temporary folder. ``ensure_roundcube()`` returns the same
running instance to every caller of one process.

Standard library only, so that ``python3 tests/roundcube.py`` works before any virtual environment
exists: it installs what is missing and starts the webmail (``--install`` only installs). Anything that
cannot be done raises ``RoundcubeSetupError`` with what was tried.
"""

from __future__ import annotations

import atexit
import contextlib
import imaplib
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dovecot import DOVECOT, Dovecot, DovecotError, free_port, quote_mailbox
from syslock import file_lock

# php-cgi first: it satisfies "php" (libapache2-mod-php | php-fpm | php-cgi) without Apache
PACKAGES = (
    "php-cgi", "php-cli", "php-sqlite3", "php-intl", "php-mbstring", "php-xml",
    "dovecot-imapd", "roundcube-core", "roundcube-sqlite3", "openssl",
)
BROWSER_PACKAGES = ("chromium",)
DEBCONF = (
    "roundcube-core roundcube/dbconfig-install boolean false",
    "roundcube-core roundcube/reconfigure-webserver multiselect ",
    "roundcube-core roundcube/restart-webserver boolean false",
)
DOVECOT_IMAP = Path("/usr/lib/dovecot/imap")
ROUNDCUBE_ROOT = Path("/var/lib/roundcube")  # INSTALL_PATH of Debian's Roundcube
DOCROOT = ROUNDCUBE_ROOT / "public_html"
ROUNDCUBE_SHARE = Path("/usr/share/roundcube")
ROUNDCUBE_DEFAULTS = Path("/etc/roundcube/defaults.inc.php")
SQLITE_SCHEMA = ROUNDCUBE_SHARE / "SQL" / "sqlite.initial.sql"
PHP_MODULES = ("dom", "intl", "mbstring", "pdo_sqlite", "json", "session", "fileinfo")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
)
LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-roundcube.lock"
USER = "secretaire@labo.mssante.fr"
TIMEOUT = 30


class RoundcubeSetupError(RuntimeError):
    """The webmail test environment could not be set up; the message says what went wrong."""


# ----------------------------------------------------------------------------------------------------
# Installation
# ----------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return env


def machine_lock() -> contextlib.AbstractContextManager[None]:
    """Serialises the installation across processes (several test sessions may start at once)."""
    return file_lock(LOCK_FILE)


def _php_modules() -> set[str]:
    php = shutil.which("php", path=_env()["PATH"])
    if not php:
        return set()
    proc = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=TIMEOUT, check=False,
                          stdin=subprocess.DEVNULL)
    return {line.strip().lower() for line in proc.stdout.splitlines()}


def _missing() -> list[str]:
    """What of the webmail stack is not on the machine (empty: everything is there)."""
    missing = [str(p) for p in (DOVECOT, DOVECOT_IMAP, DOCROOT / "index.php", ROUNDCUBE_DEFAULTS, SQLITE_SCHEMA)
               if not p.exists()]
    if not shutil.which("openssl", path=_env()["PATH"]):
        missing.append("openssl")
    modules = _php_modules()
    if not modules:
        missing.append("php")
    else:
        missing += [f"php module {m}" for m in PHP_MODULES if m not in modules]
    return missing


def _apt_install(packages: tuple[str, ...], what: str) -> None:
    if not (os.geteuid() == 0 and shutil.which("apt-get")):
        raise RoundcubeSetupError(
            f"{what} is not installed and cannot be installed here (needs root and apt-get): "
            f"install {' '.join(packages)}"
        )
    env = _env() | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["debconf-set-selections"], input="\n".join(DEBCONF) + "\n", capture_output=True, text=True,
                   env=env, timeout=TIMEOUT, check=False)
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *packages]
    updated = False
    deadline = time.monotonic() + 900
    while True:
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode == 0:
            return
        if "Could not get lock" in proc.stderr and time.monotonic() < deadline:
            time.sleep(5)  # another apt-get holds the archives or lists lock (not covered by DPkg::Lock)
            continue
        if updated:
            raise RoundcubeSetupError(
                f"apt-get install {' '.join(packages)} failed:\n{proc.stdout[-3000:]}{proc.stderr}"
            )
        # package lists may be missing or stale on a fresh machine
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], capture_output=True, text=True,
                       env=env, timeout=600, check=False, stdin=subprocess.DEVNULL)
        updated = True


def install_packages() -> None:
    """Install Dovecot, Roundcube and PHP if anything is missing (a few ms when all is there)."""
    if not _missing():
        return
    with machine_lock():
        if _missing():
            _apt_install(PACKAGES, "Roundcube/Dovecot")
        still = _missing()
        if still:
            raise RoundcubeSetupError(f"after apt-get install, still missing: {', '.join(still)}")


def ensure_chromium() -> Path:
    """Debian's Chromium (never a browser downloaded by Playwright), installed if missing."""
    if not CHROMIUM.exists():
        with machine_lock():
            if not CHROMIUM.exists():
                _apt_install(BROWSER_PACKAGES, "Chromium")
    if not CHROMIUM.exists():
        raise RoundcubeSetupError(f"{CHROMIUM} missing after apt-get install chromium")
    return CHROMIUM


def ensure_playwright() -> None:
    """The Python ``playwright`` package in the running interpreter (pip, if missing).

    Only the package (its wheel ships the driver); ``playwright install`` is never run: the browser is
    Debian's Chromium (``ensure_chromium()``).
    """
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        with machine_lock():
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "playwright"],
                capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
            )
        if proc.returncode != 0:
            raise RoundcubeSetupError(f"pip install playwright failed:\n{proc.stdout}{proc.stderr}") from None
        import importlib

        importlib.invalidate_caches()
        import playwright.sync_api  # noqa: F401


# ----------------------------------------------------------------------------------------------------
# Configuration files
# ----------------------------------------------------------------------------------------------------
ROUNDCUBE_CONF = """\
<?php
// private test configuration (tests/roundcube.py); Debian's defaults.inc.php is read first
$config = [];
$config['db_dsnw'] = 'sqlite:///{db}?mode=0640';
$config['imap_host'] = '127.0.0.1:{imap_port}';
$config['smtp_host'] = '';
$config['des_key'] = '{des_key}';
$config['skin'] = 'elastic';
$config['language'] = '{language}';
$config['enable_installer'] = false;
$config['login_autocomplete'] = 2;
$config['plugins'] = [];
$config['product_name'] = 'Roundcube Webmail';
$config['support_url'] = '';
$config['enable_spellcheck'] = false;
$config['log_driver'] = 'file';
$config['log_dir'] = '{root}/logs/';
$config['temp_dir'] = '{root}/roundcube-temp/';
$config['ip_check'] = false;
$config['login_rate_limit'] = 0;
$config['mime_types'] = '/etc/roundcube/mimetypes.php';
$config['imap_cache'] = null;
$config['messages_cache'] = false;
$config['draft_autosave'] = 0;
"""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------
# TLS front (the extension's content scripts match https:// webmail hosts only)
# ----------------------------------------------------------------------------------------------------
def _self_signed(directory: Path, hosts: tuple[str, ...] | list[str]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = ",".join([*(f"DNS:{h}" for h in hosts), "IP:127.0.0.1"])
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={san}"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RoundcubeSetupError(f"openssl could not make a test certificate: {proc.stderr}")
    return cert, key


class _TlsFront:
    """TLS on 127.0.0.1:<port> → plain HTTP to PHP's server (an asyncio loop in a daemon thread)."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        import asyncio
        import ssl

        self._asyncio = asyncio
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="webmail-tls", daemon=True)

    async def _pipe(self, reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: Any, writer: Any) -> None:
        try:
            b_reader, b_writer = await self._asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            return
        await self._asyncio.gather(self._pipe(reader, b_writer), self._pipe(b_reader, writer))

    async def _start(self) -> None:
        self._server = await self._asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    def start_serving(self) -> None:
        self._thread.start()
        self._asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def chromium_host_rules(hosts: tuple[str, ...] | list[str]) -> str:
    """Chromium switch resolving ``hosts`` to 127.0.0.1 (and nothing else: no request leaves the machine)."""
    return "--host-resolver-rules=" + ", ".join(f"MAP {h} 127.0.0.1" for h in hosts)


# ----------------------------------------------------------------------------------------------------
# The running webmail
# ----------------------------------------------------------------------------------------------------
@dataclass
class Webmail:
    """A running Dovecot + Roundcube pair with one mailbox user."""

    root: Path
    imap_port: int
    http_port: int
    user: str
    password: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    https_port: int | None = None
    https_hosts: tuple[str, ...] = ()
    _front: _TlsFront | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """The login page (Roundcube's root)."""
        return f"http://127.0.0.1:{self.http_port}/"

    def serve_https(self, *hosts: str) -> int:
        """Also serve Roundcube over TLS on ``127.0.0.1:<https_port>`` (self-signed for ``hosts``).

        For an extension whose content script matches ``https://<webmail host>/*``: the browser is
        started with ``chromium_host_rules(hosts)`` (the host names resolve to 127.0.0.1) and
        ``ignore_https_errors``, and opens ``https_url(host)``. Returns the port (idempotent).
        """
        if self._front is not None:
            return self._front.port
        hosts = hosts or ("webmail.labo.test",)
        cert, key = _self_signed(self.root / "tls", hosts)
        self._front = _TlsFront(self.http_port, cert, key)
        self._front.start_serving()
        self.https_port, self.https_hosts = self._front.port, tuple(hosts)
        return self._front.port

    def https_url(self, host: str | None = None) -> str:
        """The login page through the TLS front, under a host name given to ``serve_https``."""
        if self.https_port is None:
            raise RuntimeError("call serve_https() first")
        return f"https://{host or self.https_hosts[0]}:{self.https_port}/"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user / "Maildir"

    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    # -- IMAP ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def imap(self) -> Iterator[imaplib.IMAP4]:
        """An authenticated ``imaplib`` connection to the test mailbox."""
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=TIMEOUT)
        try:
            conn.login(self.user, self.password)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def deliver(self, raw: bytes, folder: str = "INBOX", seen: bool = False) -> int:
        """Put ``raw`` into ``folder`` (created if missing) with IMAP APPEND; returns its UID.

        Dovecot keeps the bytes as given (it serves them with CRLF line ends over IMAP).
        """
        with self._lock, self.imap() as conn:
            if folder.upper() != "INBOX":
                status, _ = conn.select(quote_mailbox(folder), readonly=True)
                if status != "OK":
                    conn.create(quote_mailbox(folder))
                    conn.subscribe(quote_mailbox(folder))
            status, data = conn.append(quote_mailbox(folder), r"(\Seen)" if seen else "", None, raw)
            if status != "OK":
                raise AssertionError(f"APPEND to {folder} failed: {status} {data}")
            match = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(d for d in data if isinstance(d, bytes)))
            if not match:
                raise AssertionError(f"no APPENDUID in {data!r}")
            return int(match.group(1))

    def fetch(self, uid: int, folder: str = "INBOX") -> bytes:
        """The message as Dovecot serves it (``BODY.PEEK[]``)."""
        with self.imap() as conn:
            conn.select(quote_mailbox(folder), readonly=True)
            status, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
            parts = [d for d in data if isinstance(d, tuple)]
            if status != "OK" or not parts:
                raise AssertionError(f"UID FETCH {uid} in {folder}: {status} {data!r}")
            return parts[0][1]

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.imap() as conn:
            conn.select(quote_mailbox(folder), readonly=True)
            status, data = conn.uid("SEARCH", None, "ALL")
            return [int(x) for x in data[0].split()] if status == "OK" and data and data[0] else []

    def clear(self, folder: str = "INBOX") -> None:
        """Remove every message of ``folder`` (expunged: Roundcube shows an empty list after a refresh)."""
        with self._lock, self.imap() as conn:
            if conn.select(quote_mailbox(folder))[0] != "OK":
                return
            conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            conn.expunge()

    # -- browser (Playwright sync API, duck-typed: no import here) -------------------------------------
    def login(self, page: Any, url: str | None = None, timeout: float = 30_000) -> None:
        """Log in on the Roundcube login form (``url``: default ``self.url``), wait for the message list.

        A context that already has a session lands on the mailbox directly: nothing to fill then.
        """
        page.goto(url or self.url, wait_until="domcontentloaded", timeout=timeout)
        first = page.wait_for_selector("#rcmloginuser, #messagelist", state="attached", timeout=timeout)
        if first.get_attribute("id") == "messagelist":  # this browser context is already logged in
            wait_for_list(page, timeout)
            return
        page.fill("#rcmloginuser", self.user, timeout=timeout)
        page.fill("#rcmloginpwd", self.password, timeout=timeout)
        page.click("#rcmloginsubmit", timeout=timeout)
        page.wait_for_url(re.compile(r"[?&]_task=mail"), timeout=timeout)
        wait_for_list(page, timeout)

    def open_message(self, page: Any, subject_contains: str, mode: str = "show", timeout: float = 30_000) -> Any:
        """Open the message whose subject contains ``subject_contains`` from the message list.

        ``mode="show"``: double-click → full page ``?_task=mail&_action=show&_uid=…&_mbox=…``; returns
        ``page``. ``mode="preview"``: single click → preview pane, the iframe ``#messagecontframe``
        loads ``?_task=mail&_action=preview&_uid=…&_mbox=…&_framed=1``; returns that frame. In both cases
        it returns once ``#message-header h2.subject`` shows the subject.
        """
        wait_for_list(page, timeout)
        row = page.locator("#messagelist tbody tr.message").filter(
            has=page.locator("span.subject", has_text=subject_contains)
        ).first
        deadline = time.monotonic() + timeout / 1000
        while row.count() == 0:  # delivered after the list was drawn: reload the list
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with {subject_contains!r} in the list")
            page.evaluate("() => rcmail.list_mailbox(rcmail.env.mailbox, rcmail.env.current_page || 1)")
            page.wait_for_timeout(1000)
        row.wait_for(state="visible", timeout=timeout)
        if mode == "show":
            row.dblclick(timeout=timeout)
            page.wait_for_url(re.compile(r"_action=show"), timeout=timeout)
            target = page
        elif mode == "preview":
            row.click(timeout=timeout)
            handle = page.wait_for_selector("#messagecontframe", state="attached", timeout=timeout)
            deadline = time.monotonic() + timeout / 1000
            while True:
                target = handle.content_frame()
                if target is not None and "_action=preview" in target.url:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"preview frame did not load (url {target.url if target else None})")
                time.sleep(0.05)
        else:
            raise ValueError(f"mode must be 'show' or 'preview', not {mode!r}")
        target.locator("#message-header h2.subject", has_text=subject_contains).wait_for(
            state="visible", timeout=timeout
        )
        return target

    def viewsource_url(self, uid: int, folder: str = "INBOX", save: bool = False) -> str:
        """Roundcube's own source URL of a message (``_save=1`` needs the session's request token)."""
        query = urllib.parse.urlencode({"_task": "mail", "_action": "viewsource", "_uid": uid, "_mbox": folder})
        return f"{self.url}?{query}" + ("&_save=1" if save else "")

    # -- lifecycle -------------------------------------------------------------------------------------
    def diagnostics(self) -> str:
        parts = [f"webmail {self.url} imap 127.0.0.1:{self.imap_port} root {self.root}"]
        for log in sorted((self.root / "logs").glob("*")):
            parts.append(f"--- {log.name} (end)\n{_tail(log)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop Dovecot and PHP, remove the temporary folder (idempotent)."""
        global _current
        if self._front is not None:
            self._front.stop()
            self._front = None
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        if _current is self:
            _current = None


def wait_for_list(page: Any, timeout: float = 30_000) -> None:
    """Wait until Roundcube's message list has been filled (rows present, or the list is empty)."""
    page.wait_for_selector("#messagelist", state="attached", timeout=timeout)
    page.wait_for_function(
        "() => window.rcmail && rcmail.message_list && !rcmail.busy"
        " && (rcmail.message_list.rowcount > 0 || rcmail.env.messagecount === 0)",
        timeout=timeout,
    )


_current: Webmail | None = None
_start_lock = threading.Lock()


def _start_dovecot(wm: Webmail) -> None:
    """tests/dovecot.py's server in the webmail's folder: plain IMAP, the user's password, Roundcube's folders."""
    server = Dovecot(root=wm.root, pki=None, client_cert=False, user=wm.user, password=wm.password,
                     port=wm.imap_port, special_folders=True)
    server.write_config()
    try:
        server.start()
    except DovecotError as exc:
        raise RoundcubeSetupError(f"{exc}\n{wm.diagnostics()}") from exc
    finally:
        if server.proc is not None:
            wm.procs.append(server.proc)


def _start_roundcube(wm: Webmail, language: str) -> None:
    root = wm.root
    confdir = root / "roundcube-config"
    confdir.mkdir()
    (root / "roundcube-temp").mkdir()
    (confdir / "defaults.inc.php").symlink_to(ROUNDCUBE_DEFAULTS)
    db = root / "roundcube.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(SQLITE_SCHEMA.read_text())
    (confdir / "config.inc.php").write_text(ROUNDCUBE_CONF.format(
        db=db, imap_port=wm.imap_port, des_key=secrets.token_urlsafe(18)[:24], root=root, language=language,
    ))
    env = _env() | {"ROUNDCUBE_CONFIG_DIR": str(confdir), "PHP_CLI_SERVER_WORKERS": "4"}
    env.pop("RCUBE_CONFIG_PATH", None)
    php = shutil.which("php", path=env["PATH"]) or "php"
    proc = subprocess.Popen(
        [php, "-d", "display_errors=stderr", "-d", "log_errors=0", "-d", "memory_limit=256M", "-d", "opcache.enable_cli=1",
         "-S", f"127.0.0.1:{wm.http_port}", "-t", str(DOCROOT)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(root / "logs" / "php-server.log", "wb"), env=env, cwd=DOCROOT,  # noqa: SIM115
        start_new_session=True,
    )
    wm.procs.append(proc)
    deadline = time.monotonic() + TIMEOUT
    while not _http_ok(wm.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RoundcubeSetupError(f"Roundcube (php -S) did not answer (exit {proc.poll()})\n{wm.diagnostics()}")
        time.sleep(0.05)


def start_webmail(user: str = USER, password: str | None = None, language: str = "fr_FR") -> Webmail:
    """Start a new, independent Dovecot + Roundcube pair (packages must be installed)."""
    if sys.platform != "linux":
        raise RoundcubeSetupError("the webmail test environment is set up on Linux only")
    if os.geteuid() != 0:
        raise RoundcubeSetupError("the webmail test environment needs root (Dovecot hands the mailbox to 'mail')")
    root = Path(tempfile.mkdtemp(prefix="sidep-webmail-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach their sockets and the mailbox through it
    wm = Webmail(root=root, imap_port=free_port(), http_port=free_port(), user=user,
                 password=password or secrets.token_urlsafe(12))
    try:
        _start_dovecot(wm)
        _start_roundcube(wm, language)
    except BaseException:
        wm.stop()
        raise
    return wm


def ensure_roundcube() -> Webmail:
    """Install what is missing, then return the process's running webmail (started on first call)."""
    global _current
    install_packages()
    with _start_lock:
        if _current is not None and _current.running():
            return _current
        if _current is not None:
            _current.stop()
        _current = start_webmail()
        atexit.register(_current.stop)
        return _current


def main() -> int:
    started = time.monotonic()
    try:
        install_packages()
        if "--install" in sys.argv[1:]:
            ensure_chromium()
            print(f"Roundcube/Dovecot/Chromium installed ({time.monotonic() - started:.1f} s)")
            return 0
        wm = ensure_roundcube()
    except RoundcubeSetupError as exc:
        print(f"tests/roundcube.py: {exc}", file=sys.stderr)
        return 1
    print(f"Roundcube {wm.url} (user {wm.user}, password {wm.password}), IMAP 127.0.0.1:{wm.imap_port} "
          f"({time.monotonic() - started:.1f} s); Ctrl+C stops")
    try:
        while wm.running():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        wm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
