"""A private Dovecot IMAP server, for the IMAP source tests (TLS, client certificates) and the webmail tests.

The one Dovecot harness of the suite: tests/roundcube.py starts its webmail's IMAP server with
:class:`Dovecot` too (``pki=None``: plain IMAP on the loopback, user and password, the special-use
folders Roundcube expects).

``start_dovecot(pki)`` does, in a new temporary folder:

1. a test PKI made with ``openssl`` at run time (:func:`make_pki`, ``tests/imappki.py``): a CA, a server certificate for
   127.0.0.1/localhost, a good client certificate (CN = the mailbox user), one issued by another CA and
   one from the right CA that expired in 2020 (``openssl ca`` with explicit start and end dates);
2. ``dovecot -F -c <root>/dovecot.conf`` listening on 127.0.0.1 only: one port for IMAP + STARTTLS and
   one for implicit TLS (IMAPS), TLS 1.2 at least, ``ssl_verify_client_cert = yes``. With
   ``client_cert=True`` the user logs in with the certificate alone (SASL EXTERNAL, or PLAIN with the
   name taken from the certificate: ``auth_ssl_username_from_cert``, ``auth_ssl_require_client_cert``);
   with ``client_cert=False`` by user and password;
3. one user whose Maildir lives in the folder and belongs to the system user ``mail``.

Mail goes in with :meth:`Dovecot.append` (IMAP APPEND over the loopback, as a second client would) or
:meth:`Dovecot.deliver` (``dovecot-lda``, as the MTA would). :meth:`Dovecot.dump` lists every message
of a folder with its flags and a hash of its bytes, to prove the helper changed nothing but keywords.
:meth:`Dovecot.restart` stops and starts the server on the same ports; :meth:`Dovecot.new_uidvalidity`
gives a folder a new UIDVALIDITY (``doveadm mailbox update``). Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imappki import USER, Pki, make_pki
from ports import free_port

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
LDA = Path("/usr/lib/dovecot/dovecot-lda")
MAIL_USER = "mail"
TIMEOUT = 30

CONF = """\
# private test instance (tests/dovecot.py): loopback only
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = sidep-imap-test-{port}
log_path = {root}/logs/dovecot.log
info_log_path = {root}/logs/dovecot.log
{security}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
{nopassword}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
namespace inbox {{
  inbox = yes
  separator = /
{special_folders}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
protocol lda {{
  postmaster_address = postmaster@labo.mssante.fr
}}
"""
TLS = """\
ssl = required
ssl_cert = <{pki}/server.crt
ssl_key = <{pki}/server.key
ssl_ca = <{pki}/ca/ca.crt
ssl_min_protocol = TLSv1.2
ssl_verify_client_cert = yes
ssl_require_crl = no
ssl_cert_username_field = commonName
auth_ssl_username_from_cert = {from_cert}
auth_ssl_require_client_cert = {from_cert}
auth_mechanisms = {mechanisms}
disable_plaintext_auth = yes
auth_verbose = yes"""
PLAIN = """\
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login"""
SPECIAL_FOLDERS = "\n".join(
    f"  mailbox {name} {{\n    special_use = \\{name}\n    auto = subscribe\n  }}"
    for name in ("Drafts", "Sent", "Junk", "Trash")
)

#: ``extra_conf`` of a server whose IMAP sessions do not offer IDLE (clients must poll)
NO_IDLE_CONF = """
protocol imap {
  imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ UIDPLUS MOVE CONDSTORE
}
"""

#: ``extra_conf`` enabling per-folder access rights (``dovecot-acl`` files, see :meth:`Dovecot.restrict`)
ACL_CONF = """
mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins acl imap_acl
}
plugin {
  acl = vfile
}
"""

class DovecotError(RuntimeError):
    pass


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3), as on the wire and in Roundcube's ``_mbox``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    """A folder name as imaplib must send it: modified UTF-7, quoted."""
    return '"' + imap_utf7(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


_mailbox = quote_mailbox


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"* OK")
    except OSError:
        return False


@dataclass
class Dovecot:
    """One private server. ``pki=None``: plain IMAP (no TLS listener), user and password; with
    ``special_folders`` the Drafts/Sent/Junk/Trash folders a webmail expects exist from the start."""

    root: Path
    pki: Pki | None
    client_cert: bool
    user: str = USER
    password: str = "mot-de-passe-de-test"
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    special_folders: bool = False
    proc: subprocess.Popen[bytes] | None = None
    #: appended to dovecot.conf (``imap_capability`` without IDLE, the ACL plugin, ...)
    extra_conf: str = ""

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user / "Maildir"

    def _env(self) -> dict[str, str]:
        return dict(os.environ, LC_ALL="C", PATH=os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin")

    def write_config(self) -> None:
        mail_pw = pwd.getpwnam(MAIL_USER)
        for sub in ("state", "logs", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        home = self.root / "mail" / self.user
        home.mkdir(parents=True, exist_ok=True)
        for path in (self.root / "mail", home):
            os.chown(path, mail_pw.pw_uid, mail_pw.pw_gid)
        passwd = self.root / "passwd"
        secret = "" if self.client_cert else f"{{PLAIN}}{self.password}"
        passwd.write_text(f"{self.user}:{secret}:{mail_pw.pw_uid}:{mail_pw.pw_gid}::{home}::\n")
        passwd.chmod(0o640)
        os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)
        security = PLAIN if self.pki is None else TLS.format(
            pki=self.pki.dir, from_cert="yes" if self.client_cert else "no",
            mechanisms="external plain" if self.client_cert else "plain login")
        self.conf.write_text(CONF.format(
            root=self.root, security=security, port=self.port, tls_port=0 if self.pki is None else self.tls_port,
            uid=mail_pw.pw_uid, gid=mail_pw.pw_gid,
            nopassword="  override_fields = nopassword=y" if self.client_cert else "",
            special_folders=SPECIAL_FOLDERS if self.special_folders else "",
        ) + self.extra_conf)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.root / "logs" / "dovecot.stderr", "ab"), env=self._env(),  # noqa: SIM115
            start_new_session=True,
        )
        deadline = time.monotonic() + TIMEOUT
        while not _greets(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DovecotError(f"dovecot did not start (exit {self.proc.poll()})\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()

    def log(self, lines: int = 40) -> str:
        try:
            text = (self.root / "logs" / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- a second client: what an MTA or another mail program would do --------------------------------
    def client_context(self) -> ssl.SSLContext:
        assert self.pki is not None, "a plain IMAP server: no TLS"
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        if self.client_cert:
            cert, key = self.pki.client("good")
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    @contextlib.contextmanager
    def imap(self) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=self.client_context(), timeout=TIMEOUT)
        try:
            if self.client_cert:
                conn.authenticate("EXTERNAL", lambda _: b"")
            else:
                conn.login(self.user, self.password)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        with self.imap() as conn:
            typ, data = conn.append(_mailbox(folder), "", None, raw)
            if typ != "OK":
                raise DovecotError(f"APPEND refused: {data}")
            text = data[0].decode() if data and data[0] else ""
            # [APPENDUID <uidvalidity> <uid>]
            return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]")) if "APPENDUID" in text else 0

    def append_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        """APPEND each message in turn over one connection, as a mail program moving a batch would (a new
        TLS connection per message costs a handshake each)."""
        with self.imap() as conn:
            for raw in raws:
                typ, data = conn.append(_mailbox(folder), "", None, raw)
                if typ != "OK":
                    raise DovecotError(f"APPEND refused: {data}")

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Local delivery with ``dovecot-lda`` (started as root, it becomes the mailbox owner)."""
        proc = subprocess.run(
            [str(LDA), "-c", str(self.conf), "-d", self.user, "-m", folder], input=raw, capture_output=True,
            timeout=TIMEOUT, check=False, env=self._env(),
        )
        if proc.returncode != 0:
            raise DovecotError(f"dovecot-lda failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")

    def create_folder(self, folder: str) -> None:
        with self.imap() as conn:
            conn.create(_mailbox(folder))

    def dump(self, folder: str = "INBOX") -> dict[int, tuple[tuple[str, ...], str]]:
        """{uid: (flags without \\Recent, sha256 of the message bytes)} read with EXAMINE (changes nothing)."""
        out: dict[int, tuple[tuple[str, ...], str]] = {}
        with self.imap() as conn:
            conn.select(_mailbox(folder), readonly=True)
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                text = head.decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                out[uid] = (tuple(sorted(f for f in flags if f != "\\Recent")), hashlib.sha256(body).hexdigest())
        return out

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        return {uid: set(flags) for uid, (flags, _) in self.dump(folder).items()}

    def store_flags(self, uid: int, flags: str, add: bool = True, folder: str = "INBOX") -> None:
        with self.imap() as conn:
            conn.select(_mailbox(folder))
            conn.uid("STORE", str(uid), "+FLAGS" if add else "-FLAGS", f"({flags})")

    def restrict(self, folder: str, rights: str = "lrs") -> None:
        """The mailbox owner's rights on ``folder`` (server started with ``ACL_CONF``): ``lrs`` is
        read-only but for \\Seen, so its PERMANENTFLAGS is ``(\\Seen)`` — no new keywords."""
        mail = pwd.getpwnam(MAIL_USER)
        acl = self.maildir / f".{folder}" / "dovecot-acl"
        acl.write_text(f"owner {rights}\n")
        os.chown(acl, mail.pw_uid, mail.pw_gid)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.imap() as conn:
            typ, data = conn.status(_mailbox(folder), "(UIDVALIDITY)")
            return int(data[0].decode().split("UIDVALIDITY", 1)[1].strip(" )"))

    def new_uidvalidity(self, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY, as a restored or rebuilt mailbox would have."""
        new = self.uidvalidity(folder) + 1000
        proc = subprocess.run(
            [str(DOVEADM), "-c", str(self.conf), "mailbox", "update", "-u", self.user, "--uid-validity", str(new),
             folder], capture_output=True, text=True, timeout=TIMEOUT, check=False, env=self._env(),
        )
        if proc.returncode != 0:
            raise DovecotError(f"doveadm mailbox update failed: {proc.stderr}")
        return new


def start_dovecot(pki: Pki | None = None, *, client_cert: bool = True, extra_conf: str = "") -> Dovecot:
    """A running private Dovecot in a new temporary folder (:meth:`Dovecot.stop` removes it).

    The folder is made under the system temporary directory with mode 0755 (Dovecot's unprivileged
    processes must reach the passwd file and the mail; pytest's own folders are 0700)."""
    if not DOVECOT.exists():
        raise DovecotError("dovecot is not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="sidep-imap-"))
    os.chmod(root, 0o755)
    server = Dovecot(root=root, pki=pki or make_pki(root / "pki"), client_cert=client_cert, extra_conf=extra_conf)
    server.write_config()
    server.start()
    return server
