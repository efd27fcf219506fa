"""Printing through a real CUPS scheduler: jobs go to a cups-pdf queue and come back as PDF files.

``tests/cups.py`` installs and starts CUPS with the ``sidep-test-pdf`` queue (it is also run by
``tests/run``); if that cannot be done these tests fail, they are never skipped. Situations that
would need a different machine (no printer at all, a server default set with ``lpadmin -d``, a
paused or rejecting queue) run against a private ``cupsd`` reached through ``CUPS_SERVER``, and the
user default set with ``lpoptions -d`` lives in a temporary ``$HOME``: the machine's scheduler and
the real user's settings are left as they were.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cups
import mailgen
import pytest
from pypdf import PdfReader

from helper.service import printing, printing_cups, printing_windows
from helper.service.printing import NoPrinterError, PrintError


@pytest.fixture(scope="session")
def cups_pdf() -> cups.CupsPdf:
    return cups.ensure_cups_pdf()  # raises CupsSetupError (test error, not skip) when impossible


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The machine's scheduler, no destination forced by the environment, a user without lpoptions."""
    for name in ("CUPS_SERVER", "LPDEST", "PRINTER"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def private() -> Iterator[cups.PrivateScheduler]:
    with cups.private_scheduler() as scheduler:
        yield scheduler


@pytest.fixture
def certificate() -> tuple[mailgen.CertSpec, bytes]:
    spec = mailgen.random_spec(random.Random(1))
    return spec, mailgen.make_pdf(spec)


def _title() -> str:
    return f"certificat-{random.randrange(1, 10**9)}"


def _check_printed(cups_pdf: cups.CupsPdf, job_id: str, spec: mailgen.CertSpec, title: str, since: float) -> None:
    out = cups_pdf.wait_for_output(job_id, timeout=30, newer_than=since - 2)
    assert out.read_bytes().startswith(b"%PDF-")
    reader = PdfReader(out)
    text = "".join(page.extract_text() for page in reader.pages)
    assert spec.dossier in text
    assert f"Numéro de dossier : {spec.dossier}" in text
    # the job is known by its title only: no patient name in the spooler's view of it
    assert title in str(reader.metadata.title)
    assert mailgen.ascii_fold(spec.last_name).lower() not in out.name.lower()
    out.unlink()  # synthetic, but a printed certificate all the same


def test_print_pdf_reaches_the_cups_pdf_queue(cups_pdf, certificate) -> None:
    spec, pdf = certificate
    title = _title()
    since, started = time.time(), time.monotonic()
    job_id = printing.print_pdf(pdf, printer=cups_pdf.queue, title=title)
    latency = time.monotonic() - started
    assert re.fullmatch(rf"{re.escape(cups_pdf.queue)}-\d+", job_id), job_id
    assert latency < 5, f"print_pdf took {latency:.2f} s"
    _check_printed(cups_pdf, job_id, spec, title, since)


def test_printers_and_describe_report_the_queue(cups_pdf) -> None:
    assert cups_pdf.queue in printing.printers()
    assert printing.select_printer(cups_pdf.queue) == cups_pdf.queue
    status = printing.describe(cups_pdf.queue)
    assert status == {
        "available": True,
        "name": cups_pdf.queue,
        "system": "cups",
        "message": f"Impression sur « {cups_pdf.queue} » (imprimante choisie dans la configuration).",
    }
    # the test queue is never left as the default by the set-up
    assert printing.default_printer() != cups_pdf.queue


def test_unknown_printer_is_named_in_a_french_error(cups_pdf, certificate) -> None:
    _, pdf = certificate
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, printer="Imprimante-Accueil-2", title=_title())
    message = caught.value.message
    assert "« Imprimante-Accueil-2 »" in message
    assert "n'existe pas" in message
    assert f"« {cups_pdf.queue} »" in message  # what is available instead
    status = printing.describe("Imprimante-Accueil-2")
    assert status["available"] is False
    assert status["name"] == "Imprimante-Accueil-2"
    assert status["message"] == message


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_scheduler_gives_no_printer_error(cups_pdf, certificate, monkeypatch) -> None:
    _, pdf = certificate
    monkeypatch.setenv("CUPS_SERVER", f"127.0.0.1:{_unused_port()}")
    started = time.monotonic()
    for call in (
        lambda: printing.print_pdf(pdf, printer=cups_pdf.queue, title=_title()),
        lambda: printing.print_pdf(pdf, title=_title()),
        printing.printers,
        printing.default_printer,
    ):
        with pytest.raises(NoPrinterError) as caught:
            call()
        assert "ne répond pas" in caught.value.message
    status = printing.describe(cups_pdf.queue)
    assert status["available"] is False
    assert status["system"] == "cups"
    assert "ne répond pas" in status["message"]
    assert time.monotonic() - started < 10


def test_cups_clients_missing(monkeypatch, tmp_path, certificate) -> None:
    _, pdf = certificate
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(printing_cups, "_FALLBACK_BIN", ())
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, title=_title())
    assert "CUPS n'est pas installé" in caught.value.message
    assert printing.describe()["available"] is False


def test_default_printer_set_with_lpoptions(cups_pdf, certificate) -> None:
    spec, pdf = certificate
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    real_lpoptions = real_home / ".cups" / "lpoptions"
    before = real_lpoptions.read_bytes() if real_lpoptions.exists() else None
    # the user default goes into $HOME/.cups/lpoptions, here the test's temporary home
    subprocess.run(["lpoptions", "-d", cups_pdf.queue], check=True, capture_output=True, timeout=15)
    assert (Path(os.environ["HOME"]) / ".cups" / "lpoptions").read_text().startswith(f"Default {cups_pdf.queue}")
    assert printing.default_printer() == cups_pdf.queue
    status = printing.describe()
    assert status["available"] is True
    assert status["name"] == cups_pdf.queue
    assert "imprimante par défaut du système" in status["message"]
    title = _title()
    since = time.time()
    job_id = printing.print_pdf(pdf, title=title)
    assert job_id.startswith(f"{cups_pdf.queue}-")
    _check_printed(cups_pdf, job_id, spec, title, since)
    # a configured printer wins over the default; a wrong one is an error, not a fallback
    assert printing.select_printer(cups_pdf.queue) == cups_pdf.queue
    with pytest.raises(NoPrinterError):
        printing.select_printer("absente")
    after = real_lpoptions.read_bytes() if real_lpoptions.exists() else None
    assert after == before, "the real user's lpoptions must not change"


def test_default_from_environment_naming_a_missing_printer(cups_pdf, monkeypatch) -> None:
    monkeypatch.setenv("PRINTER", "partie-en-reparation")
    with pytest.raises(NoPrinterError) as caught:
        printing.select_printer()
    assert "« partie-en-reparation »" in caught.value.message
    assert "n'existe plus" in caught.value.message


def test_no_printer_installed(cups_pdf, private, certificate, monkeypatch) -> None:
    _, pdf = certificate
    monkeypatch.setenv("CUPS_SERVER", private.server)
    assert printing.printers() == []
    assert printing.default_printer() is None
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, title=_title())
    assert "Aucune imprimante n'est installée" in caught.value.message
    status = printing.describe()
    assert status == {"available": False, "name": None, "system": "cups", "message": caught.value.message}


def test_server_default_set_with_lpadmin(cups_pdf, private, certificate, monkeypatch) -> None:
    _, pdf = certificate
    monkeypatch.setenv("CUPS_SERVER", private.server)
    private.add_queue("accueil")
    private.add_queue("bureau")
    assert printing.printers() == ["accueil", "bureau"]
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, title=_title())
    assert "Aucune imprimante par défaut" in caught.value.message
    assert "« accueil », « bureau »" in caught.value.message
    private.run("lpadmin", "-d", "bureau")
    assert printing.default_printer() == "bureau"
    assert printing.describe()["name"] == "bureau"
    assert re.fullmatch(r"bureau-\d+", printing.print_pdf(pdf, title=_title()))
    assert re.fullmatch(r"accueil-\d+", printing.print_pdf(pdf, printer="accueil", title=_title()))
    private.run("lpadmin", "-d", "accueil")  # back to another default: the new one is used
    assert printing.default_printer() == "accueil"


def test_rejecting_and_paused_queues(cups_pdf, private, certificate, monkeypatch) -> None:
    _, pdf = certificate
    monkeypatch.setenv("CUPS_SERVER", private.server)
    private.add_queue("accueil")
    private.run("cupsdisable", "accueil")  # paused: jobs wait, the status says so
    status = printing.describe("accueil")
    assert status["available"] is True
    assert "en pause" in status["message"]
    assert re.fullmatch(r"accueil-\d+", printing.print_pdf(pdf, printer="accueil", title=_title()))
    private.run("cupsreject", "accueil")  # rejecting: nothing to print on
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, printer="accueil", title=_title())
    assert "« accueil » refuse les impressions" in caught.value.message
    assert printing.describe("accueil")["available"] is False


@pytest.mark.parametrize("title", ["certificat DUPONT", "Célestin", "", "certificat-" + "9" * 80, "-o"])
def test_job_title_cannot_carry_patient_data(title, certificate) -> None:
    _, pdf = certificate
    with pytest.raises(ValueError):
        printing.print_pdf(pdf, printer="sidep-test-pdf", title=title)


def test_only_pdf_is_printed(cups_pdf) -> None:
    with pytest.raises(PrintError) as caught:
        printing.print_pdf(b"Nom : DUPONT", printer=cups_pdf.queue, title=_title())
    assert not isinstance(caught.value, NoPrinterError)
    assert caught.value.message == "Le document à imprimer n'est pas un PDF."


# ----------------------------------------------------------------------------------------------------------------
# Windows: the GDI path cannot run here; fake pywin32 and pypdfium2 check the calls it makes
# ----------------------------------------------------------------------------------------------------------------
class _FakeWindows:
    """Records what helper.service.printing (its Windows back end) asks of win32print, win32gui and pypdfium2."""

    def __init__(self, printers: list[str], default: str | None, pages: int = 2) -> None:
        self.printers = printers
        self.default = default
        self.pages = pages
        self.calls: list[tuple] = []
        self.closed: list[str] = []
        self.fail_on_page: int | None = None

    # win32print
    def EnumPrinters(self, flags, name, level):
        return [{"pPrinterName": p} for p in self.printers]

    def GetDefaultPrinter(self):
        if self.default is None:
            raise OSError(2, "GetDefaultPrinter", "no default printer")
        return self.default

    def StartDoc(self, hdc, docinfo):
        self.calls.append(("StartDoc", hdc, docinfo))
        return 42

    def StartPage(self, hdc):
        self.calls.append(("StartPage",))

    def EndPage(self, hdc):
        self.calls.append(("EndPage",))

    def EndDoc(self, hdc):
        self.calls.append(("EndDoc",))

    def AbortDoc(self, hdc):
        self.calls.append(("AbortDoc",))

    def GetDeviceCaps(self, hdc, index):
        assert hdc == 1234
        # 600 dpi laser, A4 sheet, 4.2 mm unprintable margin
        return {88: 600, 90: 600, 110: 4960, 111: 7016, 112: 100, 113: 100}[index]

    # win32gui
    def CreateDC(self, driver, device, init):
        assert driver == "WINSPOOL" and init is None
        self.calls.append(("CreatePrinterDC", device))
        return 1234

    def DeleteDC(self, hdc):
        assert hdc == 1234
        self.closed.append("dc")

    # pypdfium2
    def PdfDocument(self, data):
        assert data.startswith(b"%PDF-")
        fake = self

        class Bitmap:
            def __init__(self, scale):
                self.width = round(595 * scale)
                self.height = round(842 * scale)
                self.stride = self.width * 4
                self.buffer = b""

            def close(self):
                fake.closed.append("bitmap")

        class Page:
            def __init__(self, index):
                self.index = index

            def get_size(self):
                return 595.0, 842.0

            def render(self, scale, prefer_bgrx, optimize_mode):
                assert prefer_bgrx and optimize_mode == "print"
                if fake.fail_on_page == self.index:
                    raise RuntimeError("render failed")
                fake.calls.append(("render", round(scale * 72)))
                return Bitmap(scale)

            def close(self):
                fake.closed.append("page")

        class Document:
            def __len__(self):
                return fake.pages

            def __getitem__(self, index):
                return Page(index)

            def close(self):
                fake.closed.append("pdf")

        return Document()


@pytest.fixture
def windows(monkeypatch) -> _FakeWindows:
    import sys
    import types

    fake = _FakeWindows(printers=["Brother Accueil", "Microsoft Print to PDF"], default="Brother Accueil")
    for name, attrs in {
        "win32print": ("EnumPrinters", "GetDefaultPrinter", "StartDoc", "StartPage", "EndPage", "EndDoc", "AbortDoc",
                       "GetDeviceCaps"),
        "win32gui": ("CreateDC", "DeleteDC"),
        "pypdfium2": ("PdfDocument",),
    }.items():
        module = types.ModuleType(name)
        for attr in attrs:
            setattr(module, attr, getattr(fake, attr))
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(printing, "_system", lambda: "windows")
    monkeypatch.setattr(
        printing_windows, "_win_blit", lambda hdc, bitmap, x, y, w, h: fake.calls.append(("blit", hdc, bitmap.width, x, y, w, h))
    )
    return fake


def test_windows_gdi_printing(windows, certificate) -> None:
    _, pdf = certificate
    assert printing.printers() == ["Brother Accueil", "Microsoft Print to PDF"]
    assert printing.default_printer() == "Brother Accueil"
    assert printing.describe()["system"] == "windows"
    assert printing.describe()["name"] == "Brother Accueil"
    assert printing.print_pdf(pdf, title="certificat-17") == "42"
    page = [("render", 300), ("StartPage",), ("blit", 1234, 2479, -100, -100, 4958, 7016), ("EndPage",)]
    assert windows.calls == [
        ("CreatePrinterDC", "Brother Accueil"), ("StartDoc", 1234, ("certificat-17", None, None, 0)),
        *page, *page, ("EndDoc",),
    ]
    assert windows.closed.count("bitmap") == windows.closed.count("page") == 2
    assert windows.closed[-2:] == ["dc", "pdf"]
    windows.calls.clear()
    printing.print_pdf(pdf, printer="Microsoft Print to PDF", title="certificat-18")
    assert windows.calls[0] == ("CreatePrinterDC", "Microsoft Print to PDF")


def test_windows_errors(windows, certificate) -> None:
    _, pdf = certificate
    with pytest.raises(NoPrinterError) as caught:
        printing.print_pdf(pdf, printer="HP Bureau", title="certificat-1")
    assert "« HP Bureau »" in caught.value.message
    windows.default = None
    with pytest.raises(NoPrinterError, match="Aucune imprimante par défaut"):
        printing.print_pdf(pdf, title="certificat-1")
    assert printing.describe()["available"] is False
    windows.default = "Brother Accueil"
    windows.fail_on_page = 1  # a failure after StartDoc aborts the job and releases the printer DC
    with pytest.raises(PrintError) as caught:
        printing.print_pdf(pdf, title="certificat-1")
    assert caught.value.message.startswith("L'impression sur « Brother Accueil » a échoué.")
    assert windows.calls[-1] == ("AbortDoc",)
    assert "dc" in windows.closed and windows.closed[-1] == "pdf"
