"""The API handlers on a real loopback server, a real SQLite index, and hostile requests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import mailgen
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from apicontract import validate
from conftest import free_port

from helper import __version__
from helper.config import Settings
from helper.extension_ids import CHROMIUM_ORIGINS
from helper.index.ingest import Ingester
from helper.index.store import Store
from helper.service.api import make_app
from helper.service.audit import Audit
from helper.service.token import read_or_create

EXT = CHROMIUM_ORIGINS[0]  # the default allowed_origins: the fixed Chrome/Edge id




@dataclass
class Api:
    client: TestClient
    port: int
    token: str
    specs: list[mailgen.CertSpec]
    settings: Settings

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    rng = random.Random(7)
    specs = [mailgen.random_spec(rng) for _ in range(12)]
    specs[0] = mailgen.random_spec(rng, last_name="LEFÈVRE", first_name="Émilie", sex="F")
    mailgen.write_maildir(tmp_path / "md", [mailgen.make_message(s) for s in specs])
    port = free_port()
    settings = Settings(data_dir=tmp_path / "home", config_file=tmp_path / "home" / "config.toml", port=port,
                        printer="file-inexistante", sites={specs[0].finess: "Site des Lilas"})
    store = Store(settings.data_dir)
    Ingester(store, settings.trusted_senders, workers=1).run([tmp_path / "md"], progress=False)
    store.close()
    token = read_or_create(settings.data_dir)
    app = make_app(settings, lambda: token, audit=Audit(settings.data_dir))
    server = TestServer(app, host="127.0.0.1", port=port)
    client = TestClient(server)
    await client.start_server()
    try:
        yield Api(client, port, token, specs, settings)
    finally:
        await client.close()


async def test_health_needs_no_token_and_names_the_helper(api: Api) -> None:
    resp = await api.client.get("/api/v1/health")
    assert resp.status == 200
    body = await resp.json()
    validate(body, "/api/v1/health", "GET", 200)
    assert body["version"] == __version__
    assert resp.headers["X-Sidep-Helper"] == __version__
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_search_contract_and_accent_insensitive(api: Api) -> None:
    resp = await api.client.get("/api/v1/certificates", params={"q": "lefevre emi"}, headers=api.auth())
    assert resp.status == 200
    body = await resp.json()
    validate(body, "/api/v1/certificates", "GET", 200)
    assert body["total"] == 1
    cert = body["results"][0]
    assert cert["last_name"] == "LEFÈVRE"
    assert cert["site_name"] == "Site des Lilas"
    assert cert["print_count"] == 0 and cert["delivered_at"] is None


async def test_empty_query_lists_recent_first_and_total_counts_everything(api: Api) -> None:
    resp = await api.client.get("/api/v1/certificates", params={"limit": "5"}, headers=api.auth())
    body = await resp.json()
    validate(body, "/api/v1/certificates", "GET", 200)
    assert len(body["results"]) == 5 and body["total"] == 12
    sampled = [c["sampled_at"] for c in body["results"]]
    assert sampled == sorted(sampled, reverse=True)


async def test_bad_parameters_are_400(api: Api) -> None:
    for params in ({"limit": "abc"}, {"limit": "0"}, {"status": "tout"}, {"q": "x" * 201}):
        resp = await api.client.get("/api/v1/certificates", params=params, headers=api.auth())
        assert resp.status == 400, params
        validate(await resp.json(), "/api/v1/certificates", "GET", 400)


async def test_certificate_pdf_and_404(api: Api) -> None:
    spec = api.specs[3]
    found = await (await api.client.get("/api/v1/certificates", params={"q": spec.dossier}, headers=api.auth())).json()
    cert_id = found["results"][0]["id"]
    resp = await api.client.get(f"/api/v1/certificates/{cert_id}", headers=api.auth())
    body = await resp.json()
    validate(body, "/api/v1/certificates/{id}", "GET", 200)
    assert body["dossier"] == spec.dossier
    pdf = await api.client.get(f"/api/v1/certificates/{cert_id}/pdf", headers=api.auth())
    assert pdf.status == 200
    assert pdf.content_type == "application/pdf"
    assert pdf.headers["Content-Disposition"].startswith("inline")
    assert spec.last_name not in pdf.headers["Content-Disposition"]
    assert await pdf.read() == mailgen.make_pdf(spec)
    for path in (f"/api/v1/certificates/{cert_id + 1}", "/api/v1/certificates/999/pdf", "/api/v1/certificates/abc"):
        missing = await api.client.get(path, headers=api.auth())
        assert missing.status == 404
        assert "introuvable" in (await missing.json())["message"]


async def test_delivered_and_undo_change_the_state(api: Api) -> None:
    spec = api.specs[2]
    found = await (await api.client.get("/api/v1/certificates", params={"q": spec.dossier}, headers=api.auth())).json()
    cert_id = found["results"][0]["id"]
    resp = await api.client.post(f"/api/v1/certificates/{cert_id}/delivered", json={"initials": "MB"}, headers=api.auth())
    body = await resp.json()
    validate(body, "/api/v1/certificates/{id}/delivered", "POST", 200)
    assert body["delivered_at"] and body["delivered_by"] == "MB"
    pending = await (await api.client.get("/api/v1/certificates", params={"status": "to_deliver", "limit": "50"},
                                          headers=api.auth())).json()
    assert cert_id not in [c["id"] for c in pending["results"]] and pending["total"] == 11
    resp = await api.client.delete(f"/api/v1/certificates/{cert_id}/delivered", headers=api.auth())
    body = await resp.json()
    validate(body, "/api/v1/certificates/{id}/delivered", "DELETE", 200)
    assert body["delivered_at"] is None
    resp = await api.client.post(f"/api/v1/certificates/{cert_id}/delivered",  # no body
                                 headers=api.auth(**{"Content-Type": "application/json"}))
    assert resp.status == 200 and (await resp.json())["delivered_by"] is None


async def test_print_without_a_printer_is_a_clear_503(api: Api) -> None:
    found = await (await api.client.get("/api/v1/certificates", headers=api.auth())).json()
    cert_id = found["results"][0]["id"]
    resp = await api.client.post(f"/api/v1/certificates/{cert_id}/print",
                                 headers=api.auth(**{"Content-Type": "application/json"}))
    assert resp.status == 503
    body = await resp.json()
    validate(body, "/api/v1/certificates/{id}/print", "POST", 503)
    assert body["error"] == "no_printer"
    assert "imprimante" in body["message"].lower()
    after = await (await api.client.get(f"/api/v1/certificates/{cert_id}", headers=api.auth())).json()
    assert after["print_count"] == 0


async def test_push_a_raw_message(api: Api) -> None:
    rng = random.Random(99)
    spec = mailgen.random_spec(rng)
    raw = b"From - Mon Jun 22 10:00:00 2021\r\nX-Mozilla-Status: 0001\r\nX-Mozilla-Status2: 00000000\r\n"
    raw += mailgen.make_message(spec)
    headers = api.auth(**{"Content-Type": "message/rfc822"})
    first = await api.client.post("/api/v1/messages", data=raw, headers=headers)
    body = await first.json()
    validate(body, "/api/v1/messages", "POST", 200)
    assert [r["status"] for r in body["results"]] == ["new"]
    again = await (await api.client.post("/api/v1/messages", data=raw, headers=headers)).json()
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["certificate_id"] == body["results"][0]["certificate_id"]
    spoofed = await (await api.client.post("/api/v1/messages", data=mailgen.spoof(mailgen.random_spec(rng)),
                                           headers=headers)).json()
    assert spoofed["results"][0] == {"status": "quarantined", "certificate_id": None, "reason": "untrusted_sender",
                                     "detail": spoofed["results"][0]["detail"]}
    other = await (await api.client.post("/api/v1/messages", data=mailgen.other_mail(rng, 1), headers=headers)).json()
    assert other["results"][0]["status"] == "ignored"
    kept = list((api.settings.data_dir / "quarantine").iterdir())
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600
    empty = await api.client.post("/api/v1/messages", data=b"", headers=headers)
    assert empty.status == 400


async def test_status_contract(api: Api) -> None:
    resp = await api.client.get("/api/v1/status", headers=api.auth())
    body = await resp.json()
    validate(body, "/api/v1/status", "GET", 200)
    assert body["counts"]["certificates"] == 12
    assert body["counts"]["to_deliver"] == 12
    assert body["printer"]["available"] is False
    assert body["retention_days"] == 90


async def test_openapi_document_is_served(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json", headers=api.auth())
    assert (await resp.json())["openapi"].startswith("3.1")


# --- hostile requests: each security rule fails without its check -----------------------------------------

async def test_missing_or_wrong_token_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer faux"}, {"Authorization": f"Basic {api.token}"},
                    {"Authorization": api.token}, {"Authorization": f"Bearer {api.token[:-1]}"}):
        resp = await api.client.get("/api/v1/certificates", params={"q": "lefevre"}, headers=headers)
        assert resp.status == 401, headers
        body = await resp.json()
        validate(body, "/api/v1/certificates", "GET", 401)
        assert "results" not in body
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_every_route_but_health_needs_the_token(api: Api) -> None:
    for method, path in (("GET", "/api/v1/status"), ("GET", "/api/v1/certificates/1"),
                         ("GET", "/api/v1/certificates/1/pdf"), ("POST", "/api/v1/certificates/1/print"),
                         ("POST", "/api/v1/certificates/1/delivered"), ("DELETE", "/api/v1/certificates/1/delivered"),
                         ("POST", "/api/v1/messages"), ("GET", "/api/v1/openapi.json")):
        resp = await api.client.request(method, path)
        assert resp.status == 401, (method, path)


async def test_token_in_query_string_is_refused(api: Api) -> None:
    for name in ("token", "access_token", "Token"):
        resp = await api.client.get("/api/v1/certificates", params={"q": "lefevre", name: api.token})
        assert resp.status == 400
        assert (await resp.json())["error"] == "token_in_url"


async def test_foreign_host_is_403(api: Api) -> None:
    url = f"http://127.0.0.1:{api.port}/api/v1/health"
    async with ClientSession() as session:
        for host in ("evil.example", f"evil.example:{api.port}", f"127.0.0.1:{api.port + 1}", f"sidep.localhost:{api.port}",
                     "127.0.0.1"):
            async with session.get(url, headers={"Host": host}) as resp:
                assert resp.status == 403, host
                assert (await resp.json())["error"] == "forbidden_host"
        for host in (f"localhost:{api.port}", f"[::1]:{api.port}", f"127.0.0.1:{api.port}"):
            async with session.get(url, headers={"Host": host}) as resp:
                assert resp.status == 200, host


async def test_origins(api: Api) -> None:
    for origin in ("null", "https://evil.example", "http://localhost", "chrome-extension://", "file://"):
        resp = await api.client.get("/api/v1/certificates", headers=api.auth(Origin=origin))
        assert resp.status == 403, origin
        assert "Access-Control-Allow-Origin" not in resp.headers
    for origin in (EXT, "moz-extension://0c4d4c6b-6d8a-4b8e-9a7a-2b1f5f6f7a10"):
        resp = await api.client.get("/api/v1/certificates", headers=api.auth(Origin=origin))
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert resp.headers["Vary"] == "Origin"


async def test_default_origins_are_the_fixed_id_and_well_formed_moz_extensions(api: Api) -> None:
    assert api.settings.allowed_origins == frozenset(CHROMIUM_ORIGINS)
    assert api.settings.allow_any_extension_origin is False
    for origin in ("chrome-extension://zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
                   "moz-extension://not-a-uuid", "moz-extension://0c4d4c6b-6d8a-4b8e-9a7a-2b1f5f6f7a10/x",
                   "moz-extension://0C4D4C6B-6D8A-4B8E-9A7A-2B1F5F6F7A10x"):
        resp = await api.client.get("/api/v1/health", headers={"Origin": origin})
        assert resp.status == 403, origin
    ok = await api.client.get("/api/v1/health", headers={"Origin": "moz-extension://0c4d4c6b-6d8a-4b8e-9a7a-2b1f5f6f7a10"})
    assert ok.status == 200


async def test_only_configured_origins_when_any_extension_is_off(api: Api) -> None:
    api.settings.allow_any_extension_origin = False
    api.settings.allowed_origins = frozenset({EXT})
    ok = await api.client.get("/api/v1/health", headers={"Origin": EXT})
    assert ok.status == 200
    other = await api.client.get("/api/v1/health", headers={"Origin": "chrome-extension://zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"})
    assert other.status == 403


async def test_preflight_only_for_allowed_origins_never_star(api: Api) -> None:
    headers = {"Origin": EXT, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
    resp = await api.client.options("/api/v1/certificates/1/print", headers=headers)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == EXT
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    bad = await api.client.options("/api/v1/certificates/1/print", headers={**headers, "Origin": "https://evil.example"})
    assert bad.status == 403
    assert bad.headers.get("Access-Control-Allow-Origin") not in ("*", "https://evil.example")


async def test_form_encoded_and_text_posts_are_415(api: Api) -> None:
    for path in ("/api/v1/certificates/1/delivered", "/api/v1/certificates/1/print"):
        resp = await api.client.post(path, data={"initials": "MB"}, headers=api.auth())
        assert resp.status == 415, path
        resp = await api.client.post(path, data=b"initials=MB", headers=api.auth(**{"Content-Type": "text/plain"}))
        assert resp.status == 415, path
    resp = await api.client.post("/api/v1/messages", data=b"x", headers=api.auth(**{"Content-Type": "application/json"}))
    assert resp.status == 415


async def test_get_never_changes_state(api: Api) -> None:
    found = await (await api.client.get("/api/v1/certificates", headers=api.auth())).json()
    cert_id = found["results"][0]["id"]
    for path in (f"/api/v1/certificates/{cert_id}/print", f"/api/v1/certificates/{cert_id}/delivered", "/api/v1/messages"):
        resp = await api.client.get(path, headers=api.auth())
        assert resp.status == 405, path
    after = await (await api.client.get(f"/api/v1/certificates/{cert_id}", headers=api.auth())).json()
    assert after["delivered_at"] is None and after["print_count"] == 0


async def test_errors_also_carry_the_safety_headers(api: Api) -> None:
    resp = await api.client.get("/api/v1/certificates")
    assert resp.status == 401
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Sidep-Helper"] == __version__


async def test_audit_records_ids_and_actions_never_names(api: Api) -> None:
    spec = api.specs[0]
    found = await (await api.client.get("/api/v1/certificates", params={"q": "lefevre"},
                                        headers=api.auth(Origin=EXT))).json()
    cert_id = found["results"][0]["id"]
    await api.client.get(f"/api/v1/certificates/{cert_id}/pdf", headers=api.auth())
    await api.client.post(f"/api/v1/certificates/{cert_id}/delivered", json={"initials": "AB"}, headers=api.auth())
    reader = Audit(api.settings.data_dir)
    for _ in range(50):  # events are appended from the audit thread, a few ms after the reply
        csv_text = reader.export_csv()
        if len(csv_text.splitlines()) >= 4:
            break
        await asyncio.sleep(0.05)
    lines = csv_text.splitlines()
    assert lines[0] == "horodatage,action,certificats,origine,detail"
    actions = [line.split(",")[1] for line in lines[1:]]
    assert actions == ["search", "pdf", "delivered"]
    assert str(cert_id) in lines[1] and EXT in lines[1]
    for secret in (spec.last_name, "lefevre", spec.first_name, spec.birth_date.strftime("%d/%m/%Y"),
                   spec.birth_date.isoformat(), api.token):
        assert secret.lower() not in csv_text.lower()


def test_audit_trail_is_append_only(tmp_path: Path) -> None:
    import sqlite3

    audit = Audit(tmp_path)
    audit.record("search", [1, 2], "local")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        audit.db.execute("UPDATE events SET action = 'view'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        audit.db.execute("DELETE FROM events")
    assert "search" in audit.export_csv()


async def test_a_rotated_token_applies_at_once(tmp_path: Path) -> None:
    from helper.service.token import rotate

    port = free_port()
    settings = Settings(data_dir=tmp_path, config_file=tmp_path / "config.toml", port=port)
    current = {"token": read_or_create(tmp_path)}
    app = make_app(settings, lambda: current["token"])
    server = TestServer(app, host="127.0.0.1", port=port)
    async with TestClient(server) as client:
        old = current["token"]
        assert (await client.get("/api/v1/status", headers={"Authorization": f"Bearer {old}"})).status == 200
        current["token"] = rotate(tmp_path)
        assert (await client.get("/api/v1/status", headers={"Authorization": f"Bearer {old}"})).status == 401
        new = current["token"]
        assert (await client.get("/api/v1/status", headers={"Authorization": f"Bearer {new}"})).status == 200
        assert len(new) >= 43  # 256 bits, URL-safe base64





async def test_a_print_request_may_only_name_a_configured_printer(api: Api) -> None:
    found = await (await api.client.get("/api/v1/certificates", headers=api.auth())).json()
    cert_id = found["results"][0]["id"]
    url = f"/api/v1/certificates/{cert_id}/print"
    for printer in ("sidep-test-pdf", "Imprimante-Direction", "file-inexistante-2"):
        resp = await api.client.post(url, json={"printer": printer}, headers=api.auth())
        body = await resp.json()
        assert resp.status == 403, printer
        validate(body, "/api/v1/certificates/{id}/print", "POST", 403)
        assert body["error"] == "printer_not_allowed" and "printers" in body["message"]
    for bad in ({"printer": ""}, {"printer": 3}, {"printer": None}, {"printer": "a\nb"}, {"imprimante": "x"}):
        resp = await api.client.post(url, json=bad, headers=api.auth())
        assert resp.status == 400, bad
        validate(await resp.json(), "/api/v1/certificates/{id}/print", "POST", 400)
    # a queue IT listed gets through the check (and then fails: it does not exist on this machine)
    api.settings.printers = ("Accueil-inexistante",)
    resp = await api.client.post(url, json={"printer": "Accueil-inexistante"}, headers=api.auth())
    assert resp.status in (502, 503) and (await resp.json())["error"] in ("no_printer", "print_failed")
    resp = await api.client.post(url, json={"printer": "file-inexistante"}, headers=api.auth())  # the configured one
    assert resp.status in (502, 503)
    after = await (await api.client.get(f"/api/v1/certificates/{cert_id}", headers=api.auth())).json()
    assert after["print_count"] == 0


def test_printers_setting_is_validated(tmp_path: Path) -> None:
    from helper.config import ConfigError, load

    config = tmp_path / "config.toml"
    config.write_text('printers = ["Accueil", " Secrétariat ", "Accueil"]\n', encoding="utf-8")
    settings = load(tmp_path, config)
    assert settings.printers == ("Accueil", "Secrétariat")
    assert settings.in_force()["printers"] == ["Accueil", "Secrétariat"]
    for wrong in ('printers = "Accueil"\n', "printers = [1]\n", 'printers = [""]\n'):
        config.write_text(wrong, encoding="utf-8")
        with pytest.raises(ConfigError, match="printers"):
            load(tmp_path, config)
    assert load(tmp_path, tmp_path / "absent.toml").printers == ()
