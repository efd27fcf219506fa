"""A server line split across two TLS records during IDLE ends the wait and is read whole.

imapclient's ``idle_check`` reads with a non-blocking ``readline``: over TLS, a line whose end has
not arrived yet raises ``SSLWantReadError`` and its start is dropped; the rest then reads as a line
of its own (a protocol error, or a notification lost). The helper parses nothing during IDLE
(``helper.sources.imap.Folder.wait``): any byte ends the wait and ``idle_done`` reads in blocking
mode. A scripted IMAP server over real TLS on loopback sends ``* 1 FE`` then, 0.3 s later,
``TCH (FLAGS (...))`` as two records, to real imapclient.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from imapclient import IMAPClient

from helper.sources.imap import Folder


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "server.crt", folder / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def serve(listener: socket.socket, ctx: ssl.SSLContext, seen: list[bytes]) -> None:
    raw, _ = listener.accept()
    with ctx.wrap_socket(raw, server_side=True) as conn, conn.makefile("rb") as lines:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
        for line in lines:
            tag, command = line.split(b" ", 2)[:2] if b" " in line else (b"", line.strip())
            command = command.strip().upper()
            seen.append(command)
            if command == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
            elif command == b"SELECT":
                conn.sendall(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 2] n\r\n* FLAGS (\\Seen)\r\n"
                             b"* OK [PERMANENTFLAGS (\\Seen \\*)] f\r\n" + tag + b" OK [READ-WRITE] done\r\n")
            elif command == b"STATUS":
                conn.sendall(b"* STATUS INBOX (UIDNEXT 2)\r\n" + tag + b" OK done\r\n")
            elif command == b"IDLE":
                idle_tag = tag
                conn.sendall(b"+ idling\r\n")
                time.sleep(0.3)
                conn.sendall(b"* 1 FE")  # one TLS record ...
                time.sleep(0.3)
                conn.sendall(b"TCH (FLAGS (\\Seen $SidepRemis))\r\n")  # ... and the end of the line in another
            elif command == b"DONE":
                conn.sendall(idle_tag + b" OK idle done\r\n")
            elif command == b"LOGOUT":
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                conn.sendall(tag + b" OK done\r\n")


def test_a_line_split_across_tls_records_during_idle_ends_the_wait_and_is_read_whole(tmp_path: Path) -> None:
    crt, key = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[bytes] = []
    thread = threading.Thread(target=serve, args=(listener, server_ctx, seen), daemon=True)
    thread.start()
    client = IMAPClient("127.0.0.1", listener.getsockname()[1], ssl=True,
                        ssl_context=ssl.create_default_context(cafile=str(crt)), timeout=10)
    try:
        client.login("secretariat", "secret")
        folder = Folder(client, "INBOX")
        folder.select()
        started = time.monotonic()
        folder.wait(10, lambda: False)  # old code: ProtocolError on "TCH (FLAGS ...)", or a lost notice
        assert time.monotonic() - started < 3, "the flag change did not end the wait"
        assert seen[-1] == b"DONE"
        assert folder.refresh().uidnext == 2  # the connection is still in step with the server
    finally:
        client.logout()
        thread.join(5)
        listener.close()
