"""Tests of the test-mail generator itself (tests/mailgen.py)."""

from __future__ import annotations

import datetime
import email
import io
import itertools
import random
import re
import time
from email.message import EmailMessage
from email.policy import default as policy

import pytest
from pypdf import PdfReader

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import mailgen
except ImportError:  # tests/ turned into a package
    from tests import mailgen


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy)  # type: ignore[return-value]


def pdf_part(msg: EmailMessage) -> EmailMessage:
    parts = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert len(parts) == 1
    return parts[0]


@pytest.fixture(scope="module")
def spec() -> mailgen.CertSpec:
    return mailgen.random_spec(
        random.Random(42),
        last_name="CŒUR",
        first_name="Marie Christine Louise",
        sex="F",
        ins="285052A00608482",
    )


# ---------------------------------------------------------------------------------------------- identifiers
def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_luhn_finess_known_and_random():
    assert mailgen.luhn_finess("75071218") == "750712184"  # AP-HP (FINESS juridique)
    assert luhn_ok("750712184") and not luhn_ok("750712185")
    rng = random.Random(1)
    for dept in (None, "75", "69", "13", "971", "974"):
        for _ in range(50):
            finess = mailgen.random_finess(rng, dept)
            assert len(finess) == 9
            if finess[:2] not in ("2A", "2B"):
                assert finess.isdigit() and luhn_ok(finess)
            if dept:
                assert finess.startswith(dept)
    corsican = mailgen.random_finess(rng, "2A")
    assert len(corsican) == 9 and corsican.startswith("2A") and corsican[2:].isdigit()


def test_ins_keys_including_corsica():
    # reference: 1 85 05 78 006 084 -> key 97 - (1850578006084 % 97)
    assert mailgen.ins_key("1850578006084") == "91"
    assert mailgen.ins_key("285052A006084") == "82"  # computed on 2850519006084
    assert mailgen.ins_key("185052B006084") == f"{97 - 1850518006084 % 97:02d}"
    assert mailgen.ins_key("1850101001003") == "09"  # zero-padded key
    rng = random.Random(2)
    born = datetime.date(1985, 5, 17)
    for corsica in (False, True):
        for sex in "MF":
            ins = mailgen.random_ins(rng, sex, born, corsica=corsica)
            assert len(ins) == 15
            assert ins[0] == ("1" if sex == "M" else "2") and ins[1:5] == "8505"
            numeric = ins[:13].replace("2A", "19").replace("2B", "18")
            assert numeric.isdigit()
            assert int(ins[13:]) == 97 - int(numeric) % 97
            if corsica:
                assert ins[5:7] in ("2A", "2B")


def test_random_spec_is_realistic():
    rng = random.Random(3)
    specs = [mailgen.random_spec(rng) for _ in range(400)]
    assert len({s.message_id for s in specs}) == 400
    assert len({s.last_name for s in specs}) > 200
    assert any(any(c in s.last_name for c in "ÈÉÇËÏ") for s in specs)
    assert {s.sex for s in specs} == {"M", "F"}
    assert any(s.ins is None for s in specs) and any(s.ins for s in specs)
    for s in specs:
        assert 1930 <= s.birth_date.year <= 2020
        age = datetime.datetime.now() - s.sampled_at
        assert datetime.timedelta(days=2) < age < datetime.timedelta(days=mailgen.SAMPLED_WITHIN_DAYS + 3)
        delta = s.integrated_at - s.sampled_at
        assert datetime.timedelta(minutes=1) < delta <= datetime.timedelta(days=2, minutes=1)
        assert s.message_id.startswith("<") and s.message_id.endswith("@enovacom.easycrypt.fr>")
        assert s.first_name.split()[0] in (mailgen.MALE_FIRST_NAMES if s.sex == "M" else mailgen.FEMALE_FIRST_NAMES)
        if s.ins:
            assert s.ins[0] == ("1" if s.sex == "M" else "2")
    assert mailgen.random_spec(rng, dossier="A2106220042").dossier == "A2106220042"


# ------------------------------------------------------------------------------------------------------ PDF
def test_pdf_text_and_structure(spec):
    pdf = mailgen.make_pdf(spec)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert 35_000 < len(pdf) < 45_000
    reader = PdfReader(io.BytesIO(pdf), strict=True)
    assert len(reader.pages) == 1
    assert reader.pages[0].extract_text().split("\n") == mailgen.pdf_text_lines(spec)
    lines = mailgen.pdf_text_lines(spec)
    assert lines[0] == "CERTIFICAT DE TEST COVID-19"
    assert lines[1] == "Nom : CŒUR" and lines[3] == "Sexe : Féminin"
    # xref offsets point at their objects
    startxref = int(re.search(rb"startxref\n(\d+)", pdf).group(1))
    assert pdf[startxref:].startswith(b"xref")
    for num, off in enumerate(re.findall(rb"(\d{10}) 00000 n", pdf), 1):
        assert pdf[int(off) :].startswith(b"%d 0 obj" % num)
    # cached padding: different specs give different bytes, same spec the same bytes
    other = mailgen.random_spec(random.Random(5))
    assert mailgen.make_pdf(other) != pdf and mailgen.make_pdf(spec) == pdf
    small = mailgen.make_pdf(spec, size=8_000)
    assert 6_000 < len(small) < 10_000


def test_pdf_escapes_parentheses_and_backslash():
    spec = mailgen.random_spec(random.Random(6), last_name="D'ALMEIDA (DIT) \\X", first_name="Zoé")
    text = PdfReader(io.BytesIO(mailgen.make_pdf(spec, size=5_000))).pages[0].extract_text()
    assert text.split("\n") == mailgen.pdf_text_lines(spec)


# ------------------------------------------------------------------------------------------------- messages
@pytest.mark.parametrize("subject_encoding", ["b", "q", "raw", "iso"])
@pytest.mark.parametrize("filename_encoding", ["rfc2231", "rfc2047", "plain"])
def test_subject_and_filename(spec, subject_encoding, filename_encoding):
    pdf = mailgen.make_pdf(spec)
    raw = mailgen.make_message(
        spec, pdf=pdf, subject_encoding=subject_encoding, filename_encoding=filename_encoding
    )
    msg = parse(raw)
    assert msg["Subject"] == mailgen.expected_subject(spec)
    assert msg["From"] == "noreply.sidep@enovacom.easycrypt.fr"
    assert msg["Message-ID"] == spec.message_id
    part = pdf_part(msg)
    expected_name = mailgen.pdf_filename(spec)
    if filename_encoding == "plain":
        expected_name = mailgen.ascii_fold(expected_name)
    assert part.get_filename() == expected_name
    assert part.get_content() == pdf
    if subject_encoding != "raw":
        assert raw.isascii()
        for line in raw.split(b"\r\n")[:20]:
            assert len(line) < 998


def test_subject_words_are_short_and_folded(spec):
    raw = mailgen.make_message(spec, subject_encoding="b")
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    words = re.findall(r"=\?utf-8\?B\?[^?]*\?=", header)
    assert len(words) >= 2 and all(len(w) <= 75 for w in words)


@pytest.mark.parametrize(
    ("charset", "cte"), list(itertools.product(["utf-8", "iso-8859-1", "windows-1252"], ["quoted-printable", "base64", "8bit"]))
)
@pytest.mark.parametrize("last_name", ["LEFÈVRE", "CŒUR"])
def test_plain_body_every_charset_and_cte(charset, cte, last_name):
    spec = mailgen.random_spec(random.Random(7), last_name=last_name, first_name="Émilie", sex="F")
    raw = mailgen.make_message(spec, charset=charset, body_cte=cte, include_pdf=False)
    msg = parse(raw)
    body = msg.get_body(("plain",))
    text = body.get_content()
    assert f"Nom : {last_name}" in text
    assert "Prénom : Émilie" in text
    assert "Bonjour," in text
    assert ("L’équipe projet SI-DEP" in text) or ("L'équipe projet SI-DEP" in text)
    assert body["Content-Transfer-Encoding"] == cte
    if charset == "iso-8859-1" and last_name == "LEFÈVRE":
        assert body.get_content_charset() == "iso-8859-1"
        assert "’" not in text and "Date d'intégration" in text
    if charset == "utf-8":
        assert "Type d’analyse (voir le site de Bioloinc pour la terminologie): " in text


def test_html_and_alternative_bodies(spec):
    msg = parse(mailgen.make_message(spec, body_kind="html", charset="iso-8859-1"))
    assert msg.get_body(("plain",)) is None
    html = msg.get_body(("html",)).get_content()
    assert "<b>Nom :</b> CŒUR" in html or "<b>Nom :</b> C&#338;UR" in html
    assert "Pr&eacute;nom" in html and "&#39;" in html and "<br>" in html and "<p>" in html
    alt = parse(mailgen.make_message(spec, body_kind="alternative", body_cte="base64"))
    assert "Nom : CŒUR" in alt.get_body(("plain",)).get_content()
    assert "<b>Nom :</b> CŒUR" in alt.get_body(("html",)).get_content()
    assert alt.get_body(("related", "html", "plain")) is not None
    assert pdf_part(alt).get_content() == mailgen.make_pdf(spec)


def test_field_styles(spec):
    def text(**kw: str) -> str:
        raw = mailgen.make_message(spec, include_pdf=False, **kw)
        return parse(raw).get_body(("plain",)).get_content().replace("\r\n", "\n")

    s = spec.sampled_at
    assert f"Date de prélèvement : {s:%d/%m/%Y %H:%M}\n" in text(date_style="fr")
    assert f"Date de prélèvement : {s:%d/%m/%Y %H:%M:%S}\n" in text(date_style="fr_seconds")
    iso = text(date_style="iso")
    assert f"Date de prélèvement : {s:%Y-%m-%dT%H:%M:%S}\n" in iso
    assert f"Date de naissance : {spec.birth_date:%Y-%m-%d}\n" in iso
    assert f"Date de prélèvement : {s:%d/%m/%Y} à {s:%Hh%M}\n" in text(date_style="fr_a")
    assert "Sexe : F\n" in text(sex_style="letter")
    assert "Sexe : Féminin\n" in text(sex_style="word")
    assert "Sexe : féminin\n" in text(sex_style="lower")
    assert "(INS) : 285052A00608482\n" in text(ins_style="plain")
    assert "(INS) : 2 85 05 2A 006 084 82\n" in text(ins_style="spaced")
    assert "(INS) : \n" in text(ins_style="none")


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_newlines_are_consistent(spec, newline):
    raw = mailgen.make_message(spec, newline=newline, body_kind="alternative")
    if newline == "\n":
        assert b"\r" not in raw
    else:
        assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.endswith(newline.encode())
    b64_lines = [ln for ln in raw.split(newline.encode()) if re.fullmatch(rb"[A-Za-z0-9+/=]{20,}", ln)]
    assert b64_lines and max(len(ln) for ln in b64_lines) == 76


def test_corpus_covers_every_variant_and_parses():
    items = mailgen.corpus(random.Random(9), 54)
    seen: dict[str, set[str]] = {}
    for i, (spec, raw) in enumerate(items):
        variant = mailgen.corpus_variant(i)
        for key, value in variant.items():
            seen.setdefault(key, set()).add(value)
        msg = parse(raw)
        assert msg["Subject"] == mailgen.expected_subject(spec)
        part = pdf_part(msg)
        if variant["filename_encoding"] != "plain":
            assert part.get_filename() == mailgen.pdf_filename(spec)
        assert part.get_content() == mailgen.make_pdf(spec)
        body = msg.get_body(("plain", "html")).get_content()
        assert spec.finess in body
    assert {len(v) for v in seen.values()} >= {2, 3, 4}
    assert seen["charset"] == {"utf-8", "iso-8859-1", "windows-1252"}
    assert seen["subject_encoding"] == {"b", "q", "raw", "iso"}
    assert seen["date_style"] == {"fr", "fr_seconds", "iso", "fr_a"}
    assert seen["newline"] == {"\r\n", "\n"}
    triples = {(v["body_cte"], v["charset"], v["body_kind"]) for v in map(mailgen.corpus_variant, range(27))}
    assert len(triples) == 27


def test_forward_spoof_other_truncate(spec):
    original = mailgen.make_message(spec)
    fwd = mailgen.forward(original)
    assert original in fwd
    msg = parse(fwd)
    assert msg["Subject"] == "Tr: " + mailgen.expected_subject(spec)
    assert msg["From"] == "secretariat@labo.mssante.fr"
    attached = [p for p in msg.iter_attachments() if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1
    inner = attached[0].get_content()
    assert inner["Subject"] == mailgen.expected_subject(spec)
    assert inner["Message-ID"] == spec.message_id

    spoofed = parse(mailgen.spoof(spec))
    assert spoofed["From"] != mailgen.TRUSTED_SENDER and spoofed["Subject"] == mailgen.expected_subject(spec)

    rng = random.Random(11)
    others = [parse(mailgen.other_mail(rng, i)) for i in range(10)]
    assert all("Certificat de test" not in str(m["Subject"]) for m in others)
    assert any(m.get_content_type() == "multipart/mixed" and list(m.iter_attachments()) for m in others)

    cut = mailgen.truncate(original, 0.3)
    assert original.startswith(cut) and len(cut) == int(len(original) * 0.3)


def test_make_message_is_fast(spec):
    pdf = mailgen.make_pdf(spec)
    mailgen.make_message(spec, pdf=pdf)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        mailgen.make_message(spec, pdf=pdf)
    per_msg = (time.perf_counter() - t0) / n
    assert per_msg < 0.003  # generous bound for slow CI; ~0.2 ms on a laptop


# -------------------------------------------------------------------------------------------------- writers
def test_write_eml_names(tmp_path, spec):
    raw = mailgen.make_message(spec)
    paths = mailgen.write_eml(tmp_path, [raw, raw, mailgen.truncate(raw, 0.0)])
    assert len({p.name for p in paths}) == 3
    assert paths[0].name.startswith("[Projet SI-DEP] Certificat de test _ ")
    assert paths[0].name.endswith(".eml") and "|" not in paths[0].name
    assert paths[1].name.endswith(" (1).eml")
    assert paths[2].name.startswith("msg")
    assert paths[0].read_bytes() == raw


def test_write_mbox_thunderbird(tmp_path, spec):
    tricky = (
        b"From: a@b.fr\r\nSubject: test\r\n\r\nFrom here on\r\n>From kept as is\r\nFrom\r\n"
    )
    messages = [mailgen.make_message(spec), tricky, mailgen.other_mail(random.Random(1), 8)]
    path = mailgen.write_mbox(tmp_path / "Inbox", messages)
    data = path.read_bytes()
    assert (tmp_path / "Inbox.msf").exists()
    assert data.startswith(b"From - ")
    assert re.match(rb"From - \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r\n", data)
    assert data.count(b"X-Mozilla-Status: 0001") == 3
    assert data.count(b"X-Mozilla-Status2: 00000000") == 3
    assert data.count(b"X-Mozilla-Keys:") == 3
    from_lines = re.findall(rb"(?m)^From .*$", data)
    assert len(from_lines) == 3 and all(ln.startswith(b"From - ") for ln in from_lines)
    assert b"\r\n>From here on\r\n" in data
    assert b"\r\n>From kept as is\r\n" in data  # mboxo: no extra quoting
    assert b">From Monday 5 July" in data
    # blank line between messages
    assert data.count(b"\r\n\r\nFrom - ") == 2
    # the standard library reads it back
    import mailbox

    box = mailbox.mbox(str(path), create=False)
    try:
        subjects = [m["Subject"] for m in box]
    finally:
        box.close()
    assert len(subjects) == 3 and subjects[1] == "test"


def test_write_maildir(tmp_path, spec):
    messages = [mailgen.make_message(mailgen.random_spec(random.Random(i))) for i in range(5)]
    root = mailgen.write_maildir(tmp_path / "Maildir", messages)
    assert {p.name for p in root.iterdir()} == {"cur", "new", "tmp"}
    new = sorted((root / "new").iterdir())
    cur = sorted((root / "cur").iterdir())
    assert len(new) == 3 and len(cur) == 2 and not list((root / "tmp").iterdir())
    assert all(re.fullmatch(r"\d{10}\.M\d+P\d+Q\d+\.[\w.]+", p.name) for p in new)
    assert all(re.fullmatch(r"\d{10}\.M\d+P\d+Q\d+\.[\w.]+:2,S", p.name) for p in cur)
    assert sorted(p.read_bytes() for p in new + cur) == sorted(messages)
