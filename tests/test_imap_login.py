"""IMAP connection and login against a real Dovecot with TLS client certificates (tests/dovecot.py).

Accepted: a good client certificate (SASL EXTERNAL) over STARTTLS and implicit TLS; user and password
over both. Refused, each with its own French message IT can act on: no client certificate, one from
another CA, an expired one, a server certificate not signed by the configured CA, a wrong password,
a missing folder, key or password files readable by others. The refusals also reach ``status``
(API and CLI) of a real ``serve`` process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Cli
from dovecot import Dovecot, Pki, make_pki, start_dovecot
from imaphelpers import Helper, imap_config

from helper.sources.imap import Folder, ImapError, connect


@dataclass
class Acc:
    host: str
    port: int
    tls: str
    ca_file: Path | None
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str = ""
    password_file: Path | None = None
    name: str = "bal"
    folders: list[str] = field(default_factory=lambda: ["INBOX"])
    poll_seconds: int = 30
    move_processed_to: str = ""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Dovecot]:
    server = start_dovecot(pki, client_cert=True)
    yield server
    server.remove()


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Dovecot]:
    server = start_dovecot(pki, client_cert=False)
    yield server
    server.remove()


def _acc(server: Dovecot, tls: str, cert: str | None = "good", **kw: object) -> Acc:
    crt, key = server.pki.client(cert) if cert else (None, None)
    port = server.tls_port if tls == "implicit" else server.port
    return Acc("127.0.0.1", port, tls, server.pki.ca, crt, key, **kw)  # type: ignore[arg-type]


def _password_file(tmp_path: Path, secret: str, mode: int = 0o600) -> Path:
    path = tmp_path / "imap-password"
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_good_client_certificate_logs_in(cert_server: Dovecot, tls: str) -> None:
    uid = cert_server.append(b"From: a@example.org\r\nSubject: test\r\nMessage-ID: <login@x>\r\n\r\nhello\r\n")
    client = connect(_acc(cert_server, tls))
    try:
        assert client.ssl or tls == "starttls"
        assert client._imap.sock.version() in ("TLSv1.2", "TLSv1.3")  # noqa: SLF001
        folder = Folder(client, "INBOX")
        info = folder.select()
        assert info.keywords_allowed and uid in folder.new_uids(0)
    finally:
        client.logout()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_password_login(password_server: Dovecot, tmp_path: Path, tls: str) -> None:
    good = _password_file(tmp_path, password_server.password)
    client = connect(_acc(password_server, tls, cert=None, user=password_server.user, password_file=good))
    client.logout()
    wrong = _password_file(tmp_path, "pas-le-bon")
    with pytest.raises(ImapError) as err:
        connect(_acc(password_server, tls, cert=None, user=password_server.user, password_file=wrong))
    assert err.value.code == "login_refused"
    assert "mot de passe refusé" in err.value.message
    assert "pas-le-bon" not in err.value.message


def test_refusals_have_their_own_french_message(cert_server: Dovecot, tmp_path: Path) -> None:
    pw = _password_file(tmp_path, "x")
    cases = {
        "client_cert_missing": _acc(cert_server, "starttls", cert=None, user=cert_server.user, password_file=pw),
        "client_cert_other_ca": _acc(cert_server, "implicit", cert="other"),
        "client_cert_expired": _acc(cert_server, "starttls", cert="expired"),
    }
    messages = {}
    for code, acc in cases.items():
        with pytest.raises(ImapError) as err:
            connect(acc)
        assert err.value.code == code, (code, err.value.message)
        messages[code] = err.value.message
    assert "exige un certificat client" in messages["client_cert_missing"]
    assert "autorité que le serveur ne reconnaît pas" in messages["client_cert_other_ca"]
    assert "Autre autorite" in messages["client_cert_other_ca"]
    assert "expiré depuis le 01/02/2020" in messages["client_cert_expired"]

    wrong_ca = _acc(cert_server, "implicit")
    wrong_ca.ca_file = cert_server.pki.other_ca
    with pytest.raises(ImapError) as err:
        connect(wrong_ca)
    assert err.value.code == "server_cert" and "Certificat du serveur 127.0.0.1 non reconnu" in err.value.message

    client = connect(_acc(cert_server, "starttls"))
    try:
        with pytest.raises(ImapError) as err:
            Folder(client, "Certificats/SIDEP").select()
        assert err.value.code == "folder_missing" and "introuvable" in err.value.message
    finally:
        client.logout()


def test_secret_files_readable_by_others_are_refused(cert_server: Dovecot, tmp_path: Path) -> None:
    loose = _password_file(tmp_path, "secret", 0o644)
    with pytest.raises(ImapError) as err:
        connect(_acc(cert_server, "starttls", cert=None, user=cert_server.user, password_file=loose))
    assert err.value.code == "file_permissions" and "0600" in err.value.message and "-rw-r--r--" in err.value.message
    crt, key = cert_server.pki.client("good")
    copy = tmp_path / "cle.key"
    copy.write_bytes(key.read_bytes())
    copy.chmod(0o640)
    acc = _acc(cert_server, "starttls")
    acc.key_file = copy
    with pytest.raises(ImapError) as err:
        connect(acc)
    assert err.value.code == "file_permissions" and "clé privée" in err.value.message


def test_unreachable_server() -> None:
    from conftest import free_port

    with pytest.raises(ImapError) as err:
        connect(Acc("127.0.0.1", free_port(), "implicit", None, user="x", password_file=Path("/nonexistent")))
    assert err.value.code == "unreachable" and "injoignable" in err.value.message


def test_status_shows_each_source_state_and_french_error(cert_server: Dovecot, tmp_path: Path) -> None:
    """A real serve with one good and one expired-certificate source: API and CLI status tell them apart."""
    imap = imap_config(cert_server, name="bonne") + imap_config(cert_server, cert="expired", name="perimee")
    helper = Helper.start(tmp_path / "home", imap, wait=False)
    try:
        row = helper.wait_imap_error("client_cert_expired")
        assert row["source"] == "perimee" and row["state"] == "erreur" and row["last_success"] is None
        assert "expiré depuis le 01/02/2020" in row["last_error"]
        ok = [r for r in helper.imap_status() if r["source"] == "bonne"]
        deadline = time.monotonic() + 10
        while not ok[0]["last_success"] and time.monotonic() < deadline:
            ok = [r for r in helper.imap_status() if r["source"] == "bonne"]
        assert ok[0]["last_success"] and ok[0]["last_error"] is None
        out = Cli(helper.home).run("status").stdout
        assert "IMAP perimee / INBOX : erreur" in out and "expiré depuis le 01/02/2020" in out
        assert "IMAP bonne / INBOX" in out
        log = helper.log()
        assert "expiré" in log
        key = cert_server.pki.client("good")[1].read_text()
        assert key.splitlines()[1] not in log  # nothing of the key in the log
    finally:
        helper.stop()


def test_config_errors_are_french(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    cli.home.mkdir()
    (cli.home / "config.toml").write_text('[[sources.imap]]\nhost = "imap.example"\ntls = "ssl"\ncert_file = "a"\n')
    proc = cli.run("config", check=False)
    assert proc.returncode != 0 and "« tls » doit être « starttls » ou « implicit »" in proc.stderr
    (cli.home / "config.toml").write_text('[[sources.imap]]\nhost = "imap.example"\n')
    proc = cli.run("config", check=False)
    assert "indiquez « cert_file »" in proc.stderr
