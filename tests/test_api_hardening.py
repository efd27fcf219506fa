"""Hostile HTTP against a real ``sidep-helper serve``: what reaches its stderr and log file, what
every error looks like, uploads that would exhaust memory, parameters outside the contract, origins.

Raw sockets are used where a client library would refuse to send the request (unencoded spaces,
bare LF line endings, oversized headers).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mailgen
import psutil
import pytest
from conftest import Cli, free_port, recent_spec, start, wait_healthy

from helper import __version__
from helper.extension_ids import CHROMIUM_ORIGINS

PATIENT = "DUPONTEL"
BIRTH = "12/03/1980"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    home: Path
    stderr_path: Path
    cert_id: int

    def raw(self, data: bytes, *, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """Send ``data`` as is; the status, headers (lower-case names) and body of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            answer = _read_answer(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, body

    def request(self, method: str, target: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
                auth: bool = True) -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        if auth:
            lines.append(f"Authorization: Bearer {self.token}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def logs(self) -> str:
        log_file = self.home / "logs" / "sidep-helper.log"
        time.sleep(0.2)  # let the service flush the lines of the last request
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") + log_file.read_text(encoding="utf-8")


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("hardening")
    home = root / "home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\nprinter = "file-absente"\n',
        encoding="utf-8")
    cli = Cli(home)
    spec = recent_spec(random.Random(3), last_name=PATIENT, first_name="Ginette")
    mailgen.write_eml(root / "mail", [mailgen.make_message(spec)])
    assert cli.ingest(root / "mail")["new"] == 1
    stderr_path = root / "stderr.txt"
    proc = start(home, port, "--no-watch", stderr_to=stderr_path)
    try:
        wait_healthy(port, proc)
        token = cli.run("token").stdout.strip()
        found = cli.search(spec.dossier)["results"][0]["id"]
        yield Served(proc, port, token, home, stderr_path, found)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _assert_safe_error(status: int, headers: dict[str, str], body: bytes, expected: int, *echo: str) -> dict[str, str]:
    assert status == expected, (status, body)
    assert headers["x-sidep-helper"] == __version__
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert set(answer) == {"error", "message"} and answer["message"]
    for text in echo:
        assert text.lower() not in body.decode("utf-8").lower(), text
    return answer


# --- item 7: what libraries log ------------------------------------------------------------------------

def test_library_logs_never_show_a_request_line_or_a_header(served: Served) -> None:
    port = served.port
    unencoded = (f"GET /api/v1/certificates?q={PATIENT} Ginette {BIRTH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Authorization: Bearer {served.token}\r\n\r\n").encode()
    bare_lf = (f"GET /api/v1/certificates?q={PATIENT} HTTP/1.1\nHost: 127.0.0.1:{port}\n"
               f"Authorization: Bearer {served.token}\n\n").encode()
    bad_header = (f"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Patient {PATIENT}: {BIRTH}\r\n"
                  f"Authorization: Bearer {served.token}\r\n\r\n").encode()
    for data in (unencoded, bare_lf, bad_header):
        status, headers, body = served.raw(data)
        _assert_safe_error(status, headers, body, 400, PATIENT, BIRTH, served.token, "Authorization")
    text = served.logs()
    assert "requête refusée par l'analyseur HTTP" in text  # the refusals are logged, by type only
    for secret in (PATIENT, BIRTH, served.token, "Authorization", "Bearer", "?q="):
        assert secret not in text, secret


# --- item 8: control characters and secrets in the path ----------------------------------------------------

def test_a_path_cannot_forge_a_log_line_nor_leak_a_token(served: Served) -> None:
    forged = "/api/v1/certificates/1%0a2026-01-01%2000:00:00,000%20ERROR%20forged%0d%0a"
    status, headers, body = served.request("GET", forged)
    _assert_safe_error(status, headers, body, 404, "forged")
    status, headers, body = served.request("GET", f"/api/v1/certificates/{served.token}", auth=False)
    _assert_safe_error(status, headers, body, 400, served.token)
    status, headers, body = served.request("GET", f"/api/v1/{served.token}/pdf", auth=False)
    _assert_safe_error(status, headers, body, 400, served.token)
    text = served.logs()
    assert "forged" not in text and served.token not in text
    assert "GET /api/v1/certificates/{id} 404" in text  # the route template, never the raw path
    assert not [line for line in text.splitlines() if line.startswith("2026-01-01")]


def test_the_safe_formatter_escapes_control_characters_and_hides_library_arguments() -> None:
    import logging

    from helper.service.logs import SafeFormatter

    formatter = SafeFormatter("%(levelname)s %(name)s %(message)s")
    ours = logging.LogRecord("sidep_helper.api", logging.INFO, __file__, 1, "dossier %s", ("a\nERROR b\r\x1b[2J",), None)
    assert formatter.format(ours) == "INFO sidep_helper.api dossier a\\x0aERROR b\\x0d\\x1b[2J"
    try:
        raise ValueError(f"nom {PATIENT}")
    except ValueError:
        exc_info = sys.exc_info()
    theirs = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                               (f"GET /?q={PATIENT}",), exc_info)
    text = formatter.format(theirs)
    assert "Error handling request from" in text and "ValueError" in text
    assert PATIENT not in text and "?q=" not in text


# --- item 9: every error, whoever produced it -----------------------------------------------------------------

def test_every_error_is_french_json_with_the_safety_headers(served: Served) -> None:
    marker = "ECHO-MOI-9"
    port = served.port
    cases = [
        (b"GET /" + marker.encode() + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),  # bad request line
        (f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-{marker}: {'y' * 9000}\r\n\r\n".encode(), 431),
        (f"GET /{marker}{'z' * 9000} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), 400),  # URL too long
        (f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
         + b"".join(f"X-{marker}-{i}: v\r\n".encode() for i in range(200)) + b"\r\n", 431),
        (f"GET /api/v1/{marker} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode(), 404),
        (f"PUT /api/v1/status?{marker} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode(), 405),
        (f"GET /api/v1/health HTTP/1.1\r\nHost: {marker}.example\r\nConnection: close\r\n\r\n".encode(), 403),
        (f"GET /api/v1/status?{marker} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode(), 401),
        (f"POST /api/v1/certificates/1/delivered HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
         f"Authorization: Bearer {served.token}\r\nContent-Type: application/json\r\n"
         f"Content-Length: 10000000\r\n\r\n".encode(), 413),
    ]
    for data, expected in cases:
        status, headers, body = served.raw(data)
        _assert_safe_error(status, headers, body, expected, marker)
    assert marker not in served.logs()


async def test_an_unexpected_exception_is_a_500_without_its_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from helper.config import Settings
    from helper.service.api import make_app

    port = free_port()
    settings = Settings(data_dir=tmp_path, config_file=tmp_path / "config.toml", port=port)
    app = make_app(settings, lambda: "jeton-de-test")

    async def boom(request: object) -> None:
        raise RuntimeError(f"nom du patient {PATIENT}")

    app.router.add_get("/api/v1/boom", boom)
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        resp = await client.get("/api/v1/boom", headers={"Authorization": "Bearer jeton-de-test"})
        body = await resp.read()
    _assert_safe_error(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body, 500, PATIENT)
    assert "RuntimeError" in caplog.text and "/api/v1/boom" in caplog.text


# --- item 12: uploads within bounded memory -------------------------------------------------------------------

def _chunked_upload(port: int, token: str, size: int, content_type: str = "message/rfc822",
                    path: str = "/api/v1/messages") -> int:
    """Send ``size`` bytes as a chunked body; returns the status (0 if the server closed first)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunk = b"X-Filler: " + b"a" * (1024 * 1024 - 12) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < size:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_answer(sock)
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0


def test_six_concurrent_60_mb_uploads_keep_memory_bounded(served: Served) -> None:
    process = psutil.Process(served.proc.pid)
    before = process.memory_info().rss
    peak = before
    statuses: list[int] = []
    workers = [threading.Thread(target=lambda: statuses.append(_chunked_upload(served.port, served.token, 60 << 20)))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.05)
    assert statuses == [413] * 6
    growth = (peak - before) / 2**20
    assert growth < 60, f"RSS grew by {growth:.0f} MB during six 60 MB uploads"
    assert list((served.home / "envois").iterdir()) == []  # nothing left on disk


def test_json_bodies_over_64_kb_are_refused_before_being_read(served: Served) -> None:
    cert = f"/api/v1/certificates/{served.cert_id}/delivered"
    # Only the headers are sent: the answer comes without the body ever arriving.
    head = (f"POST {cert} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nAuthorization: Bearer {served.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {40 << 20}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 413")
    assert _chunked_upload(served.port, served.token, 2 << 20, "application/json", cert) == 413
    status, headers, body = served.request("POST", cert, headers={"Content-Type": "application/json"},
                                           body=b'{"initials": "' + b"a" * 70_000 + b'"}')
    _assert_safe_error(status, headers, body, 413)


def test_a_pushed_message_is_spooled_0600_and_removed(served: Served) -> None:
    spec = recent_spec(random.Random(12))
    status, _, body = served.request("POST", "/api/v1/messages", headers={"Content-Type": "message/rfc822"},
                                     body=mailgen.make_message(spec))
    assert status == 200 and json.loads(body)["results"][0]["status"] == "new"
    spool = served.home / "envois"
    assert spool.stat().st_mode & 0o777 == 0o700 and list(spool.iterdir()) == []


# --- item 13: parameters as the contract says -------------------------------------------------------------------

def test_parameters_outside_the_contract_get_their_documented_4xx(served: Served) -> None:
    for path in ("/api/v1/certificates/9223372036854775808", "/api/v1/certificates/99999999999999999999999",
                 "/api/v1/certificates/-1", "/api/v1/certificates/0", "/api/v1/certificates/%D9%A3",
                 "/api/v1/certificates/1e3", "/api/v1/certificates/9223372036854775808/pdf"):
        status, headers, body = served.request("GET", path)
        assert _assert_safe_error(status, headers, body, 404)["error"] == "not_found", path
    for query in ("site=a-b", "site=%27%20OR%201%3D1%20--", "site=75071218", "site=7507121845", "limit=0",
                  "limit=501", "limit=%EF%BC%95", "limit=1e2", "status=tout", "q=" + "x" * 201):
        status, headers, body = served.request("GET", "/api/v1/certificates?" + query)
        _assert_safe_error(status, headers, body, 400)
    status, _, _ = served.request("GET", "/api/v1/certificates?site=2A0000001&limit=500")
    assert status == 200
    delivered = f"/api/v1/certificates/{served.cert_id}/delivered"
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"initials": ' + b"9" * 5000 + b"}", b'{"initials": NaN}',
                b'{"initials": "\\ud800"}', b"\xff\xfe", b'{"initials": "a\\nb"}', b'["MB"]'):
        status, headers, body = served.request("POST", delivered, headers={"Content-Type": "application/json"}, body=raw)
        _assert_safe_error(status, headers, body, 400)
    for method, path in (("GET", "/api/v1/nope"), ("GET", "/api/v1/certificates/1/nope"), ("POST", "/api/v1"),
                         ("DELETE", "/api/v1/status/x")):
        status, headers, body = served.request(method, path)
        _assert_safe_error(status, headers, body, 404)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, headers, body = served.request("POST", delivered, headers={"Content-Type": content_type})
        _assert_safe_error(status, headers, body, 415)  # an empty POST is checked too
    status, _, _ = served.request("GET", f"/api/v1/certificates/{served.cert_id}")
    assert status == 200  # and the service is still fine


# --- item 15: origins and the token in the address --------------------------------------------------------------

def test_only_well_formed_extension_origins_pass(served: Served) -> None:
    good = (*CHROMIUM_ORIGINS, "moz-extension://0c4d4c6b-6d8a-4b8e-9a7a-2b1f5f6f7a10")
    bad = ("null", "chrome-extension://abcdefghijklmnopabcdefghijklmno", "chrome-extension://abcdefghijklmnopabcdefghijklmnopa",
           "chrome-extension://ABCDEFGHIJKLMNOPABCDEFGHIJKLMNOP", "chrome-extension://qrstuvwxyzqrstuvwxyzqrstuvwxyzqr",
           "chrome-extension://abcdefghijklmnopabcdefghijklmnoр",  # last letter Cyrillic
           "chrome-extension://abcdefghijklmnopabcdefghijklmnop/", "chrome-extension://abcdefghijklmnopabcdefghijklmnop:80",
           "moz-extension://0C4D4C6B-6D8A-4B8E-9A7A-2B1F5F6F7A10", "moz-extension://0c4d4c6b6d8a4b8e9a7a2b1f5f6f7a10",
           "moz-extension://0c4d4c6b-6d8a-4b8e-9a7a-2b1f5f6f7a1", "moz-extension://evil", "safari-web-extension://x",
           "https://abcdefghijklmnopabcdefghijklmnop", "file://", "chrome-extension://",
           "chrome-extension://abcdefghijklmnopabcdefghijklmnop")  # well formed, but not ours
    for origin in good:
        status, headers, _ = served.request("GET", "/api/v1/status", headers={"Origin": origin})
        assert status == 200 and headers["access-control-allow-origin"] == origin
    for origin in bad:
        data = (f"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nConnection: close\r\n"
                f"Authorization: Bearer {served.token}\r\nOrigin: {origin}\r\n\r\n").encode()
        status, headers, body = served.raw(data)
        assert _assert_safe_error(status, headers, body, 403)["error"] == "forbidden_origin", origin
        assert "access-control-allow-origin" not in headers


def test_any_query_parameter_carrying_the_token_is_refused(served: Served) -> None:
    for query in (f"q={served.token}", f"foo={served.token}", f"q=Bearer%20{served.token}", f"{served.token}=1",
                  "api_key=x"):
        status, headers, body = served.request("GET", "/api/v1/certificates?" + query)
        assert _assert_safe_error(status, headers, body, 400, served.token)["error"] == "token_in_url", query
    assert served.token not in served.logs()


def test_logs_are_0600(served: Served) -> None:
    if os.name == "posix":
        assert (served.home / "logs" / "sidep-helper.log").stat().st_mode & 0o777 == 0o600


async def test_the_http_server_answers_an_escaping_exception_with_safe_json(caplog: pytest.LogCaptureFixture) -> None:
    """Past every middleware (here one that fails), aiohttp's own 500 is replaced by ours."""
    from aiohttp import web

    from helper.service.api.server import RouteAccessLogger, SafeAppRunner

    @web.middleware
    async def failing(request: web.Request, handler: object) -> web.StreamResponse:
        raise RuntimeError(f"fiche de {PATIENT}")

    app = web.Application(middlewares=[failing])
    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/x", ok)
    runner = SafeAppRunner(app, access_log_class=RouteAccessLogger)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /x?q={PATIENT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await runner.cleanup()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    _assert_safe_error(int(lines[0].split()[1]), headers, body, 500, PATIENT)
    assert "RuntimeError" in caplog.text
