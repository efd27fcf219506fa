"""Verified certificates: the PDF's 2D-DOC and EU DCC are read, their signatures checked against a
trust list, and their contents compared with the mail (issue 12).

Every PDF here is built at test time with real Data Matrix and QR images drawn by zxing-cpp and
signed with keys made by ``cryptography``; the helper renders the page (pypdfium2) and reads them
in its bounded PDF child, as for a real certificate.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import barcodegen as bg
import cups
import mailgen
import pytest
from aiohttp.test_utils import TestClient, TestServer
from apicontract import validate
from conftest import Cli, free_port

from helper.config import Settings
from helper.index.ingest import Ingester
from helper.index.store import Store
from helper.parse import barcodes, pdftext
from helper.parse.message import ParseConfig, parse_message
from helper.parse.pdfcert import certificate_from_pdf
from helper.parse.trust import TrustPolicy
from helper.parse.verify import name_key
from helper.service.api import make_app
from helper.service.audit import Audit
from helper.service.token import read_or_create

SIGNER = bg.Signer.new()
STRANGER = bg.Signer.new(ca="FR09", cert="ZZ99", kid=b"otherkid")  # never in the trust list


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    return bg.write_trust_list(tmp_path / "liste-de-confiance", SIGNER)


def policy(trust_dir: Path, **kw: object) -> TrustPolicy:
    return TrustPolicy(verify_barcodes=True, barcode_trust_list=str(trust_dir), **kw)  # type: ignore[arg-type]


def spec_of(seed: int = 1, **kw: object) -> mailgen.CertSpec:
    base = {"last_name": "O'LEARY-MÜLLER", "first_name": "Zoé", "sampled_at": dt.datetime(2021, 6, 21, 9, 41),
            "integrated_at": dt.datetime(2021, 6, 21, 15, 2), "result": "NEGATIF", "sex": "F"}
    base.update(kw)
    return mailgen.random_spec(random.Random(seed), **base)


def only(raw: bytes, pol: TrustPolicy):  # noqa: ANN201
    outcomes = parse_message(raw, ParseConfig(trust=pol))
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


# --- names, barcodes ------------------------------------------------------------------------------

def test_names_are_transliterated_as_the_barcodes_write_them() -> None:
    assert name_key("O'Leary") == "OLEARY"
    assert name_key("Müller") == "MUELLER"
    assert name_key("Lefèvre-Cœur") == "LEFEVRECOEUR"
    assert name_key("DE LA FONTAINE") == name_key("de la Fontaine") == "DELAFONTAINE"


def test_2ddoc_header_and_b2_fields_are_parsed() -> None:
    spec = spec_of()
    doc = barcodes.parse_2ddoc(bg.twoddoc(spec, SIGNER))
    assert (doc.version, doc.ca_id, doc.cert_id, doc.doc_type, doc.perimeter, doc.country) == (
        "04", "FR01", "TS01", "B2", "01", "FR")
    assert doc.issued == doc.signed == "2021-06-21"
    assert doc.fields == {"F0": "ZOE", "F1": "OLEARY MUELLER", "F2": spec.birth_date.strftime("%d%m%Y"),
                          "F3": "F", "F4": spec.analysis_code.replace("-", ""), "F5": "N", "F6": "210620210941"}
    assert len(doc.signature) == 64 and b"\x1f" not in doc.signed_data


def test_dcc_is_decoded_to_its_test_entry() -> None:
    spec = spec_of()
    dcc = barcodes.parse_hc1(bg.hc1(spec, SIGNER))
    test = barcodes.dcc_test(dcc.certificate)
    assert dcc.kid == SIGNER.kid and dcc.alg == -7
    assert dcc.certificate["nam"]["fnt"] == "OLEARY<MUELLER" and dcc.certificate["dob"] == spec.birth_date.isoformat()
    assert test["tr"] == "260415000" and test["sc"] == "2021-06-21T07:41:00Z" and test["tt"] == "LP6464-4"


# --- the four verdicts, from mail --------------------------------------------------------------------

def test_signed_barcodes_that_agree_with_the_mail_are_verified(trust_dir: Path) -> None:
    spec = spec_of()
    out = only(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER)), policy(trust_dir))
    v = out.certificate.verification
    assert out.status == "certificate" and v["status"] == "verified" and v["label"] == "vérifié"
    assert [(b["type"], b["signature"]) for b in v["barcodes"]] == [("2d-doc", "valid"), ("dcc", "valid")]
    assert out.certificate.raw["barcode.2d-doc"].startswith("DC04FR01TS01") and "<US>" in out.certificate.raw["barcode.2d-doc"]
    assert out.certificate.raw["barcode.dcc.1"].startswith("HC1:")


@pytest.mark.parametrize("field, change", [
    ("birth_date", {"birth_date": dt.date(1961, 2, 3)}),
    ("last_name", {"last_name": "O'LEARY-MILLER"}),
    ("result", {"result": "POSITIF"}),
    ("sampled_at", {"sampled_at": dt.datetime(2021, 6, 21, 10, 41)}),
])
def test_one_field_altered_in_the_mail_is_a_mismatch_naming_it(trust_dir: Path, field: str, change: dict) -> None:
    spec = spec_of()
    altered = replace(spec, **change)
    out = only(mailgen.make_message(altered, pdf=bg.certificate_pdf(spec, SIGNER)), policy(trust_dir))
    v = out.certificate.verification
    assert out.status == "certificate"  # a trusted sender: kept, but never printed by one click
    assert v["status"] == "mismatch" and v["fields"] == [field], v
    assert {d["field"] for d in v["differences"]} == {field}
    assert "ne correspond pas" in v["detail"]


def test_a_key_missing_from_the_trust_list_is_unverifiable(trust_dir: Path) -> None:
    spec = spec_of()
    out = only(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, STRANGER)), policy(trust_dir))
    v = out.certificate.verification
    assert v["status"] == "unverifiable" and v["label"] == "signature non vérifiable"
    assert {b["signature"] for b in v["barcodes"]} == {"unknown_key"}
    assert "liste de confiance" in v["detail"]


def test_flipped_signature_bytes_are_an_invalid_signature(trust_dir: Path) -> None:
    spec = spec_of()
    out = only(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER, flip=True)), policy(trust_dir))
    assert out.certificate.verification["status"] == "invalid_signature"
    assert {b["signature"] for b in out.certificate.verification["barcodes"]} == {"invalid"}


def test_a_pdf_without_barcode_is_unverifiable(trust_dir: Path) -> None:
    spec = spec_of()
    out = only(mailgen.make_message(spec), policy(trust_dir))
    v = out.certificate.verification
    assert v["status"] == "unverifiable" and v["barcodes"] == [] and "aucun code-barres" in v["detail"]


def test_bulk_json_trust_list_is_read_too(tmp_path: Path) -> None:
    folder = bg.write_trust_list(tmp_path / "bulk", SIGNER, bulk=True)
    spec = spec_of()
    out = only(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER)), policy(folder))
    assert out.certificate.verification["status"] == "verified"


def test_garbage_and_huge_barcodes_are_unverifiable_without_crash(trust_dir: Path) -> None:
    spec = spec_of()
    rng = random.Random(4)
    garbage = [
        b"DC04FR01TS011FD91FD9B201FRF0\x1dF9xx\x1fAAAA",  # unknown field
        b"DC99" + bytes(rng.randrange(32, 127) for _ in range(300)),  # unknown version
        b"HC1:" + bytes(rng.choice(b"0123456789ABCDEF$%*") for _ in range(600)),  # base45 noise
        b"HC1:" + bg.b45encode(b"\x78\x9c" + bytes(rng.randrange(256) for _ in range(900))).encode(),  # zlib noise
        bytes(rng.randrange(256) for _ in range(1500)),  # binary noise
    ]
    pdf = bg.pdf_with_barcodes(mailgen.pdf_text_lines(spec), garbage[:2] + garbage[4:], garbage[2:4])
    start = time.monotonic()
    out = only(mailgen.make_message(spec, pdf=pdf), policy(trust_dir))
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS
    v = out.certificate.verification
    assert out.status == "certificate" and v["status"] == "unverifiable"
    assert sorted(b["signature"] for b in v["barcodes"]) == ["unreadable"] * 4  # binary noise is no barcode type
    # A zlib bomb inside a valid-looking DCC is refused after a bounded inflate.
    bomb = b"HC1:" + bg.b45encode(__import__("zlib").compress(b"\0" * 5_000_000, 9)).encode()
    with pytest.raises(barcodes.BarcodeError):
        barcodes.parse_hc1(bomb)


def test_a_huge_page_is_rendered_within_bounds(trust_dir: Path) -> None:
    spec = spec_of()
    pdf = bg.pdf_with_barcodes(mailgen.pdf_text_lines(spec), [bg.twoddoc(spec, SIGNER)], media=(14400, 14400))
    start = time.monotonic()
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir))
    assert time.monotonic() - start < pdftext.TIMEOUT_SECONDS + 1
    assert info is not None and isinstance(info.barcodes, list)  # read or not, the child answered in time


# --- trust: a verified barcode vouches for an untrusted route ----------------------------------------

def test_a_verified_certificate_forwarded_by_an_unknown_mailbox_is_trusted(trust_dir: Path) -> None:
    spec = spec_of()
    raw = mailgen.forward(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER)))
    out = only(raw, policy(trust_dir))
    assert out.status == "certificate" and out.certificate.verification["status"] == "verified"


@pytest.mark.parametrize("signer, flip, altered", [(None, False, False), (STRANGER, False, False),
                                                   (SIGNER, True, False), (SIGNER, False, True)])
def test_a_forward_that_does_not_verify_stays_in_quarantine(trust_dir: Path, signer, flip, altered) -> None:
    spec = spec_of()
    mail_spec = replace(spec, birth_date=dt.date(1950, 1, 1)) if altered else spec
    pdf = bg.certificate_pdf(spec, signer, flip=flip) if signer else mailgen.make_pdf(spec)
    raw = mailgen.forward(mailgen.make_message(mail_spec, pdf=pdf))
    out = only(raw, policy(trust_dir))
    assert out.status == "quarantined" and out.reason == "untrusted_forward"
    assert "code-barres" in out.detail
    # A forged sender is no different.
    out = only(mailgen.spoof(mail_spec, pdf=pdf), policy(trust_dir))
    assert out.status == "quarantined" and out.reason == "untrusted_sender"


def test_verification_off_keeps_the_old_rules(trust_dir: Path) -> None:
    spec = spec_of()
    raw = mailgen.forward(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, SIGNER)))
    out = only(raw, TrustPolicy(verify_barcodes=False, barcode_trust_list=str(trust_dir)))
    assert out.status == "quarantined" and out.reason == "untrusted_forward"


def _bare(pdf: bytes, name: str, trust_dir: Path):  # noqa: ANN202
    info = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir))
    return certificate_from_pdf(name, pdf, info.text if info else None, info.created if info else None,
                                policy=policy(trust_dir), barcodes=info.barcodes if info else None)


def test_bare_pdf_whose_text_does_not_confirm_it_is_trusted_by_its_verified_barcode(trust_dir: Path) -> None:
    spec = spec_of()
    pdf = bg.pdf_with_barcodes(["CERTIFICAT DE TEST COVID-19"], [bg.twoddoc(spec, SIGNER)])  # no labelled text
    out = _bare(pdf, mailgen.pdf_filename(spec), trust_dir)
    assert out.status == "certificate" and out.certificate.verification["status"] == "verified"
    # The verified barcode fills the identity traits the text did not give.
    assert out.certificate.birth_date == spec.birth_date.isoformat() and out.certificate.sex == "F"
    assert out.certificate.outcome == "negative"
    # Without a verified barcode, the same PDF stays in quarantine.
    out = _bare(bg.pdf_with_barcodes(["CERTIFICAT DE TEST COVID-19"], [bg.twoddoc(spec, STRANGER)]),
                mailgen.pdf_filename(spec), trust_dir)
    assert out.status == "quarantined" and out.reason == "pdf_not_certificate" and "signature non vérifiable" in out.detail


def test_bare_pdf_named_for_someone_else_is_a_mismatch_on_the_file_name(trust_dir: Path) -> None:
    spec = spec_of()
    other_name = mailgen.pdf_filename(replace(spec, last_name="DURAND"))
    pdf = bg.pdf_with_barcodes(["CERTIFICAT DE TEST COVID-19"], [bg.twoddoc(spec, SIGNER)])
    out = _bare(pdf, other_name, trust_dir)
    assert out.status == "quarantined" and out.reason == "pdf_not_certificate"
    assert "ne correspond pas au courriel" in out.detail


# --- CLI and API ------------------------------------------------------------------------------------

def _corpus(folder: Path) -> dict[str, mailgen.CertSpec]:
    return bg.verdict_corpus(folder, SIGNER, STRANGER)


def test_cli_shows_the_verification_in_text_and_json(cli: Cli, tmp_path: Path, trust_dir: Path) -> None:
    specs = _corpus(tmp_path / "eml")
    cli.write_config(f"barcode_trust_list = {json.dumps(str(trust_dir))}\n")
    report = cli.ingest(tmp_path / "eml")
    assert report["new"] == 4 and report["duplicates"] == 1 and report["quarantined"] == 0  # the forward verifies
    expected = {"verified": ("verified", []), "mismatch": ("mismatch", ["sex"]),
                "unverifiable": ("unverifiable", []), "invalid": ("invalid_signature", [])}
    lines = {"verified": "code-barres : vérifié", "mismatch": "ATTENTION code-barres : ne correspond pas (sexe)",
             "unverifiable": "code-barres : signature non vérifiable", "invalid": "ATTENTION code-barres : signature invalide"}
    for key, spec in specs.items():
        found = cli.search(spec.dossier)["results"]
        assert len(found) == 1
        v = found[0]["verification"]
        assert (v["status"], v["fields"]) == expected[key]
        text = cli.run("search", spec.dossier).stdout
        assert lines[key] in text, text
    config = cli.json("config")
    assert config["barcode_trust_list"] == str(trust_dir) and config["verify_barcodes"] is True


@pytest.fixture
async def api(tmp_path: Path, trust_dir: Path):  # noqa: ANN201
    specs = _corpus(tmp_path / "eml")
    port = free_port()
    settings = Settings(data_dir=tmp_path / "home", config_file=tmp_path / "home" / "config.toml", port=port,
                        printer=cups.QUEUE, barcode_trust_list=trust_dir)
    store = Store(settings.data_dir)
    Ingester(store, settings.trust(), workers=1).run([tmp_path / "eml"], progress=False)
    store.close()
    token = read_or_create(settings.data_dir)
    client = TestClient(TestServer(make_app(settings, lambda: token, audit=Audit(settings.data_dir)),
                                   host="127.0.0.1", port=port))
    await client.start_server()
    try:
        yield client, {"Authorization": f"Bearer {token}"}, specs, settings
    finally:
        await client.close()


async def _find(client: TestClient, auth: dict, spec: mailgen.CertSpec) -> dict:
    body = await (await client.get("/api/v1/certificates", params={"q": spec.dossier}, headers=auth)).json()
    validate(body, "/api/v1/certificates", "GET", 200)
    assert len(body["results"]) == 1
    return body["results"][0]


async def test_api_refuses_one_click_print_of_a_mismatch_and_records_the_confirmation(api) -> None:
    cups.ensure_cups_pdf()
    client, auth, specs, settings = api
    mismatch = await _find(client, auth, specs["mismatch"])
    assert mismatch["verification"]["status"] == "mismatch"
    assert mismatch["verification"]["differences"][0]["field"] == "sex"
    url = f"/api/v1/certificates/{mismatch['id']}/print"
    resp = await client.post(url, headers={**auth, "Content-Type": "application/json"})  # as the panel's one click
    body = await resp.json()
    assert resp.status == 409 and body["error"] == "confirmation_required"
    validate(body, "/api/v1/certificates/{id}/print", "POST", 409)
    resp = await client.post(url, json={"confirm_unverified": False}, headers=auth)
    assert resp.status == 409
    resp = await client.post(url, json={"confirm_unverified": True}, headers=auth)
    assert resp.status == 200, await resp.text()
    validate(await resp.json(), "/api/v1/certificates/{id}/print", "POST", 200)
    invalid = await _find(client, auth, specs["invalid"])
    assert (await client.post(f"/api/v1/certificates/{invalid['id']}/print", json={}, headers=auth)).status == 409
    # A verified or merely unverifiable certificate prints with one click.
    for key in ("verified", "unverifiable"):
        cert = await _find(client, auth, specs[key])
        resp = await client.post(f"/api/v1/certificates/{cert['id']}/print", json={}, headers=auth)
        assert resp.status == 200, await resp.text()
        validate(await (await client.get(f"/api/v1/certificates/{cert['id']}", headers=auth)).json(),
                 "/api/v1/certificates/{id}", "GET", 200)
    reader = Audit(settings.data_dir)
    for _ in range(50):
        csv_text = reader.export_csv()
        if csv_text.count(",print,") >= 3:
            break
        await asyncio.sleep(0.05)
    prints = [line for line in csv_text.splitlines() if ",print," in line]
    assert len(prints) == 3
    assert "confirmation=mismatch champs=sex" in prints[0] and str(mismatch["id"]) in prints[0]
    assert "confirmation" not in prints[1] and "confirmation" not in prints[2]
    for secret in (specs["mismatch"].last_name, "ALMEIDA", specs["mismatch"].birth_date.isoformat()):
        assert secret.lower() not in csv_text.lower()


def test_trust_list_key_names_are_base64url() -> None:
    # ``+`` and ``/`` in a kid never become a path: the file is looked up under its base64url name.
    kid = bytes([0xFB, 0xFF, 0xBF]) + b"xyz"
    assert base64.b64encode(kid).decode() == "+/+/eHl6"
    from helper.parse.trustlist import TrustList

    assert TrustList("/nonexistent").key("dcc", "+/+/eHl6") is None
    assert TrustList("/nonexistent").key("2d-doc", "../../etc/passwd") is None


def test_the_reader_child_is_replaced_after_a_timeout_or_a_crash(trust_dir: Path) -> None:
    from helper.parse import pdfworker

    spec = spec_of()
    pdf = bg.certificate_pdf(spec, SIGNER)
    assert pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir), timeout=0.001) is None  # over time: killed
    first = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir))
    assert first is not None and [b["signature"] for b in first.barcodes] == ["valid", "valid"]
    pid = pdfworker._child.proc.pid
    pdfworker._child.proc.kill()  # a crash in a native library
    pdfworker._child.proc.wait()
    again = pdftext.extract(pdf, barcodes=True, trust_list=str(trust_dir))
    assert again is not None and again.barcodes == first.barcodes and pdfworker._child.proc.pid != pid
    # A PDF that is no PDF: unreadable, the same child goes on.
    pid = pdfworker._child.proc.pid
    assert pdftext.extract(b"%PDF-1.4\n" + bytes(5000), barcodes=True, trust_list=str(trust_dir)).barcodes == []
    assert pdfworker._child.proc.pid == pid


def test_quarantined_forward_is_read_again_when_it_adds_the_key(cli: Cli, tmp_path: Path) -> None:
    spec = bg.spec_for(30, last_name="KEYLATER")  # recent: within the retention
    late = bg.Signer.new(ca="FR04", cert="NEW1", kid=b"newkid01")
    mailgen.write_eml(tmp_path / "eml", [mailgen.forward(mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, late)))])
    folder = bg.write_trust_list(tmp_path / "liste", SIGNER)
    cli.write_config(f"barcode_trust_list = {json.dumps(str(folder))}\n")
    first = cli.ingest(tmp_path / "eml")
    assert first["new"] == 0 and first["quarantined"] == 1
    assert "signature non vérifiable" in cli.status()["quarantine"][0]["detail"]
    assert cli.ingest(tmp_path / "eml")["quarantined"] == 0  # unchanged file, unchanged list: not read again
    bg.write_trust_list(folder, late)  # IT installs the missing key
    again = cli.ingest(tmp_path / "eml")
    assert again["new"] == 1 and cli.status()["quarantined"] == 0
    assert cli.search("keylater")["results"][0]["verification"]["status"] == "verified"


def test_barcode_settings_are_checked(cli: Cli) -> None:
    cli.write_config("barcode_trust_list = 3\n")
    proc = cli.run("config", check=False)
    assert proc.returncode != 0 and "barcode_trust_list" in proc.stderr
    cli.write_config('verify_barcodes = "oui"\n')
    proc = cli.run("config", check=False)
    assert proc.returncode != 0 and "verify_barcodes" in proc.stderr and "true ou false" in proc.stderr
    cli.write_config("verify_barcodes = false\n")
    config = cli.json("config")
    assert config["verify_barcodes"] is False
    assert config["barcode_trust_list"] == str(cli.home / "liste-de-confiance")  # beside config.toml
