"""Every source format and encoding variant, through the command line as a lab's IT runs it."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import mailgen
import pytest
from conftest import Cli

from helper.parse.text import fold


def all_certificates(cli: Cli) -> dict[str, dict]:
    """Every indexed certificate, keyed by dossier number."""
    result = cli.search("", limit=500)
    assert result["total"] == len(result["results"])
    return {c["dossier"]: c for c in result["results"]}


def expected_sampled(spec: mailgen.CertSpec, variant: dict[str, str]) -> str:
    style = variant.get("date_style", "fr")
    when = spec.sampled_at if style in ("iso", "fr_seconds") else spec.sampled_at.replace(second=0)
    return when.isoformat(timespec="seconds")


def assert_matches_spec(cert: dict, spec: mailgen.CertSpec, variant: dict[str, str]) -> None:
    assert cert["last_name"] == spec.last_name
    assert cert["first_name"] == spec.first_name
    assert cert["site_finess"] == spec.finess
    assert cert["dossier"] == spec.dossier
    assert cert["sex"] == spec.sex
    assert cert["birth_date"] == spec.birth_date.isoformat()
    assert cert["ins"] == (None if variant.get("ins_style") == "none" else spec.ins)
    assert cert["analysis_code"] == spec.analysis_code
    assert cert["analysis_label"] == spec.analysis_label
    assert cert["sampled_at"] == expected_sampled(spec, variant)
    assert cert["integrated_at"][:16] == spec.integrated_at.isoformat()[:16]
    assert cert["result"] == spec.result
    assert cert["outcome"] in ("positive", "negative", "inconclusive")
    assert cert["message_id"] == spec.message_id
    assert cert["superseded"] is False
    assert cert["pdf_only"] is False
    assert cert["warnings"] == [], cert["warnings"]
    assert cert["pdf_sha256"] == hashlib.sha256(mailgen.make_pdf(spec)).hexdigest()


def test_every_encoding_variant_as_eml(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(11)
    corpus = mailgen.corpus(rng, 81)  # three full cycles of (CTE × charset × body kind)
    mailgen.write_eml(mail_dir, [raw for _, raw in corpus])
    counts = cli.ingest(mail_dir)
    assert counts == {"new": 81, "duplicates": 0, "ignored": 0, "quarantined": 0}
    by_dossier = all_certificates(cli)
    for i, (spec, _) in enumerate(corpus):
        assert_matches_spec(by_dossier[spec.dossier], spec, mailgen.corpus_variant(i))
        assert by_dossier[spec.dossier]["source"] == "eml"


def test_results_and_outcomes_as_written(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(5)
    written = {"POSITIF": "positive", "Négatif": "negative", "Ininterprétable": "inconclusive", "N": "negative",
               "P": "positive", "X": "inconclusive", "NEGATIF": "negative"}
    specs = [mailgen.random_spec(rng, result=r) for r in written]
    mailgen.write_eml(mail_dir, [mailgen.make_message(s) for s in specs])
    cli.ingest(mail_dir)
    by_dossier = all_certificates(cli)
    for spec in specs:
        assert by_dossier[spec.dossier]["result"] == spec.result
        assert by_dossier[spec.dossier]["outcome"] == written[spec.result]


def test_thunderbird_profile_mbox_files(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(21)
    profile = tmp_path / "Thunderbird" / "Profiles" / "abcd.default-release"
    local = [mailgen.random_spec(rng) for _ in range(6)]
    imap = [mailgen.random_spec(rng) for _ in range(5)]
    noise = [mailgen.other_mail(rng, i) for i in range(7)]  # one has a body line starting "From "
    mailgen.write_mbox(profile / "Mail" / "Local Folders" / "Inbox", [mailgen.make_message(s) for s in local] + noise[:4])
    mailgen.write_mbox(
        profile / "ImapMail" / "imap.mssante.fr" / "INBOX.mbox", [mailgen.make_message(s) for s in imap] + noise[4:]
    )
    assert (profile / "Mail" / "Local Folders" / "Inbox.msf").exists()
    counts = cli.ingest(tmp_path / "Thunderbird")
    assert counts == {"new": 11, "duplicates": 0, "ignored": 7, "quarantined": 0}
    by_dossier = all_certificates(cli)
    for spec in local + imap:
        assert_matches_spec(by_dossier[spec.dossier], spec, {})
        assert by_dossier[spec.dossier]["source"] == "mbox"


def test_mbox_escaped_from_lines_are_restored(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(3)
    spec = mailgen.random_spec(rng)
    mailgen.write_mbox(tmp_path / "Inbox", [mailgen.make_message(spec, body_kind="plain", body_cte="8bit")])
    raw = (tmp_path / "Inbox").read_bytes()
    assert raw.startswith(b"From ")
    assert cli.ingest(tmp_path / "Inbox")["new"] == 1
    assert cli.search(spec.dossier)["results"][0]["last_name"] == spec.last_name


def test_growing_mbox_is_read_from_where_it_stopped(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(8)
    first = [mailgen.random_spec(rng) for _ in range(4)]
    later = [mailgen.random_spec(rng) for _ in range(3)]
    box = tmp_path / "Inbox"
    mailgen.write_mbox(box, [mailgen.make_message(s) for s in first])
    assert cli.ingest(box)["new"] == 4
    before = box.stat().st_size
    mailgen.write_mbox(tmp_path / "more", [mailgen.make_message(s) for s in later])
    with open(box, "ab") as fh:
        fh.write((tmp_path / "more").read_bytes())
    (tmp_path / "more").unlink()
    (tmp_path / "more.msf").unlink(missing_ok=True)
    counts = cli.ingest(box)
    # Only the appended messages were read: nothing re-read counts as a duplicate.
    assert counts == {"new": 3, "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert box.stat().st_size > before
    assert cli.status()["certificates"] == 7


def test_rewritten_mbox_is_read_again_without_duplicates(cli: Cli, tmp_path: Path) -> None:
    """Thunderbird compacts a folder by rewriting it: everything left is known already."""
    rng = random.Random(9)
    specs = [mailgen.random_spec(rng) for _ in range(5)]
    box = tmp_path / "Inbox"
    mailgen.write_mbox(box, [mailgen.make_message(s) for s in specs])
    assert cli.ingest(box)["new"] == 5
    mailgen.write_mbox(box, [mailgen.make_message(s) for s in specs[2:]])  # two deleted, file rewritten
    counts = cli.ingest(box)
    assert counts["new"] == 0
    assert counts["duplicates"] == 3
    assert cli.status()["certificates"] == 5


def test_maildir(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(31)
    specs = [mailgen.random_spec(rng) for _ in range(8)]
    root = mailgen.write_maildir(tmp_path / "Maildir", [mailgen.make_message(s) for s in specs])
    assert any((root / "new").iterdir()) and any((root / "cur").iterdir())
    (root / "tmp" / "1624356000.M1P1.partial").write_bytes(mailgen.make_message(specs[0])[:500])
    counts = cli.ingest(tmp_path / "Maildir")
    assert counts == {"new": 8, "duplicates": 0, "ignored": 0, "quarantined": 0}
    for spec in specs:
        found = cli.search(spec.dossier)["results"]
        assert [c["source"] for c in found] == ["maildir"]


def test_forwarded_certificate_is_indexed_as_the_original(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(41)
    spec = mailgen.random_spec(rng, last_name="N'DIAYE", first_name="Aïssatou", sex="F")
    raw = mailgen.make_message(spec, body_kind="html", charset="iso-8859-1")
    (mail_dir / "Tr certificat.eml").write_bytes(mailgen.forward(raw))
    cli.trust_forwarders("secretariat@labo.mssante.fr")
    counts = cli.ingest(mail_dir)
    assert counts == {"new": 1, "duplicates": 0, "ignored": 0, "quarantined": 0}
    cert = cli.search(spec.dossier)["results"][0]
    assert cert["message_id"] == spec.message_id
    assert cert["last_name"] == "N'DIAYE"
    assert cert["first_name"] == "Aïssatou"


def test_forward_of_a_forward(cli: Cli, mail_dir: Path) -> None:
    spec = mailgen.random_spec(random.Random(42))
    twice = mailgen.forward(mailgen.forward(mailgen.make_message(spec)), sender="accueil@labo.mssante.fr")
    (mail_dir / "fwd.eml").write_bytes(twice)
    cli.trust_forwarders("@labo.mssante.fr")
    assert cli.ingest(mail_dir)["new"] == 1
    assert cli.search(spec.dossier)["total"] == 1


def test_bare_certificate_pdf_saved_from_webmail(cli: Cli, tmp_path: Path) -> None:
    downloads = tmp_path / "Téléchargements"
    downloads.mkdir()
    spec = mailgen.random_spec(random.Random(51), last_name="LEFÈVRE", first_name="Émilie", result="Négatif")
    (downloads / mailgen.pdf_filename(spec)).write_bytes(mailgen.make_pdf(spec))
    (downloads / "facture-electricite.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    counts = cli.ingest(downloads)
    assert counts == {"new": 1, "duplicates": 0, "ignored": 1, "quarantined": 0}
    cert = cli.search("lefevre emilie")["results"][0]
    assert cert["pdf_only"] is True
    assert cert["source"] == "pdf"
    assert cert["site_finess"] == spec.finess
    assert cert["dossier"] == spec.dossier
    assert cert["birth_date"] == spec.birth_date.isoformat()
    assert cert["sex"] == spec.sex
    assert cert["result"] == "Négatif"
    assert cert["outcome"] == "negative"
    assert cert["sampled_at"] == spec.sampled_at.replace(second=0).isoformat()
    assert cert["message_id"] is None


def test_browser_duplicate_suffix_on_saved_pdf(cli: Cli, tmp_path: Path) -> None:
    spec = mailgen.random_spec(random.Random(52))
    name = mailgen.pdf_filename(spec)[:-4] + " (1).pdf"
    (tmp_path / name).write_bytes(mailgen.make_pdf(spec))
    assert cli.ingest(tmp_path)["new"] == 1
    assert cli.search(spec.dossier)["results"][0]["last_name"] == spec.last_name


def test_unreadable_pdf_is_quarantined_not_made_up_from_its_name(cli: Cli, tmp_path: Path) -> None:
    # Issue 7 item 3: nothing but the file name would vouch for it (it was indexed before).
    spec = mailgen.random_spec(random.Random(53))
    (tmp_path / mailgen.pdf_filename(spec)).write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    assert cli.ingest(tmp_path) == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 1}
    assert cli.search(spec.dossier)["total"] == 0
    assert [q["reason"] for q in cli.status()["quarantine"]] == ["pdf_unreadable"]


def test_other_mail_is_counted_as_ignored(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(61)
    mailgen.write_eml(mail_dir, [mailgen.other_mail(rng, i) for i in range(9)])
    assert cli.ingest(mail_dir) == {"new": 0, "duplicates": 0, "ignored": 9, "quarantined": 0}
    assert cli.status()["certificates"] == 0


def test_subject_and_body_disagree_body_wins_with_warning(cli: Cli, mail_dir: Path) -> None:
    spec = mailgen.random_spec(random.Random(71), last_name="MARTIN", first_name="Zoé")
    subject = f"[Projet SI-DEP] Certificat de test : {spec.finess} | {spec.dossier} | MARTINS | Zoé"
    (mail_dir / "a.eml").write_bytes(mailgen.make_message(spec, subject=subject))
    cli.ingest(mail_dir)
    cert = cli.search(spec.dossier)["results"][0]
    assert cert["last_name"] == "MARTIN"
    assert "subject_body_mismatch:last_name" in cert["warnings"]
    assert cert["raw"]["subject.last_name"] == "MARTINS"


def test_invalid_identifiers_are_warnings_not_rejections(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(72)
    spec = mailgen.random_spec(rng)
    bad_finess = spec.finess[:8] + str((int(spec.finess[8]) + 1) % 10)
    ins = "185057800608412"  # wrong key
    bad = mailgen.random_spec(rng, finess=bad_finess, ins=ins, sex="M")
    (mail_dir / "a.eml").write_bytes(mailgen.make_message(bad))
    assert cli.ingest(mail_dir)["new"] == 1
    cert = cli.search(bad.dossier)["results"][0]
    assert "finess_checksum" in cert["warnings"]
    assert "ins_key" in cert["warnings"]


def test_corsican_ins_is_valid(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(73)
    spec = mailgen.random_spec(rng, finess=mailgen.random_finess(rng, "2A"), sex="F")
    spec.ins = mailgen.random_ins(rng, "F", spec.birth_date, corsica=True)
    (mail_dir / "a.eml").write_bytes(mailgen.make_message(spec))
    cli.ingest(mail_dir)
    cert = cli.search(spec.dossier)["results"][0]
    assert "2A" in cert["ins"]
    assert cert["warnings"] == []


def test_recursive_folders_and_mixed_formats(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(81)
    specs = [mailgen.random_spec(rng) for _ in range(6)]
    mailgen.write_eml(tmp_path / "a" / "b" / "c", [mailgen.make_message(specs[0])])
    mailgen.write_mbox(tmp_path / "a" / "Archives", [mailgen.make_message(s) for s in specs[1:3]])
    mailgen.write_maildir(tmp_path / "a" / "md", [mailgen.make_message(s) for s in specs[3:5]])
    (tmp_path / "a" / mailgen.pdf_filename(specs[5])).write_bytes(mailgen.make_pdf(specs[5]))
    (tmp_path / "a" / "notes.txt").write_text("rien à voir")
    counts = cli.ingest(tmp_path / "a")
    assert counts == {"new": 6, "duplicates": 0, "ignored": 0, "quarantined": 0}
    sources = {c["dossier"]: c["source"] for c in all_certificates(cli).values()}
    assert sorted(sources.values()) == ["eml", "maildir", "maildir", "mbox", "mbox", "pdf"]


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_and_inline_ingest_agree(cli: Cli, tmp_path: Path, workers: int) -> None:
    rng = random.Random(91)
    corpus = mailgen.corpus(rng, 240)
    mailgen.write_maildir(tmp_path / "md", [raw for _, raw in corpus])
    counts = cli.ingest(tmp_path / "md", workers=workers)
    assert counts == {"new": 240, "duplicates": 0, "ignored": 0, "quarantined": 0}
    by_dossier = all_certificates(cli)
    for i, (spec, _) in enumerate(corpus):
        assert_matches_spec(by_dossier[spec.dossier], spec, mailgen.corpus_variant(i))


def test_names_are_folded_for_search_but_shown_as_written(cli: Cli, mail_dir: Path) -> None:
    spec = mailgen.random_spec(random.Random(99), last_name="CŒUR", first_name="Anaïs")
    (mail_dir / "a.eml").write_bytes(mailgen.make_message(spec))
    cli.ingest(mail_dir)
    cert = cli.search("coeur anais")["results"][0]
    assert cert["last_name"] == "CŒUR"
    assert fold(cert["first_name"]) == "anais"
