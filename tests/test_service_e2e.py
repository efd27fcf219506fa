"""End to end: the real ``sidep-helper serve`` process, a watched folder, HTTP, CUPS, purge, audit."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mailgen
import pytest
from apicontract import validate
from conftest import Cli, free_port, recent_spec, start, stored_pdfs, wait_healthy
from cups import CupsPdf, ensure_cups_pdf
from pypdf import PdfReader

from helper.extension_ids import CHROMIUM_ORIGINS

EXT = CHROMIUM_ORIGINS[0]  # the default allowed_origins: the fixed Chrome/Edge id






@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    cli: Cli
    drop: Path

    def call(self, method: str, path: str, body: bytes | None = None, *, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None or method == "POST":  # as the extension does, even for an empty POST
            request.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                raw = resp.read()
                status, hdrs = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
        is_json = hdrs.get("Content-Type", "").startswith("application/json")
        return status, json.loads(raw) if is_json else raw, hdrs

    def search(self, q: str) -> dict[str, Any]:
        status, body, _ = self.call("GET", "/api/v1/certificates?" + urllib.parse.urlencode({"q": q}))
        assert status == 200
        validate(body, "/api/v1/certificates", "GET", 200)
        return body

    def wait_for(self, q: str, total: int = 1, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.search(q)
            if body["total"] >= total or time.monotonic() > deadline:
                return body
            time.sleep(0.2)






@pytest.fixture(scope="module")
def cups() -> CupsPdf:
    return ensure_cups_pdf()


@pytest.fixture
def service(tmp_path: Path, cups: CupsPdf) -> Iterator[Service]:
    home = tmp_path / "home"
    home.mkdir()
    drop = tmp_path / "Téléchargements"
    drop.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n'
        f'printer = "{cups.queue}"\n[sites]\n"{mailgen.luhn_finess("75071218")}" = "Site des Lilas"\n',
        encoding="utf-8",
    )
    cli = Cli(home)
    # Mail saved while the service was down is caught up at start.
    early = recent_spec(random.Random(1), last_name="AVANT-DÉMARRAGE", first_name="Zoé")
    (drop / "avant.eml").write_bytes(mailgen.make_message(early))
    proc = start(home, port)
    try:
        wait_healthy(port, proc)
        token = cli.run("token").stdout.strip()
        yield Service(proc, port, token, cli, drop)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


def test_secretary_flow_watch_search_print_deliver(service: Service, cups: CupsPdf) -> None:
    assert service.wait_for("avant demarrage")["total"] == 1  # caught up at start

    rng = random.Random(2)
    spec = recent_spec(rng, last_name="D'ALMEIDA", first_name="João", finess=mailgen.luhn_finess("75071218"))
    (service.drop / "[Projet SI-DEP] Certificat.eml").write_bytes(mailgen.make_message(spec))
    started = time.monotonic()
    found = service.wait_for("dalmeida joao")
    assert found["total"] == 1, "a saved .eml must be indexed within seconds"
    assert time.monotonic() - started < 5
    cert = found["results"][0]
    assert cert["site_name"] == "Site des Lilas"

    status, body, headers = service.call("POST", f"/api/v1/certificates/{cert['id']}/print")
    assert status == 200, body
    validate(body, "/api/v1/certificates/{id}/print", "POST", 200)
    assert body["printer"] == cups.queue
    assert body["certificate"]["print_count"] == 1 and body["certificate"]["printed_at"]
    printed = cups.wait_for_output(body["job"])
    text = "".join(page.extract_text() or "" for page in PdfReader(printed).pages)
    assert spec.dossier in text

    status, body, _ = service.call("POST", f"/api/v1/certificates/{cert['id']}/delivered", b'{"initials": "MB"}')
    assert status == 200 and body["delivered_by"] == "MB"
    status, body, _ = service.call("GET", "/api/v1/status")
    validate(body, "/api/v1/status", "GET", 200)
    assert body["counts"]["certificates"] == 2 and body["counts"]["to_deliver"] == 1
    assert [w["state"] for w in body["watched"] if w["path"] == str(service.drop)] == ["surveillé"]
    assert body["printer"]["available"] is True

    for _ in range(50):  # the audit thread appends a few ms after each reply
        audit = service.cli.run("audit", "export").stdout
        actions = [line.split(",")[1] for line in audit.splitlines()[1:]]
        if {"search", "print", "delivered", "purge"} <= set(actions):
            break
        time.sleep(0.1)
    assert {"search", "print", "delivered", "purge"} <= set(actions)
    assert "ALMEIDA" not in audit.upper() and spec.birth_date.isoformat() not in audit


def test_pushed_message_and_growing_mbox(service: Service) -> None:
    rng = random.Random(3)
    spec = recent_spec(rng)
    status, body, _ = service.call("POST", "/api/v1/messages", mailgen.make_message(spec), content_type="message/rfc822")
    assert status == 200 and body["results"][0]["status"] == "new"
    assert service.search(spec.dossier)["total"] == 1

    box = service.drop / "Inbox"
    first = [recent_spec(rng) for _ in range(3)]
    mailgen.write_mbox(box, [mailgen.make_message(s) for s in first])
    assert service.wait_for(first[-1].dossier)["total"] == 1
    later = recent_spec(rng)
    extra = service.drop.parent / "more"
    mailgen.write_mbox(extra, [mailgen.make_message(later)], thunderbird=False)
    with open(box, "ab") as fh:
        fh.write(extra.read_bytes())
    assert service.wait_for(later.dossier)["total"] == 1
    for s in first:
        assert service.search(s.dossier)["total"] == 1  # read once, never duplicated


def test_purge_removes_rows_and_pdfs_and_keeps_ids_in_the_audit(service: Service) -> None:
    rng = random.Random(4)
    now = dt.datetime.now().replace(microsecond=0)
    # 80 days old: kept at arrival (retention 90 days), purged once IT lowers the retention to 60.
    old = mailgen.random_spec(rng, last_name="ANCIEN", sampled_at=now - dt.timedelta(days=80),
                              integrated_at=now - dt.timedelta(days=79))
    recent = mailgen.random_spec(rng, last_name="RECENT", sampled_at=now - dt.timedelta(days=2),
                                 integrated_at=now - dt.timedelta(days=2))
    mailgen.write_eml(service.drop, [mailgen.make_message(old), mailgen.make_message(recent)])
    assert service.wait_for("ancien")["total"] == 1 and service.wait_for("recent")["total"] == 1
    old_id = service.search("ancien")["results"][0]["id"]
    pdfs_before = set(stored_pdfs(service.cli.home))

    config = service.cli.home / "config.toml"
    config.write_text("retention_days = 60\n" + config.read_text(encoding="utf-8"), encoding="utf-8")
    purged = service.cli.json("purge")
    assert purged["ids"] == [old_id]
    assert service.search("ancien")["total"] == 0
    assert service.search("recent")["total"] == 1
    status, _, _ = service.call("GET", f"/api/v1/certificates/{old_id}/pdf")
    assert status == 404
    pdfs_after = set(stored_pdfs(service.cli.home))
    assert len(pdfs_before - pdfs_after) == 1
    audit = service.cli.run("audit", "export", "--since", dt.date.today().isoformat()).stdout
    purge_lines = [line for line in audit.splitlines() if ",purge," in line]
    assert any(str(old_id) in line for line in purge_lines)
    assert "ANCIEN" not in audit.upper()


def test_logs_carry_no_patient_data(service: Service) -> None:
    spec = recent_spec(random.Random(5), last_name="CONFIDENTIEL", first_name="Secret")
    mailgen.write_eml(service.drop, [mailgen.make_message(spec)])
    assert service.wait_for("confidentiel secret")["total"] == 1
    service.search(spec.birth_date.strftime("%d/%m/%Y"))
    log_text = (service.cli.home / "logs" / "sidep-helper.log").read_text(encoding="utf-8")
    assert "GET /api/v1/certificates" in log_text
    for secret in ("CONFIDENTIEL", "confidentiel", "Secret", spec.birth_date.strftime("%d/%m/%Y"),
                   spec.birth_date.strftime("%d%%2F%m"), service.token, spec.dossier):
        assert secret not in log_text, secret


def test_hostile_requests_against_the_real_process(service: Service) -> None:
    status, body, _ = service.call("GET", "/api/v1/certificates?q=x", headers={"Origin": "null"})
    assert status == 403
    status, _, _ = service.call("GET", f"/api/v1/certificates?q=x&token={service.token}")
    assert status == 400
    request = urllib.request.Request(f"http://127.0.0.1:{service.port}/api/v1/health", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 403
    status, _, headers = service.call("GET", "/api/v1/health", headers={"Origin": EXT})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == EXT


def test_port_taken_is_a_clear_french_error(service: Service, tmp_path: Path) -> None:
    second = start(tmp_path / "other", service.port, "--port", str(service.port), "--no-watch")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 3
    message = err.decode()
    assert f"Le port {service.port} est déjà utilisé" in message
    assert "--port" in message and "port = " in message


def test_only_loopback_addresses_are_bound(service: Service) -> None:
    listening = _listening_addresses(service.port)
    assert "127.0.0.1" in listening
    assert listening <= {"127.0.0.1", "::1"}, listening


def test_sigterm_stops_cleanly(service: Service) -> None:
    service.proc.send_signal(signal.SIGTERM)
    service.proc.wait(timeout=20)
    assert service.proc.returncode == 0
    err = service.proc.stderr.read().decode() if service.proc.stderr else ""
    assert "arrêté proprement" in err


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``, from /proc/net/tcp{,6} (Linux)."""
    found: set[str] = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if size == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found
