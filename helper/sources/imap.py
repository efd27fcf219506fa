"""IMAP mailboxes as a source: the client side (connection, TLS, login, fetching, keywords).

What happens, step by step (the loop around it is ``helper.service.imapsync``):

1. :func:`ssl_context` builds the TLS settings: TLS 1.2 at least, the server's certificate checked
   against the system store or the configured ``ca_file`` (MSSanté servers use IGC-Santé roots),
   and the client certificate and key when configured (the key file must be 0600);
2. :func:`connect` opens the connection (implicit TLS, or plain then ``STARTTLS`` — a server without
   STARTTLS is refused, mail never travels in clear) and logs in: SASL EXTERNAL with the client
   certificate when the server offers it, else user and password read from a 0600 file. Every
   failure becomes an :class:`ImapError` whose message, in French, says what IT must check
   (certificate refused, expired, issued by another authority, server certificate not recognised,
   login refused, folder missing, server unreachable);
3. :class:`Folder` selects one folder and reads, never altering a message: new UIDs after the last
   one seen; their header fields first (``BODY.PEEK``: nothing is marked read); the whole message
   only when the headers say it may be a certificate (:func:`may_be_certificate`); the keywords of
   messages already known (``CHANGEDSINCE`` when the server has CONDSTORE);
4. the only writes are the keywords ``$SidepImprime`` / ``$SidepRemis`` (only when the folder's
   PERMANENTFLAGS allow new keywords, ``\\*``) and the optional move to ``move_processed_to``;
5. :meth:`Folder.wait` waits for news: IDLE where offered (the server tells of new mail or changed
   flags at once), else a plain pause, checking every 0.2 s whether to stop or to write.

Nothing here logs a credential, a header value or a message: imapclient's own loggers are silenced.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from helper.parse.mime import decode_rfc2047, split_headers

for _name in ("imapclient", "imapclient.imaplib", "imapclient.imapclient", "imapclient.protocol"):
    _lg = logging.getLogger(_name)
    _lg.handlers[:] = [logging.NullHandler()]
    _lg.propagate = False
    _lg.setLevel(logging.CRITICAL)

KW_PRINTED = "$SidepImprime"
KW_DELIVERED = "$SidepRemis"
HEADER_FIELDS = b"BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID CONTENT-TYPE)]"
HEADER_KEY = b"BODY[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID CONTENT-TYPE)]"
#: Messages fetched whole per round trip (and at most this many bytes announced by RFC822.SIZE).
BODY_BATCH = 100
BODY_BATCH_BYTES = 16 * 1024 * 1024
HEADER_BATCH = 500
TIMEOUT = 60


class Account(Protocol):
    """One ``[[sources.imap]]`` entry of the configuration (``helper.config.ImapSource``)."""

    name: str
    host: str
    port: int
    tls: str
    ca_file: Path | None
    folders: list[str]
    cert_file: Path | None
    key_file: Path | None
    user: str
    password_file: Path | None
    poll_seconds: int
    move_processed_to: str


class ImapError(Exception):
    """A failure IT can act on: ``code`` for programs, ``message`` in French for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _clean(text: object, limit: int = 200) -> str:
    """Server text made safe for a log line or the status (no control characters, bounded)."""
    if isinstance(text, BaseException) and len(text.args) == 1:
        text = text.args[0]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(text))[:limit].strip()


# --- files ------------------------------------------------------------------------------------------

def check_private_file(path: Path, what: str) -> None:
    """Refuse a key or password file that others than its owner can read (POSIX 0600 at most)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ImapError("file_missing", f"{what} introuvable ou illisible : {path} ({exc.strerror})") from exc
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ImapError(
            "file_permissions",
            f"{what} {path} refusé : ses droits ({stat.filemode(st.st_mode)}) permettent à d'autres comptes "
            f"de le lire ; seuls les droits 0600 sont acceptés (chmod 600 « {path} »).",
        )


def read_password(path: Path) -> str:
    check_private_file(path, "Fichier de mot de passe")
    try:
        return path.read_text(encoding="utf-8").strip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImapError("file_missing", f"Fichier de mot de passe illisible : {path}") from exc


def certificate_dates(path: Path) -> tuple[dt.datetime, dt.datetime, str] | None:
    """(not before, not after, issuer common name) of a PEM certificate, or None if unreadable."""
    try:
        info = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]  # noqa: SLF001
    except (OSError, ssl.SSLError, AttributeError):
        return None

    def when(value: str) -> dt.datetime:
        return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(value), dt.UTC)

    issuer = dict(item for rdn in info.get("issuer", ()) for item in rdn).get("commonName", "?")
    return when(info["notBefore"]), when(info["notAfter"]), issuer


def _ca_subjects(path: Path) -> set[str]:
    """Common names of the certificates in a PEM bundle."""
    names: set[str] = set()
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return names
    import tempfile

    for block in re.findall(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]{0,20000}?-----END CERTIFICATE-----", text):
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as fh:
            fh.write(block + "\n")
        try:
            info = ssl._ssl._test_decode_cert(fh.name)  # type: ignore[attr-defined]  # noqa: SLF001
            names.add(dict(item for rdn in info.get("subject", ()) for item in rdn).get("commonName", ""))
        except (OSError, ssl.SSLError):
            pass
        finally:
            os.unlink(fh.name)
    return names


# --- connection -------------------------------------------------------------------------------------

def ssl_context(acc: Account) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(acc.ca_file) if acc.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ImapError("ca_file", f"Fichier d'autorités « ca_file » illisible : {acc.ca_file}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if acc.cert_file:
        key = acc.key_file or acc.cert_file
        check_private_file(key, "Fichier de clé privée")
        try:
            ctx.load_cert_chain(str(acc.cert_file), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ImapError(
                "client_cert", f"Certificat client ou clé illisible ({acc.cert_file}) : vérifiez les fichiers."
            ) from exc
    return ctx


def connect(acc: Account, timeout: float = TIMEOUT) -> IMAPClient:
    """A logged-in connection, or :class:`ImapError` saying why not."""
    ctx = ssl_context(acc)
    where = f"{acc.host}:{acc.port}"
    client: IMAPClient | None = None
    try:
        if acc.tls == "implicit":
            client = IMAPClient(acc.host, acc.port, ssl=True, ssl_context=ctx, timeout=timeout)
        else:
            client = IMAPClient(acc.host, acc.port, ssl=False, timeout=timeout)
            if not client.has_capability("STARTTLS"):
                raise ImapError("no_starttls", f"Le serveur {where} ne propose pas STARTTLS : connexion refusée "
                                "(le courrier ne doit jamais circuler en clair).")
            client.starttls(ctx)
        _login(client, acc)
        return client
    except ImapError:
        _close(client)
        raise
    except ssl.SSLCertVerificationError as exc:
        _close(client)
        raise ImapError(
            "server_cert",
            f"Certificat du serveur {acc.host} non reconnu ({_clean(exc.verify_message)}) : vérifiez « ca_file » "
            "(autorité IGC-Santé) et le nom du serveur.",
        ) from exc
    except ssl.SSLError as exc:
        _close(client)
        raise _tls_error(acc, exc) from exc
    except (OSError, IMAPClientError) as exc:
        _close(client)
        raise ImapError("unreachable", f"Serveur {where} injoignable ({_clean(exc) or type(exc).__name__}).") from exc


def _close(client: IMAPClient | None) -> None:
    if client is None:
        return
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - already broken
        pass


def _tls_error(acc: Account, exc: ssl.SSLError) -> ImapError:
    reason = (exc.reason or "").upper()
    if "EXPIRED" in reason:
        return ImapError("client_cert_expired", _expired_message(acc) or "Certificat client expiré (refusé par le serveur).")
    if "UNKNOWN_CA" in reason:
        return ImapError("client_cert_other_ca", "Certificat client émis par une autorité que le serveur ne reconnaît pas.")
    if "CERTIFICATE" in reason:
        return ImapError("client_cert_refused", f"Certificat client refusé par le serveur ({_clean(exc.reason)}).")
    if "VERSION" in reason or "PROTOCOL" in reason:
        return ImapError("tls_version", f"Le serveur {acc.host} n'accepte pas TLS 1.2 ou plus récent.")
    return ImapError("tls", f"Échec de la négociation TLS avec {acc.host} ({_clean(exc.reason or exc)}).")


def _expired_message(acc: Account) -> str | None:
    if not acc.cert_file:
        return None
    dates = certificate_dates(acc.cert_file)
    if dates is None:
        return None
    not_before, not_after, _ = dates
    now = dt.datetime.now(dt.UTC)
    if not_after < now:
        return (f"Certificat client expiré depuis le {not_after:%d/%m/%Y} : demandez-en un nouveau "
                "(IGC-Santé) et remplacez les fichiers « cert_file » / « key_file ».")
    if not_before > now:
        return f"Certificat client pas encore valide (à partir du {not_before:%d/%m/%Y})."
    return None


def _cert_refused(acc: Account, server_text: str) -> ImapError:
    """Tell why a certificate login was refused, from what the client can check itself."""
    expired = _expired_message(acc)
    if expired:
        return ImapError("client_cert_expired", expired)
    dates = certificate_dates(acc.cert_file) if acc.cert_file else None
    if dates is not None and acc.ca_file is not None:
        issuer = dates[2]
        if issuer not in _ca_subjects(acc.ca_file):
            return ImapError(
                "client_cert_other_ca",
                f"Certificat client refusé : il est émis par « {_clean(issuer, 80)} », une autorité que le serveur "
                "ne reconnaît pas (attendu : un certificat IGC-Santé de la même autorité que le serveur).",
            )
    return ImapError("client_cert_refused", f"Certificat client refusé par le serveur ({server_text}).")


def _login(client: IMAPClient, acc: Account) -> None:
    try:
        if acc.cert_file and client.has_capability("AUTH=EXTERNAL"):
            try:
                client.sasl_login("EXTERNAL", lambda _challenge: b"")
            except (LoginError, IMAPClientError) as exc:
                raise _cert_refused(acc, _clean(exc)) from exc
            return
        if acc.user and acc.password_file:
            password = read_password(acc.password_file)
            try:
                client.login(acc.user, password)
            except (LoginError, IMAPClientError) as exc:
                text = _clean(exc)
                if not acc.cert_file and "certificat" in text.lower():
                    raise ImapError(
                        "client_cert_missing",
                        f"Connexion refusée : le serveur exige un certificat client et aucun n'est configuré ({text}).",
                    ) from exc
                raise ImapError("login_refused", f"Identifiant ou mot de passe refusé par le serveur ({text}).") from exc
            finally:
                del password
            return
        if acc.cert_file:
            raise ImapError("no_external", "Le serveur ne propose pas la connexion par certificat (SASL EXTERNAL) : "
                            "indiquez « user » et « password_file ».")
        raise ImapError("no_credentials", "Aucun moyen de connexion configuré (certificat client ou mot de passe).")
    except ImapError:
        raise


# --- one folder -------------------------------------------------------------------------------------

@dataclass
class FolderInfo:
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None
    keywords_allowed: bool


class Folder:
    """One selected folder on a logged-in connection."""

    def __init__(self, client: IMAPClient, name: str) -> None:
        self.client = client
        self.name = name
        self.condstore = client.has_capability("CONDSTORE")
        self.idle_ok = client.has_capability("IDLE")
        self.move_ok = client.has_capability("MOVE")
        self.info: FolderInfo | None = None
        if self.condstore:
            try:
                client.enable("CONDSTORE")
            except IMAPClientError:
                self.condstore = False

    def select(self) -> FolderInfo:
        try:
            data = self.client.select_folder(self.name)
        except IMAPClientError as exc:
            text = _clean(exc)
            if re.search(r"NONEXISTENT|doesn.t exist|not exist|unknown mailbox|introuvable", text, re.I):
                raise ImapError("folder_missing", f"Dossier « {_clean(self.name, 80)} » introuvable sur le serveur.") from exc
            raise
        flags = data.get(b"PERMANENTFLAGS", ())
        modseq = data.get(b"HIGHESTMODSEQ")
        self.info = FolderInfo(
            uidvalidity=int(data[b"UIDVALIDITY"]),
            uidnext=int(data.get(b"UIDNEXT", 0) or 0),
            exists=int(data.get(b"EXISTS", 0) or 0),
            highestmodseq=int(modseq) if modseq is not None and self.condstore else None,
            keywords_allowed=b"\\*" in flags,
        )
        return self.info

    def new_uids(self, after: int) -> list[int]:
        """UIDs above ``after``, ascending (``n:*`` also answers the last message: filtered)."""
        if self.info is not None and self.info.uidnext and self.info.uidnext <= after + 1:
            return []
        return sorted(u for u in self.client.search(["UID", f"{after + 1}:*"]) if u > after)

    def headers(self, uids: list[int]) -> Iterator[tuple[int, int, bytes]]:
        """(uid, size, header bytes) for each message still there."""
        for chunk in _chunks(uids, HEADER_BATCH):
            data = self.client.fetch(chunk, [HEADER_FIELDS, b"RFC822.SIZE"])
            for uid in chunk:
                item = data.get(uid)
                if item is None:
                    continue  # expunged meanwhile
                yield uid, int(item.get(b"RFC822.SIZE", 0)), bytes(item.get(HEADER_KEY) or b"")

    def bodies(self, uids: list[tuple[int, int]]) -> Iterator[tuple[int, bytes | None]]:
        """(uid, whole message) for (uid, size) pairs, fetched in batches bounded by count and size."""
        batch: list[int] = []
        size = 0
        for uid, n in uids:
            batch.append(uid)
            size += n
            if len(batch) >= BODY_BATCH or size >= BODY_BATCH_BYTES:
                yield from self._fetch_bodies(batch)
                batch, size = [], 0
        if batch:
            yield from self._fetch_bodies(batch)

    def _fetch_bodies(self, uids: list[int]) -> Iterator[tuple[int, bytes | None]]:
        data = self.client.fetch(uids, [b"BODY.PEEK[]"])
        for uid in uids:
            item = data.get(uid)
            yield uid, (bytes(item[b"BODY[]"]) if item is not None and item.get(b"BODY[]") is not None else None)

    def keywords(self, uids: Iterable[int] | None, changed_since: int | None) -> dict[int, set[str]]:
        """Our keywords on messages: all of ``uids``, or every message changed since a MODSEQ."""
        out: dict[int, set[str]] = {}
        if changed_since is not None:
            pairs: Iterable[tuple[int, Any]] = self._fetch_range("1:*", f"(FLAGS) (CHANGEDSINCE {changed_since})")
        else:
            wanted = sorted(set(uids or ()))
            pairs = []
            for chunk in _chunks(wanted, 2000):
                pairs = [*pairs, *self.client.fetch(chunk, [b"FLAGS"]).items()]
        for uid, item in pairs:
            flags = {f.decode("ascii", "replace") if isinstance(f, bytes) else str(f) for f in item.get(b"FLAGS", ())}
            out[uid] = {f for f in flags if f in (KW_PRINTED, KW_DELIVERED)}
        return out

    def _fetch_range(self, seqset: str, items: str) -> Iterable[tuple[int, Any]]:
        """``UID FETCH`` over a range (imapclient's ``fetch`` accepts explicit UIDs only)."""
        from imapclient.response_parser import parse_fetch_response

        imap = self.client._imap  # noqa: SLF001
        tag = imap._command("UID", "FETCH", seqset, items)  # noqa: SLF001
        typ, data = imap._command_complete("FETCH", tag)  # noqa: SLF001
        if typ != "OK":
            raise IMAPClientError(f"FETCH: {_clean(data)}")
        typ, data = imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
        return parse_fetch_response(data, self.client.normalise_times, True).items()

    def set_keyword(self, uids: list[int], keyword: str, on: bool) -> None:
        if on:
            self.client.add_flags(uids, [keyword], silent=True)
        else:
            self.client.remove_flags(uids, [keyword], silent=True)

    def _changed_since_select(self) -> bool:
        """Mail or flags changed while we were reading (a notification may have been consumed)."""
        if self.info is None:
            return False
        items = [b"UIDNEXT"] + ([b"HIGHESTMODSEQ"] if self.info.highestmodseq is not None else [])
        now = self.client.folder_status(self.name, items)
        if int(now.get(b"UIDNEXT", 0) or 0) > self.info.uidnext:
            return True
        modseq = now.get(b"HIGHESTMODSEQ")
        return modseq is not None and self.info.highestmodseq is not None and int(modseq) > self.info.highestmodseq

    def move(self, uids: list[int], target: str) -> bool:
        """Move to ``target`` with the MOVE command only (never copy-then-delete). False if not offered."""
        if not self.move_ok or not uids:
            return False
        self.client.move(uids, target)
        return True

    def wait(self, seconds: float, interrupted: Callable[[], bool]) -> None:
        """Until the server tells of a change (IDLE), ``seconds`` pass, or ``interrupted()`` says so."""
        deadline = time.monotonic() + seconds
        if self._changed_since_select():
            return
        if not self.idle_ok:
            while time.monotonic() < deadline and not interrupted():
                time.sleep(0.2)
            self.client.noop()
            return
        self.client.idle()
        try:
            while time.monotonic() < deadline and not interrupted():
                responses = self.client.idle_check(timeout=0.2)
                if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"FETCH", b"EXPUNGE", b"RECENT")
                       for r in responses):
                    break
        finally:
            self.client.idle_done()


def may_be_certificate(header: bytes, trusted: frozenset[str]) -> bool:
    """Whether the message must be read whole: False only for mail that cannot hold a certificate.

    A superset of what the parser accepts: a multipart or ``message/*`` message (attachments,
    forwards), a subject with « Certificat de test », or a From line that mentions a trusted
    address. The trust decision itself is the parser's, on the whole message.
    """
    headers, _ = split_headers(header[:65536])
    ctype = headers.get("content-type", "text/plain").strip().lower()
    if not ctype.startswith("text/"):
        return True
    subject = re.sub(r"\s+", "", decode_rfc2047(headers.get("subject", "")[:4096]).lower())
    if "certificatdetest" in subject:
        return True
    sender = headers.get("from", "")[:4096].lower()
    return any(address in sender for address in trusted)


def message_id(header: bytes) -> str | None:
    """The Message-ID as the store keeps it (``<…>``), or None."""
    headers, _ = split_headers(header[:65536])
    m = re.search(r"<[^<>\s]{1,998}>", headers.get("message-id", "")[:2000])
    return m.group(0) if m else None


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, socket.timeout, IMAPClientError, ssl.SSLError, EOFError))


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
