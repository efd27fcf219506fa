"""Dispatch: copy each certificate's PDF to its site's folder, exactly once, across crashes and restarts.

What happens in one pass (:func:`run_once`):

1. Every certificate with a PDF not yet in the dispatch journal is added to it (``pending``), routed by its
   site FINESS.
2. For each row due: a FINESS not in the site directory → ``unassigned`` (« à affecter », IT assigns it
   with ``sidep-helper dispatch assign``); a site without ``folder`` → ``no_folder``.
3. The file name is built from the FINESS, the dossier and the sampling date only, each reduced to
   ``A–Z a–z 0–9 -`` (nothing from the mail is used as a path): ``750712184_2106221234_2021-06-22.pdf``.
   A file of that name with the same bytes means the copy is already there (done); with other bytes, the
   next free name ``…-2.pdf`` is used: a different file is never overwritten.
4. The name is recorded (``started``) BEFORE any byte is written; the PDF is written to a hidden temporary
   name in the same folder, flushed to disk, then hard-linked to its name (which fails rather than
   replace an existing file) and the temporary name removed; then ``done`` is recorded.
5. After a crash, a ``started`` row is resolved by looking at the folder: its file there with the same
   bytes → ``done``; otherwise the copy is redone (leftover temporary files removed first).
6. A site with a ``printer``: the job is recorded ``started`` before it is sent and ``done`` (with its
   job id) after, and the certificate marked printed; a ``started`` found after a crash becomes
   ``unknown`` and is never sent again by itself (a double paper copy is worse than a missing one).
7. A folder that cannot be written (share down, read-only) → ``retry`` with the reason in French
   (:func:`french_reason`) and a growing delay (30 s, 1 min, … 1 h); nothing is lost, the next pass after
   the delay tries again (removing first the temporary file a failed or killed copy may have left).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from helper.config import Settings
from helper.index import dispatchjournal as journal
from helper.index.store import Store
from helper.service import printing
from helper.service.printing import PrintError

_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_SUFFIX = 50


@dataclass
class Report:
    enqueued: int = 0
    done: list[int] = field(default_factory=list)
    unassigned: list[int] = field(default_factory=list)
    no_folder: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)


def base_name(finess: str, dossier: str | None, sampled_at: str | None) -> str:
    """Step 3: ``FINESS_dossier_date`` from safe characters only."""
    safe_finess = _UNSAFE.sub("_", finess)[:9] or "inconnu"
    safe_dossier = _UNSAFE.sub("_", dossier or "")[:40] or "sans-dossier"
    match = _DATE.match(sampled_at or "")
    return f"{safe_finess}_{safe_dossier}_{match.group(0) if match else 'sans-date'}"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _choose(folder: Path, base: str, sha: str) -> tuple[str, bool]:
    """The name to use and whether that file already holds these bytes (step 3)."""
    for n in range(1, MAX_SUFFIX + 1):
        name = f"{base}.pdf" if n == 1 else f"{base}-{n}.pdf"
        found = _sha(folder / name)
        if found is None:
            return name, False
        if found == sha:
            return name, True
    raise OSError(f"plus de {MAX_SUFFIX} fichiers différents nommés {base}*.pdf dans {folder}")


def _cleanup(folder: Path, name: str) -> None:
    for leftover in folder.glob(f".{name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _write(folder: Path, name: str, pdf: bytes, sha: str) -> None:
    """Step 4: temporary name, fsync, link to the final name (never replacing a file), remove the temporary."""
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pdf)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, folder / name)
        except FileExistsError:
            if _sha(folder / name) != sha:
                raise OSError(f"un autre fichier {name} est apparu dans {folder} pendant la copie") from None
        except OSError:  # file systems without hard links: rename does not replace on Windows; check first
            if (folder / name).exists():
                raise
            os.rename(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)


_REASONS = {
    errno.EACCES: "accès refusé (dossier en lecture seule ou droits insuffisants)",
    errno.EPERM: "accès refusé (dossier en lecture seule ou droits insuffisants)",
    errno.EROFS: "partage monté en lecture seule",
    errno.ENOENT: "dossier introuvable",
    errno.ENOTDIR: "dossier introuvable",
    errno.ENOSPC: "plus de place sur le partage",
    errno.EDQUOT: "quota du partage dépassé",
    errno.EIO: "erreur d'entrée-sortie (partage déconnecté ?)",
    errno.ETIMEDOUT: "partage injoignable (délai dépassé)",
    errno.EHOSTDOWN: "serveur du partage éteint ou injoignable",
    errno.EHOSTUNREACH: "serveur du partage injoignable",
    errno.ENETUNREACH: "réseau injoignable",
    errno.ESTALE: "partage déconnecté (descripteur périmé)",
}


def french_reason(exc: OSError) -> str:
    """Why a copy failed, in French for IT (the system's own message is English on most servers)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    if exc.errno:
        return f"erreur système {errno.errorcode.get(exc.errno, exc.errno)}"
    return str(exc)


def _pause_for_tests() -> None:
    """Tests kill the process here (file in place, ``done`` not yet recorded): the worst moment."""
    pause = os.environ.get("SIDEP_HELPER_TEST_DISPATCH_PAUSE")
    if pause:
        time.sleep(float(pause))


def _print(store: Store, printer: str, cert_id: int, row: dict, pdf: bytes) -> None:
    """Step 6: at most once on paper."""
    if not printer or row.get("print_state") in ("done", "unknown"):
        return
    if row.get("print_state") == "started":
        journal.mark_print(store, cert_id, "unknown")
        return
    journal.mark_print(store, cert_id, "started")
    job = printing.print_pdf(pdf, printer=printer, title=f"certificat-{cert_id}")
    journal.mark_print(store, cert_id, "done", job)
    store.mark_printed(cert_id)


def run_once(store: Store, settings: Settings) -> Report:
    journal.ensure(store)
    report = Report(enqueued=journal.enqueue(store))
    for row in journal.due(store):
        cert_id = row["cert_id"]
        finess = (row["finess"] or "").upper()
        site = settings.site_directory.get(finess)
        if site is None:
            journal.mark(store, cert_id, "unassigned")
            report.unassigned.append(cert_id)
            continue
        if not site.folder and not site.printer:
            journal.mark(store, cert_id, "no_folder")
            report.no_folder.append(cert_id)
            continue
        cert = store.db.execute("SELECT dossier, sampled_at, pdf_sha256 FROM certificates WHERE id = ?",
                                (cert_id,)).fetchone()
        pdf = store.pdf(cert_id) if cert else None
        if pdf is None:
            journal.mark(store, cert_id, "retry", error="PDF du certificat introuvable dans l'index")
            report.retry.append(cert_id)
            continue
        sha = hashlib.sha256(pdf).hexdigest()
        folder = Path(site.folder).expanduser()
        try:
            _print(store, site.printer, cert_id, row, pdf)
            if not site.folder:
                journal.mark(store, cert_id, "done")
                report.done.append(cert_id)
                continue
            if not folder.is_dir():
                raise OSError(f"dossier inaccessible : {folder}")
            if row["state"] in ("started", "retry") and row["target"]:  # step 5 (also after a failed retry)
                _cleanup(folder, row["target"])
                if _sha(folder / row["target"]) == sha:
                    journal.mark(store, cert_id, "done")
                    report.done.append(cert_id)
                    continue
            name, already = _choose(folder, base_name(finess, cert["dossier"], cert["sampled_at"]), sha)
            journal.mark(store, cert_id, "started", target=name)
            if not already:
                _write(folder, name, pdf, sha)
                _pause_for_tests()
            journal.mark(store, cert_id, "done", target=name)
            report.done.append(cert_id)
        except PrintError as exc:
            journal.mark_print(store, cert_id, None)
            journal.mark(store, cert_id, "retry", error=f"impression impossible sur {site.printer} : {exc.message}")
            report.retry.append(cert_id)
        except OSError as exc:
            reason = french_reason(exc)
            journal.mark(store, cert_id, "retry", error=f"copie impossible dans {folder} : {reason}")
            report.retry.append(cert_id)
    return report
