"""Bad input gets a clear reason in the quarantine, and nothing else is lost (through the command line)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import mailgen
import pytest
from conftest import Cli

MAX_MESSAGE_BYTES = 50 * 1024 * 1024  # README: 50 Mo par message


def quarantine_by_path(status: dict) -> dict[str, dict]:
    """The quarantine listed by `status --json`, keyed by path; every entry says why, in words."""
    entries = status["quarantine"]
    assert status["quarantined"] == len(entries)
    for q in entries:
        assert {"path", "reason", "detail"} <= set(q), q
        assert isinstance(q["reason"], str) and q["reason"], q
        assert isinstance(q["detail"], str) and q["detail"].strip(), f"no explanation for the user: {q}"
    by_path = {q["path"]: q for q in entries}
    assert len(by_path) == len(entries), entries
    return by_path


def indexed(cli: Cli) -> dict[str, dict]:
    """Every indexed certificate (an empty query lists them all), keyed by dossier number."""
    result = cli.search("", limit=500)
    assert result["total"] == len(result["results"])
    return {c["dossier"]: c for c in result["results"]}


def good_neighbours(rng: random.Random, folder: Path, n: int = 3) -> list[mailgen.CertSpec]:
    """A few well-formed certificates saved next to the bad file."""
    specs = [mailgen.random_spec(rng) for _ in range(n)]
    mailgen.write_eml(folder, [mailgen.make_message(s) for s in specs])
    return specs


def assert_index_holds_exactly(cli: Cli, specs: list[mailgen.CertSpec]) -> None:
    """The good certificates are all there, with their names, and nothing else is."""
    by_dossier = indexed(cli)
    assert sorted(by_dossier) == sorted(s.dossier for s in specs)
    for spec in specs:
        assert by_dossier[spec.dossier]["last_name"] == spec.last_name


def header_end(raw: bytes) -> int:
    return raw.index(b"\r\n\r\n") + 4


# --- truncated messages ----------------------------------------------------------------------------------------

def _cut(raw: bytes, where: str) -> bytes:
    if where == "half":
        return mailgen.truncate(raw, 0.5)
    if where == "near_end":
        return mailgen.truncate(raw, 0.98)
    if where == "early_in_body":
        return raw[: header_end(raw) + 300]
    if where == "after_header_block":
        # The download stopped right after the blank line that ends the headers: no body at all.
        return raw[: header_end(raw)]
    if where == "inside_headers":
        # The download stopped inside the headers: From, Message-ID and the whole Subject are there, but
        # not MIME-Version, Content-Type, nor any of the body.
        return raw[: raw.index(b"MIME-Version:")]
    raise AssertionError(where)


@pytest.mark.parametrize("where", ["half", "near_end", "early_in_body", "after_header_block", "inside_headers"])
def test_truncated_eml_is_quarantined_and_the_run_goes_on(cli: Cli, mail_dir: Path, where: str) -> None:
    rng = random.Random(100)
    spec = mailgen.random_spec(rng)
    neighbours = good_neighbours(rng, mail_dir)
    broken = mail_dir / "Certificat interrompu.eml"
    broken.write_bytes(_cut(mailgen.make_message(spec), where))

    counts = cli.ingest(mail_dir)

    assert counts == {"new": 3, "duplicates": 0, "ignored": 0, "quarantined": 1}
    status = cli.status()
    q = quarantine_by_path(status)
    assert list(q) == [str(broken)]
    assert q[str(broken)]["reason"] == "truncated", q[str(broken)]
    assert status["certificates"] == 3
    assert_index_holds_exactly(cli, neighbours)  # nothing half-read was indexed


@pytest.mark.parametrize("where", ["half", "inside_headers"])
def test_fixed_file_is_retried_and_leaves_the_quarantine(cli: Cli, mail_dir: Path, where: str) -> None:
    spec = mailgen.random_spec(random.Random(101), ins=None)
    spec.ins = mailgen.random_ins(random.Random(1), spec.sex, spec.birth_date)
    raw = mailgen.make_message(spec)
    path = mail_dir / "certificat.eml"
    path.write_bytes(_cut(raw, where))
    assert cli.ingest(mail_dir)["quarantined"] == 1
    assert list(quarantine_by_path(cli.status())) == [str(path)]

    # The file did not change: not retried, still in quarantine.
    assert cli.ingest(mail_dir) == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert list(quarantine_by_path(cli.status())) == [str(path)]

    # The certificate is downloaded again over the broken file: complete, with a new modification time.
    path.write_bytes(raw)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    counts = cli.ingest(mail_dir)

    assert counts == {"new": 1, "duplicates": 0, "ignored": 0, "quarantined": 0}
    status = cli.status()
    assert quarantine_by_path(status) == {}
    assert status["certificates"] == 1
    cert = cli.search(spec.dossier)["results"][0]
    # The complete certificate, not what was read of the broken copy.
    assert cert["last_name"] == spec.last_name
    assert cert["message_id"] == spec.message_id
    assert cert["birth_date"] == spec.birth_date.isoformat()
    assert cert["ins"] == spec.ins
    assert cert["pdf_sha256"] == hashlib.sha256(mailgen.make_pdf(spec)).hexdigest()
    assert cert["warnings"] == []


def test_mbox_with_a_truncated_message_in_the_middle_yields_the_others(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(102)
    specs = [mailgen.random_spec(rng) for _ in range(5)]
    messages = [mailgen.make_message(s) for s in specs]
    messages[2] = mailgen.truncate(messages[2], 0.5)  # Thunderbird stopped while copying this one
    box = mailgen.write_mbox(tmp_path / "Thunderbird" / "Inbox", messages)

    counts = cli.ingest(tmp_path / "Thunderbird")

    assert counts == {"new": 4, "duplicates": 0, "ignored": 0, "quarantined": 1}
    status = cli.status()
    assert [(q["path"], q["reason"]) for q in status["quarantine"]] == [(str(box), "truncated")]
    quarantine_by_path(status)
    assert status["certificates"] == 4
    assert_index_holds_exactly(cli, specs[:2] + specs[3:])
    # Nothing changed: a second run neither adds nor forgets anything.
    assert cli.ingest(tmp_path / "Thunderbird") == {"new": 0, "duplicates": 0, "ignored": 0, "quarantined": 0}
    again = cli.status()
    assert (again["certificates"], again["quarantined"]) == (4, 1)


# --- corrupt files ---------------------------------------------------------------------------------------------

def _garbage(kind: str, rng: random.Random) -> bytes:
    if kind == "random_bytes":
        return rng.randbytes(30_000)
    if kind == "zero_filled":
        # What a crash often leaves of a file whose data blocks were never written.
        return b"\0" * 16_384
    if kind == "certificate_with_zeroed_head":
        raw = bytearray(mailgen.make_message(mailgen.random_spec(rng)))
        raw[:4096] = b"\0" * 4096
        return bytes(raw)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["random_bytes", "zero_filled", "certificate_with_zeroed_head"])
def test_binary_garbage_in_an_eml_file_is_quarantined(cli: Cli, mail_dir: Path, kind: str) -> None:
    """A `.eml` that is not a message at all is a damaged download: say so, do not count it as "other mail"."""
    rng = random.Random(103)
    neighbours = good_neighbours(rng, mail_dir)
    bad = mail_dir / "certificat patient.eml"
    bad.write_bytes(_garbage(kind, rng))

    counts = cli.ingest(mail_dir)

    assert counts == {"new": 3, "duplicates": 0, "ignored": 0, "quarantined": 1}, f"garbage .eml counted as {counts}"
    q = quarantine_by_path(cli.status())
    assert list(q) == [str(bad)]
    assert q[str(bad)]["reason"] not in ("truncated", "untrusted_sender")
    assert_index_holds_exactly(cli, neighbours)


# --- untrusted senders and configuration -------------------------------------------------------------------------

def test_spoofed_certificate_is_quarantined_and_never_searchable(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(104)
    neighbours = good_neighbours(rng, mail_dir, 2)
    victim = mailgen.random_spec(rng, last_name="BRIGARAUD", first_name="Hippolyte")
    fake = mail_dir / "faux certificat.eml"
    fake.write_bytes(mailgen.spoof(victim))

    counts = cli.ingest(mail_dir)

    assert counts == {"new": 2, "duplicates": 0, "ignored": 0, "quarantined": 1}
    q = quarantine_by_path(cli.status())
    assert q[str(fake)]["reason"] == "untrusted_sender"
    assert mailgen.SPOOF_SENDER in q[str(fake)]["detail"]
    assert cli.search("brigaraud hippolyte")["total"] == 0
    assert cli.search(victim.dossier)["total"] == 0
    proc = cli.run("search", "brigaraud")  # as the secretary types it
    assert proc.returncode == 1 and "BRIGARAUD" not in proc.stdout
    assert_index_holds_exactly(cli, neighbours)


def test_spoof_in_an_mbox_is_quarantined_among_good_messages(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(105)
    specs = [mailgen.random_spec(rng) for _ in range(3)]
    victim = mailgen.random_spec(rng)
    box = mailgen.write_mbox(
        tmp_path / "Inbox",
        [mailgen.make_message(specs[0]), mailgen.spoof(victim)] + [mailgen.make_message(s) for s in specs[1:]],
    )
    assert cli.ingest(box) == {"new": 3, "duplicates": 0, "ignored": 0, "quarantined": 1}
    assert [q["reason"] for q in cli.status()["quarantine"]] == ["untrusted_sender"]
    assert_index_holds_exactly(cli, specs)


def write_config(path: Path, senders: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Expéditeurs dont les messages deviennent des certificats\n"
        f"trusted_senders = {json.dumps(senders)}\nretention_days = 90\n",
        encoding="utf-8",
    )
    return path


def test_config_in_helper_home_trusts_an_extra_sender(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(106)
    genuine = mailgen.random_spec(rng)
    other = mailgen.random_spec(rng)
    mailgen.write_eml(mail_dir, [mailgen.make_message(genuine), mailgen.spoof(other)])
    write_config(cli.home / "config.toml", [mailgen.TRUSTED_SENDER, mailgen.SPOOF_SENDER])

    counts = cli.ingest(mail_dir)

    assert counts == {"new": 2, "duplicates": 0, "ignored": 0, "quarantined": 0}
    assert cli.status()["quarantine"] == []
    assert_index_holds_exactly(cli, [genuine, other])
    assert cli.search(f"{other.last_name} {other.first_name}")["total"] >= 1


def test_config_option_replaces_the_trusted_senders(cli: Cli, tmp_path: Path, mail_dir: Path) -> None:
    rng = random.Random(107)
    genuine = mailgen.random_spec(rng)
    other = mailgen.random_spec(rng)
    mailgen.write_eml(mail_dir, [mailgen.make_message(genuine), mailgen.spoof(other)])
    config = write_config(tmp_path / "elsewhere" / "sidep.toml", [mailgen.SPOOF_SENDER])

    proc = cli.run("--config", config, "ingest", "--json", mail_dir)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"new": 1, "duplicates": 0, "ignored": 0, "quarantined": 1}
    assert_index_holds_exactly(cli, [other])  # the list replaces the default sender
    assert [q["reason"] for q in cli.status()["quarantine"]] == ["untrusted_sender"]


def test_unusable_config_is_refused_with_a_message(cli: Cli, mail_dir: Path) -> None:
    good_neighbours(random.Random(108), mail_dir, 1)
    cli.home.mkdir(parents=True)
    (cli.home / "config.toml").write_text('trusted_senders = "pas une liste"\n', encoding="utf-8")
    proc = cli.run("ingest", "--json", mail_dir, check=False)
    assert proc.returncode == 2
    assert "trusted_senders" in proc.stderr
    assert not (cli.home / "index.sqlite3").exists()


def test_sender_trusted_after_quarantine_is_accepted_on_next_ingest(cli: Cli, mail_dir: Path) -> None:
    """status says `untrusted_sender`; IT adds the address to config.toml and runs ingest again."""
    other = mailgen.random_spec(random.Random(109))
    (mail_dir / "certificat.eml").write_bytes(mailgen.spoof(other))
    assert cli.ingest(mail_dir)["quarantined"] == 1
    assert [q["reason"] for q in cli.status()["quarantine"]] == ["untrusted_sender"]

    write_config(cli.home / "config.toml", [mailgen.TRUSTED_SENDER, mailgen.SPOOF_SENDER])
    cli.ingest(mail_dir)

    assert cli.status()["quarantine"] == []
    assert_index_holds_exactly(cli, [other])


# --- limits ----------------------------------------------------------------------------------------------------

def split_top(raw: bytes) -> tuple[bytes, bytes]:
    """(header lines before the root Content-Type, the root Content-Type header + blank line + body)."""
    at = raw.index(b"Content-Type: multipart/mixed;")
    return raw[:at], raw[at:]


def nested(spec: mailgen.CertSpec, levels: int) -> bytes:
    """The certificate message with its whole MIME tree wrapped in ``levels`` multipart/mixed layers."""
    top, entity = split_top(mailgen.make_message(spec))
    for i in reversed(range(levels)):
        entity = (
            f'Content-Type: multipart/mixed; boundary="nest-{i}"\r\n\r\n--nest-{i}\r\n'.encode()
            + entity
            + f"\r\n--nest-{i}--\r\n".encode()
        )
    return top + entity


def many_parts(spec: mailgen.CertSpec, extra: int) -> bytes:
    """The certificate's MIME tree followed by ``extra`` tiny text parts, in one multipart/mixed."""
    top, entity = split_top(mailgen.make_message(spec))
    filler = b"".join(
        b"--many\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%d\r\n" % i for i in range(extra)
    )
    return (
        top + b'Content-Type: multipart/mixed; boundary="many"\r\n\r\n--many\r\n' + entity + b"\r\n" + filler
        + b"--many--\r\n"
    )


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        (lambda spec: nested(spec, 150), "too_deep"),
        (lambda spec: many_parts(spec, 10_050), "too_many_parts"),
    ],
    ids=["150_nested_multiparts", "10050_parts"],
)
def test_structural_limits(cli: Cli, mail_dir: Path, shape, reason: str) -> None:
    rng = random.Random(110)
    neighbours = good_neighbours(rng, mail_dir, 2)
    bad = mail_dir / "hostile.eml"
    bad.write_bytes(shape(mailgen.random_spec(rng)))

    counts = cli.ingest(mail_dir)

    assert counts == {"new": 2, "duplicates": 0, "ignored": 0, "quarantined": 1}
    q = quarantine_by_path(cli.status())
    assert list(q) == [str(bad)]
    assert q[str(bad)]["reason"] == reason
    assert_index_holds_exactly(cli, neighbours)


def test_structures_below_the_limits_are_read(cli: Cli, mail_dir: Path) -> None:
    """The wrappers above are valid MIME: well below the limits, the certificate inside is found."""
    rng = random.Random(111)
    deep, wide = mailgen.random_spec(rng), mailgen.random_spec(rng)
    (mail_dir / "deep.eml").write_bytes(nested(deep, 50))
    (mail_dir / "wide.eml").write_bytes(many_parts(wide, 2_000))
    assert cli.ingest(mail_dir) == {"new": 2, "duplicates": 0, "ignored": 0, "quarantined": 0}
    by_dossier = indexed(cli)
    for spec in (deep, wide):
        cert = by_dossier[spec.dossier]
        assert cert["last_name"] == spec.last_name
        assert cert["birth_date"] == spec.birth_date.isoformat()
        assert cert["pdf_sha256"] is not None


def test_message_over_50_mb_is_quarantined(cli: Cli, mail_dir: Path) -> None:
    rng = random.Random(112)
    neighbours = good_neighbours(rng, mail_dir, 2)
    big_pdf = b"%PDF-1.4\n" + b"0" * 40_000_000 + b"\n%%EOF\n"  # about 54 MB once in base64
    big = mail_dir / "enorme.eml"
    try:
        big.write_bytes(mailgen.make_message(mailgen.random_spec(rng), pdf=big_pdf))
        del big_pdf
        assert big.stat().st_size > MAX_MESSAGE_BYTES

        counts = cli.ingest(mail_dir)

        assert counts == {"new": 2, "duplicates": 0, "ignored": 0, "quarantined": 1}
        q = quarantine_by_path(cli.status())
        assert list(q) == [str(big)]
        assert q[str(big)]["reason"] == "too_large"
        assert_index_holds_exactly(cli, neighbours)
    finally:
        big.unlink(missing_ok=True)
