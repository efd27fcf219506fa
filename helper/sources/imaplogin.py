"""IMAP connection and login: TLS settings, client certificate, password file, French diagnostics.

Step by step (:func:`connect`):

1. :func:`ssl_context`: TLS 1.2 at least; the server's certificate checked against the system store
   or ``ca_file`` (MSSanté servers use IGC-Santé roots); the client certificate and key loaded when
   configured — the key file must be readable by its owner only (0600), else it is refused;
2. the connection: implicit TLS, or plain then ``STARTTLS`` (a server without STARTTLS is refused:
   mail never travels in clear);
3. the login: SASL EXTERNAL with the client certificate when the server offers it, else user and
   password read from a 0600 file (the password is never logged nor kept);
4. every failure becomes an :class:`ImapError` whose message, in French, says what IT must check. A
   refused certificate login is diagnosed from what the client can check itself: an expired
   certificate (its dates), one issued by an authority absent from ``ca_file``, no certificate at all.

imapclient's own loggers are silenced: nothing of the exchange (credentials, headers) reaches a log.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import ssl
import stat
from pathlib import Path
from typing import Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

for _name in ("imapclient", "imapclient.imaplib", "imapclient.imapclient", "imapclient.protocol"):
    _lg = logging.getLogger(_name)
    _lg.handlers[:] = [logging.NullHandler()]
    _lg.propagate = False
    _lg.setLevel(logging.CRITICAL)

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


def clean(text: object, limit: int = 200) -> str:
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
            client = _quiet(IMAPClient(acc.host, acc.port, ssl=True, ssl_context=ctx, timeout=timeout))
        else:
            client = _quiet(IMAPClient(acc.host, acc.port, ssl=False, timeout=timeout))
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
            f"Certificat du serveur {acc.host} non reconnu ({clean(exc.verify_message)}) : vérifiez « ca_file » "
            "(autorité IGC-Santé) et le nom du serveur.",
        ) from exc
    except ssl.SSLError as exc:
        _close(client)
        raise _tls_error(acc, exc) from exc
    except (OSError, IMAPClientError) as exc:
        _close(client)
        raise ImapError("unreachable", f"Serveur {where} injoignable ({clean(exc) or type(exc).__name__}).") from exc


def _quiet(client: IMAPClient) -> IMAPClient:
    """imaplib's own trace off. imapclient sets its level to 5, so imaplib formats the ``repr`` of
    every line, literal and response list it handles (then dropped by the silenced logger): about
    two thirds of the CPU time of a body fetch, and the password line of LOGIN formatted for nothing."""
    client._imap.debug = 0  # noqa: SLF001
    return client


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
        return ImapError("client_cert_refused", f"Certificat client refusé par le serveur ({clean(exc.reason)}).")
    if "VERSION" in reason or "PROTOCOL" in reason:
        return ImapError("tls_version", f"Le serveur {acc.host} n'accepte pas TLS 1.2 ou plus récent.")
    return ImapError("tls", f"Échec de la négociation TLS avec {acc.host} ({clean(exc.reason or exc)}).")


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
                f"Certificat client refusé : il est émis par « {clean(issuer, 80)} », une autorité que le serveur "
                "ne reconnaît pas (attendu : un certificat IGC-Santé de la même autorité que le serveur).",
            )
    return ImapError("client_cert_refused", f"Certificat client refusé par le serveur ({server_text}).")


def _login(client: IMAPClient, acc: Account) -> None:
    try:
        if acc.cert_file and client.has_capability("AUTH=EXTERNAL"):
            try:
                client.sasl_login("EXTERNAL", lambda _challenge: b"")
            except (LoginError, IMAPClientError) as exc:
                raise _cert_refused(acc, clean(exc)) from exc
            return
        if acc.user and acc.password_file:
            password = read_password(acc.password_file)
            try:
                client.login(acc.user, password)
            except (LoginError, IMAPClientError) as exc:
                text = clean(exc)
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
