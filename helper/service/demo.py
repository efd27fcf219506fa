"""``sidep-helper serve --demo``: fictitious SI-DEP certificates, so IT can try the extensions.

What happens, step by step:
1. the demo runs on its OWN data directory, a sibling of the real one (``<data>-demo``), so nothing
   fictitious ever reaches a real index, and nothing real is shown in the demo;
2. its trusted sender is ``DEMO_SENDER`` (an address of the reserved ``.invalid`` domain), the only
   one the demo trusts: a demo message copied into a real Downloads folder is never a certificate
   there, since no real configuration trusts that address;
3. at start, when the demo index holds no certificate (first run, or all past the retention period),
   ``seed`` writes a dozen realistic messages (subject, body labels and PDF attachment as SI-DEP sends
   them; FINESS with a valid Luhn digit, INS with a valid key; fictitious names; sampled during the
   last days) and ingests them through the normal parser, as pushed mail would be;
4. the service then marks every response ``X-Sidep-Helper-Demo: 1`` and says ``"demo": true`` in
   health and status; the extensions' panel shows a « DÉMO — certificats fictifs » banner.
"""

from __future__ import annotations

import datetime as dt
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from helper.index.ingest import ingest_message
from helper.index.store import Store

DEMO_SENDER = "demo.sidep@sidep-helper.invalid"
DEMO_HEADER = "X-Sidep-Helper-Demo"
MARK = "DÉMO — CERTIFICAT FICTIF"

#: (last name, first name, sex, birth date, site FINESS first 8 digits, result)
PEOPLE: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("EXEMPLE", "Camille", "F", "1984-03-12", "75071218", "Négatif"),
    ("FICTIF", "Jean-Baptiste", "M", "1957-11-02", "75071218", "Positif"),
    ("D'ESSAI", "Zoé", "F", "2011-06-30", "75071218", "Négatif"),
    ("MODÈLE", "Noël", "M", "1941-12-25", "93050012", "Négatif"),
    ("DÉMONSTRATION", "Inès", "F", "1999-01-09", "93050012", "Ininterprétable"),
    ("EXEMPLE", "Lucas", "M", "2016-08-17", "75071218", "Négatif"),
    ("SPÉCIMEN-ESSAI", "Hélène", "F", "1968-04-04", "93050012", "Positif"),
    ("FICTIF", "Chloé", "F", "1990-10-21", "75071218", "Négatif"),
    ("PROTOTYPE", "Joël", "M", "1975-07-14", "93050012", "Négatif"),
    ("MAQUETTE", "Amélie", "F", "2003-02-28", "75071218", "Négatif"),
    ("ÉCHANTILLON", "Mathis", "M", "1988-09-05", "93050012", "Positif"),
    ("LEGENDE", "Léa", "F", "1962-05-19", "75071218", "Négatif"),
)
ANALYSIS = ("94500-6", "SARS-CoV-2 (Covid 19) ARN [Présence] Voies respiratoires ; Résultat nominal ; "
            "Amplification génique")


def demo_data_dir(data_dir: Path) -> Path:
    """The demo's own data directory: a sibling of the real one."""
    return data_dir.with_name(data_dir.name + "-demo")


def luhn_digit(first8: str) -> str:
    """The Luhn check digit that makes ``first8 + digit`` valid (FINESS)."""
    total = 0
    for i, ch in enumerate(reversed(first8)):
        d = int(ch)
        if i % 2 == 0:  # doubled: positions that become odd once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def ins_for(sex: str, birth: dt.date, department: str, order: int) -> str:
    """A well-formed INS matricule (NIR shape) with its key: 97 − (number mod 97)."""
    first13 = f"{1 if sex == 'M' else 2}{birth:%y}{birth:%m}{department}{'001'}{order:03d}"
    return first13 + f"{97 - int(first13) % 97:02d}"


@dataclass(frozen=True)
class DemoCertificate:
    last_name: str
    first_name: str
    sex: str
    birth_date: dt.date
    finess: str
    dossier: str
    ins: str
    sampled_at: dt.datetime
    integrated_at: dt.datetime
    result: str


def certificates(now: dt.datetime) -> list[DemoCertificate]:
    """The fictitious certificates, sampled during the days before ``now`` (inside any retention)."""
    out = []
    for i, (last, first, sex, birth, site8, result) in enumerate(PEOPLE):
        sampled = (now - dt.timedelta(days=i % 6, hours=2 + i)).replace(second=0, microsecond=0)
        birth_date = dt.date.fromisoformat(birth)
        out.append(DemoCertificate(
            last_name=last, first_name=first, sex=sex, birth_date=birth_date,
            finess=site8 + luhn_digit(site8), dossier=f"DEMO{sampled:%y%m%d}{i + 1:03d}",
            ins=ins_for(sex, birth_date, site8[:2], 900 + i), sampled_at=sampled,
            integrated_at=sampled + dt.timedelta(hours=3, minutes=7 * i), result=result,
        ))
    return out


def _fr(when: dt.date | dt.datetime) -> str:
    return when.strftime("%d/%m/%Y %H:%M") if isinstance(when, dt.datetime) else when.strftime("%d/%m/%Y")


def body_lines(c: DemoCertificate) -> list[str]:
    return [
        f"Nom : {c.last_name}",
        f"Prénom : {c.first_name}",
        f"Sexe : {c.sex}",
        f"Date de naissance : {_fr(c.birth_date)}",
        f"Matricule Identifiant National de Santé (INS) : {c.ins}",
        f"Test réalisé : Type d’analyse (voir le site de Bioloinc pour la terminologie): {ANALYSIS[0]} {ANALYSIS[1]}",
        f"Identifiant de la structure ayant réalisé le test : {c.finess}",
        f"Date de prélèvement : {_fr(c.sampled_at)}",
        f"Date d’intégration du résultat dans l’application SI-DEP : {_fr(c.integrated_at)}",
        f"Résultat du test : {c.result}",
    ]


def pdf(c: DemoCertificate) -> bytes:
    """A one-page PDF 1.4 (Helvetica, WinAnsi) written by hand, marked as a demonstration."""
    lines = [
        "CERTIFICAT DE TEST COVID-19", MARK,
        f"Nom : {c.last_name}", f"Prénom(s) : {c.first_name}",
        f"Sexe : {'Masculin' if c.sex == 'M' else 'Féminin'}", f"Date de naissance : {_fr(c.birth_date)}",
        f"Identifiant de la structure ayant réalisé le test : {c.finess}",
        f"Numéro de dossier : {c.dossier}", f"Type de test : {ANALYSIS[0]} {ANALYSIS[1]}",
        f"Date et heure du prélèvement : {_fr(c.sampled_at)}", f"Résultat du test : {c.result}",
    ]

    def string(text: str) -> bytes:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("cp1252", "replace") + b")"

    content = b"BT\n/F1 14 Tf\n50 790 Td\n" + string(lines[0]) + b" Tj\n/F1 9 Tf\n14 TL\n0 -8 Td\n"
    content += b"".join(b"T* " + string(line) + b" Tj\n" for line in lines[1:]) + b"ET\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Producer (sidep-helper demo) /Title (%s) >>" % string(MARK)[1:-1],
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def message(c: DemoCertificate) -> bytes:
    """The raw message, as SI-DEP sends it, from the demo sender, marked as a demonstration."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"SI-DEP (démonstration) <{DEMO_SENDER}>"
    msg["To"] = "laboratoire@demo.sidep-helper.invalid"
    msg["Subject"] = f"[Projet SI-DEP] Certificat de test : {c.finess} | {c.dossier} | {c.last_name} | {c.first_name}"
    msg["Date"] = format_datetime(c.integrated_at.astimezone())
    msg["Message-ID"] = make_msgid("demo", "sidep-helper.invalid")
    msg[DEMO_HEADER] = "1"
    msg.set_content(
        f"{MARK} : message généré par sidep-helper --demo, aucun patient réel.\n\nBonjour,\n\n"
        "Veuillez trouver ci-joint le certificat et ci-dessous les caractéristiques du patient, du test et le "
        "résultat :\n\nPatient concerné :\n" + "\n".join(body_lines(c)) + "\n\nBien cordialement,\n\nL’équipe SI-DEP\n"
    )
    name = f"{c.finess}_{c.dossier}_{c.last_name}_{c.first_name}.pdf"
    msg.add_attachment(pdf(c), maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes()


def seed(data_dir: Path, now: dt.datetime | None = None) -> int:
    """Fill an empty demo index; returns how many certificates were added (0 when already filled)."""
    store = Store(data_dir)
    try:
        if store.counts()["certificates"]:
            return 0
        added = 0
        for cert in certificates(now or dt.datetime.now()):
            outcomes = ingest_message(store, message(cert), frozenset({DEMO_SENDER}), source="demo")
            added += sum(1 for o in outcomes if o.status == "new")
        return added
    finally:
        store.close()
