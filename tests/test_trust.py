"""Issue 7, items 1-3: forged certificates never reach the index (through the real CLI and `serve`).

Forged senders (an address hidden in a display name or a comment, several mailboxes, groups,
Sender/Reply-To), forwards by someone not in ``trusted_forwarders``, and PDFs renamed like a
certificate are quarantined with their reason and never found by a search; genuine ones still are.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mailgen
import pytest
from conftest import Cli, free_port, recent_spec, start, wait_healthy

SIDEP = mailgen.TRUSTED_SENDER
ATTACKER = "attacker@evil.example"
NOTHING_NEW = {"new": 0, "duplicates": 0, "ignored": 0}

#: From field values that must NOT make a message trusted: each names (or may name) someone else.
FORGED_FROM = {
    "display_name_quoted": f'"<{SIDEP}>" <{ATTACKER}>',
    "comment_before": f"(<{SIDEP}>) {ATTACKER}",
    "comment_after": f"{ATTACKER} (<{SIDEP}>)",
    "display_name_plain_address": f'"{SIDEP}" <{ATTACKER}>',
    "encoded_display_name": f"=?utf-8?q?{SIDEP.replace('@', '=40')}?= <{ATTACKER}>",
    "encoded_angle_in_name": f"=?utf-8?b?{base64.b64encode(f'<{SIDEP}>'.encode()).decode()}?= <{ATTACKER}>",
    "address_then_angle": f"{SIDEP} <{ATTACKER}>",
    "two_mailboxes": f"{SIDEP}, {ATTACKER}",
    "two_mailboxes_trusted_last": f"{ATTACKER}, {SIDEP}",
    "same_mailbox_twice": f"{SIDEP}, <{SIDEP}>",
    "group": f"SI-DEP: {SIDEP};",
    "group_of_two": f"SI-DEP: {SIDEP}, {ATTACKER};",
    "unclosed_angle": f"SI-DEP <{SIDEP}",
    "unclosed_quote": f'"SI-DEP <{SIDEP}>',
    "unclosed_comment": f"{SIDEP} (SI-DEP",
    "source_route": f"<@evil.example:{SIDEP}>",
    "lookalike_domain": "noreply.sidep@enovacom.easycrypt.fr.evil.example",
    "empty": "",
}

#: From field values that name the SI-DEP address and nothing else: trusted.
GENUINE_FROM = {
    "bare": SIDEP,
    "angle": f"<{SIDEP}>",
    "display_name": f'"SI-DEP (ne pas répondre)" <{SIDEP}>',
    "comment": f"{SIDEP} (SI-DEP, ne pas répondre)",
    "nested_comment": f"(a (b) c) {SIDEP} (d (e))",
    "encoded_display_name": f"=?utf-8?q?Projet_SI-DEP_=C3=A9?= <{SIDEP}>",
    "upper_case": SIDEP.upper(),
    "folded": f'"SI-DEP"\n <{SIDEP}>',
}


def forged(spec: mailgen.CertSpec, from_value: str, **kwargs: Any) -> bytes:
    """The genuine certificate message with its From field replaced (nothing else changes)."""
    raw = mailgen.make_message(spec, **kwargs)
    marker = f"\nFrom: {SIDEP}".encode()
    assert raw.count(marker) == 1
    value = from_value.replace("\n", "\r\n" if b"\r\n" in raw else "\n").encode()
    return raw.replace(marker, b"\nFrom: " + value if from_value else b"\nFrom:")


def quarantine_by_file(cli: Cli) -> dict[str, dict[str, Any]]:
    return {Path(q["path"]).name: q for q in cli.status()["quarantine"]}


def test_forged_from_fields_are_quarantined_and_never_searchable(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(700)
    victims = {name: mailgen.random_spec(rng, last_name="USURPATEUR") for name in FORGED_FROM}
    for name, from_value in FORGED_FROM.items():
        (mail_dir / f"{name}.eml").write_bytes(forged(victims[name], from_value))
    # Sender and Reply-To naming SI-DEP never vouch for an attacker's From.
    extra = {
        "sender_header": {"Sender": SIDEP},
        "reply_to_header": {"Reply-To": f"SI-DEP <{SIDEP}>"},
        "both_headers": {"Sender": SIDEP, "Reply-To": SIDEP},
        "second_from_field": {"From": ATTACKER},  # a trusted From, then another From field
    }
    for name, headers in extra.items():
        victims[name] = mailgen.random_spec(rng, last_name="USURPATEUR")
        spec = victims[name] if name == "second_from_field" else replace(victims[name], sender=ATTACKER)
        (mail_dir / f"{name}.eml").write_bytes(mailgen.make_message(spec, extra_headers=headers))
    # No certificate subject, but the body is one and the From merely mentions SI-DEP: quarantined too.
    victims["no_subject"] = mailgen.random_spec(rng, last_name="USURPATEUR")
    (mail_dir / "no_subject.eml").write_bytes(
        forged(victims["no_subject"], FORGED_FROM["display_name_quoted"], subject="Votre résultat")
    )

    counts = cli.ingest(mail_dir)

    assert counts == {**NOTHING_NEW, "quarantined": len(victims)}
    quarantine = quarantine_by_file(cli)
    assert {n: q["reason"] for n, q in quarantine.items()} == {f"{n}.eml": "untrusted_sender" for n in victims}
    assert ATTACKER in quarantine["display_name_quoted.eml"]["detail"]
    assert ATTACKER in quarantine["comment_before.eml"]["detail"]
    assert cli.search("usurpateur")["total"] == 0
    for spec in victims.values():
        assert cli.search(spec.dossier)["total"] == 0
    assert cli.status()["certificates"] == 0


def test_genuine_from_forms_are_still_certificates(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(701)
    specs = {name: mailgen.random_spec(rng) for name in GENUINE_FROM}
    for name, from_value in GENUINE_FROM.items():
        (mail_dir / f"{name}.eml").write_bytes(forged(specs[name], from_value))
    assert cli.ingest(mail_dir) == {"new": len(specs), "duplicates": 0, "ignored": 0, "quarantined": 0}
    for spec in specs.values():
        assert cli.search(spec.dossier)["total"] == 1


# --- forwards ---------------------------------------------------------------------------------------

def test_forward_needs_a_trusted_forwarder_and_is_rechecked_when_the_setting_changes(
    cli: Cli, mail_dir: Path
) -> None:
    rng = random.Random(702)
    by_secretary, by_attacker, by_domain, fake_inside = (mailgen.random_spec(rng) for _ in range(4))
    (mail_dir / "secretariat.eml").write_bytes(mailgen.forward(mailgen.make_message(by_secretary)))
    (mail_dir / "attaquant.eml").write_bytes(mailgen.forward(mailgen.make_message(by_attacker), sender=ATTACKER))
    (mail_dir / "accueil.eml").write_bytes(
        mailgen.forward(mailgen.make_message(by_domain), sender="Accueil <accueil@labo.mssante.fr>")
    )
    # A trusted forwarder passing on the attacker's forward (or a forged inner From) vouches for nothing.
    (mail_dir / "relais.eml").write_bytes(
        mailgen.forward(mailgen.forward(mailgen.make_message(fake_inside), sender=ATTACKER))
    )
    hidden = mailgen.random_spec(rng)
    (mail_dir / "faux-interne.eml").write_bytes(mailgen.forward(forged(hidden, FORGED_FROM["comment_before"])))

    assert cli.ingest(mail_dir) == {**NOTHING_NEW, "quarantined": 5}
    quarantine = quarantine_by_file(cli)
    assert {n: q["reason"] for n, q in quarantine.items()} == {
        "secretariat.eml": "untrusted_forward", "attaquant.eml": "untrusted_forward",
        "accueil.eml": "untrusted_forward", "relais.eml": "untrusted_forward",
        "faux-interne.eml": "untrusted_sender",
    }
    # status names the forwarder, in --json and as text
    assert "secretariat@labo.mssante.fr" in quarantine["secretariat.eml"]["detail"]
    assert ATTACKER in quarantine["attaquant.eml"]["detail"]
    assert "secretariat@labo.mssante.fr" in quarantine["relais.eml"]["detail"]
    text = cli.run("status").stdout
    assert "untrusted_forward" in text and ATTACKER in text and "accueil@labo.mssante.fr" in text
    assert "trusted_forwarders" in text
    for spec in (by_secretary, by_attacker, by_domain, fake_inside, hidden):
        assert cli.search(spec.dossier)["total"] == 0

    # IT trusts the secretary's mailbox: the files, unchanged, are read again.
    cli.trust_forwarders("secretariat@labo.mssante.fr")
    assert cli.ingest(mail_dir) == {"new": 1, "duplicates": 0, "ignored": 0, "quarantined": 4}
    assert cli.search(by_secretary.dossier)["total"] == 1
    quarantine = quarantine_by_file(cli)
    assert ATTACKER in quarantine["relais.eml"]["detail"]  # now the attacker in the middle is named
    assert quarantine["relais.eml"]["reason"] == "untrusted_forward"

    # A whole domain: its exact addresses only, not look-alikes or subdomains.
    (mail_dir / "sous-domaine.eml").write_bytes(
        mailgen.forward(mailgen.make_message(mailgen.random_spec(rng)), sender="x@autre.labo.mssante.fr")
    )
    (mail_dir / "sosie.eml").write_bytes(
        mailgen.forward(mailgen.make_message(mailgen.random_spec(rng)), sender="x@labo.mssante.fr.evil.example")
    )
    cli.trust_forwarders("@LABO.mssante.fr")
    counts = cli.ingest(mail_dir)
    assert counts["new"] == 1 and counts["quarantined"] == 5
    assert cli.search(by_domain.dossier)["total"] == 1
    for spec in (by_attacker, fake_inside, hidden):
        assert cli.search(spec.dossier)["total"] == 0
    reasons = {n: q["reason"] for n, q in quarantine_by_file(cli).items()}
    assert reasons == {
        "attaquant.eml": "untrusted_forward", "relais.eml": "untrusted_forward",
        "faux-interne.eml": "untrusted_sender", "sous-domaine.eml": "untrusted_forward",
        "sosie.eml": "untrusted_forward",
    }
    assert cli.search(by_secretary.dossier)["total"] == 1  # its address is in the domain too


def test_trusted_forwarders_setting_is_validated_and_shown(cli: Cli) -> None:
    assert cli.json("config")["trusted_forwarders"] == []
    cli.write_config('trusted_forwarders = ["Secretariat@Labo.MSSante.fr", "@Labo.mssante.fr"]\n')
    assert cli.json("config")["trusted_forwarders"] == ["@labo.mssante.fr", "secretariat@labo.mssante.fr"]
    for bad in ('"pas une adresse"', '"a@b, c@d"', '"@"', '"Nom <a@b.fr>"', "42"):
        cli.write_config(f"trusted_forwarders = [{bad}]\n")
        proc = cli.run("config", check=False)
        assert proc.returncode != 0, bad
        assert "trusted_forwarders" in proc.stderr and "Traceback" not in proc.stderr
    cli.write_config('trusted_senders = ["@enovacom.easycrypt.fr"]\n')  # a sender is one address, never a domain
    proc = cli.run("config", check=False)
    assert proc.returncode != 0 and "trusted_senders" in proc.stderr
    from helper.config import DEFAULT_CONFIG

    assert "# trusted_forwarders = " in DEFAULT_CONFIG


# --- bare PDFs ---------------------------------------------------------------------------------------

def test_renamed_pdfs_are_not_certificates_and_genuine_ones_are(cli: Cli, tmp_path: Path) -> None:
    downloads = tmp_path / "Téléchargements"
    downloads.mkdir()
    rng = random.Random(703)
    genuine = mailgen.random_spec(rng, last_name="LEFÈVRE", first_name="Émilie")
    (downloads / mailgen.pdf_filename(genuine)).write_bytes(mailgen.make_pdf(genuine))
    # The browser may have dropped the accents from the name: the text still confirms it.
    plain = mailgen.random_spec(rng, last_name="CŒUR", first_name="Anaïs")
    (downloads / mailgen.ascii_fold(mailgen.pdf_filename(plain))).write_bytes(mailgen.make_pdf(plain))

    # A layout that prints the dossier number without the usual label: still confirmed.
    unlabelled = mailgen.random_spec(rng, last_name="SANSLIBELLÉ")
    lines = [f"Dossier n° {unlabelled.dossier}" if line.startswith("Numéro de dossier") else line
             for line in mailgen.pdf_text_lines(unlabelled)]
    (downloads / mailgen.pdf_filename(unlabelled)).write_bytes(mailgen.make_text_pdf(lines))

    invoice = mailgen.random_spec(rng, last_name="FACTURE")
    (downloads / mailgen.pdf_filename(invoice)).write_bytes(
        mailgen.make_text_pdf(["FACTURE N° 2021-0042", "Montant : 120,00 EUR", "Échéance : 30/06/2021"])
    )
    other_patient, victim = mailgen.random_spec(rng), mailgen.random_spec(rng, last_name="VICTIME")
    (downloads / mailgen.pdf_filename(victim)).write_bytes(mailgen.make_pdf(other_patient))
    same_name = replace(other_patient, dossier=other_patient.dossier + "9")  # name right, dossier wrong
    (downloads / mailgen.pdf_filename(same_name)).write_bytes(mailgen.make_pdf(other_patient))
    no_birth = mailgen.random_spec(rng, last_name="SANSDATE")
    lines = [line for line in mailgen.pdf_text_lines(no_birth) if not line.startswith("Date de naissance")]
    (downloads / mailgen.pdf_filename(no_birth)).write_bytes(mailgen.make_text_pdf(lines))
    empty = mailgen.random_spec(rng, last_name="VIDE")
    (downloads / mailgen.pdf_filename(empty)).write_bytes(mailgen.make_text_pdf([]))
    broken = mailgen.random_spec(rng, last_name="ILLISIBLE")
    (downloads / mailgen.pdf_filename(broken)).write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)

    counts = cli.ingest(downloads)

    assert counts == {"new": 3, "duplicates": 0, "ignored": 0, "quarantined": 6}
    for spec in (genuine, plain, unlabelled):
        [cert] = cli.search(spec.dossier)["results"]
        assert cert["pdf_only"] is True and cert["birth_date"] == spec.birth_date.isoformat()
        assert cert["last_name"] == spec.last_name
    for spec in (invoice, victim, same_name, no_birth, empty, broken):
        assert cli.search(spec.dossier)["total"] == 0
    assert cli.search("victime")["total"] == 0 and cli.search("facture")["total"] == 0
    quarantine = quarantine_by_file(cli)
    by_name = {spec.last_name: quarantine[mailgen.pdf_filename(spec)] for spec in
               (invoice, victim, same_name, no_birth, empty, broken)}
    assert {k: q["reason"] for k, q in by_name.items()} == {
        "FACTURE": "pdf_not_certificate", "VICTIME": "pdf_not_certificate",
        same_name.last_name: "pdf_not_certificate", "SANSDATE": "pdf_not_certificate",
        "VIDE": "pdf_not_certificate", "ILLISIBLE": "pdf_unreadable",
    }
    assert "date de naissance" in by_name["SANSDATE"]["detail"]
    assert "dossier" in by_name[same_name.last_name]["detail"]
    assert "nom" in by_name["VICTIME"]["detail"]


# --- the API push route, on a real `serve` -------------------------------------------------------------------

@dataclass
class Served:
    port: int
    token: str

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "message/rfc822")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def push(self, raw: bytes) -> dict[str, Any]:
        status, body = self.call("POST", "/api/v1/messages", raw)
        assert status == 200, body
        [result] = body["results"]
        return result

    def total(self, q: str) -> int:
        status, body = self.call("GET", "/api/v1/certificates?q=" + urllib.parse.quote(q))
        assert status == 200
        return body["total"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    cli = Cli(tmp_path / "home")
    port = free_port()
    cli.write_config(
        f'port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n'
        'trusted_forwarders = ["secretariat@labo.mssante.fr"]\n'
    )
    proc = start(cli.home, port, "--no-watch")
    try:
        wait_healthy(port, proc)
        yield Served(port, cli.run("token").stdout.strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pushed_messages_follow_the_same_trust_rules(served: Served) -> None:
    rng = random.Random(704)
    specs = [recent_spec(rng) for _ in range(6)]
    for spec, name in zip(specs[:2], ("display_name_quoted", "comment_before"), strict=True):
        result = served.push(forged(spec, FORGED_FROM[name]))
        assert (result["status"], result["reason"]) == ("quarantined", "untrusted_sender")
        assert ATTACKER in result["detail"]
    sender_only = mailgen.make_message(replace(specs[2], sender=ATTACKER), extra_headers={"Sender": SIDEP})
    assert served.push(sender_only)["reason"] == "untrusted_sender"
    by_attacker = served.push(mailgen.forward(mailgen.make_message(specs[3]), sender=ATTACKER))
    assert (by_attacker["status"], by_attacker["reason"]) == ("quarantined", "untrusted_forward")
    assert ATTACKER in by_attacker["detail"]
    assert served.push(mailgen.forward(mailgen.make_message(specs[4])))["status"] == "new"
    assert served.push(mailgen.make_message(specs[5]))["status"] == "new"

    for spec in specs[:4]:
        assert served.total(spec.dossier) == 0
    for spec in specs[4:]:
        assert served.total(spec.dossier) == 1
    status, body = served.call("GET", "/api/v1/status")
    assert status == 200
    reasons = sorted(q["reason"] for q in body["quarantine"])
    assert reasons == ["untrusted_forward", "untrusted_sender", "untrusted_sender", "untrusted_sender"]
    [fwd] = [q for q in body["quarantine"] if q["reason"] == "untrusted_forward"]
    assert ATTACKER in fwd["detail"]
