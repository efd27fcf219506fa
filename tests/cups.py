"""A real CUPS scheduler with a cups-pdf queue, for the printing tests.

``ensure_cups_pdf()`` brings the machine to this state, doing only what is missing (so it is cheap
to call again, from every test session and from ``tests/run``):

1. the Debian packages ``cups cups-client cups-bsd printer-driver-cups-pdf`` are installed (with
   ``apt-get``, only when running as root on a machine that has it);
2. cups-pdf writes into ``/var/spool/cups-pdf/<user>/`` and puts the job number in file names
   (``<title>-job_<n>.pdf``), so a test can find the output of its own job;
3. the scheduler answers (``lpstat -r``); without systemd it is started as ``/usr/sbin/cupsd``, which
   detaches and keeps running for the rest of the machine session;
4. the queue ``sidep-test-pdf`` exists, uses the cups-pdf backend, is enabled and accepts jobs. It is
   not made the system default: tests name it, and the one test that needs a default sets and
   restores it.

Anything that cannot be done raises ``CupsSetupError`` with what was tried: the printing tests must
fail loudly rather than be skipped. Standard library only, so that ``python3 tests/cups.py`` works
before any virtual environment exists.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syslock import file_lock

QUEUE = "sidep-test-pdf"
PACKAGES = ("cups", "cups-client", "cups-bsd", "printer-driver-cups-pdf")
BACKEND = Path("/usr/lib/cups/backend/cups-pdf")
CUPSD = Path("/usr/sbin/cupsd")
CUPS_PDF_CONF = Path("/etc/cups/cups-pdf.conf")
OUT_ROOT = Path("/var/spool/cups-pdf")
# what we want in cups-pdf.conf (cups-pdf reads it at every job: no restart needed)
CONF_SETTINGS = {
    "Out": "/var/spool/cups-pdf/${USER}",
    "AnonDirName": "/var/spool/cups-pdf/ANONYMOUS",
    "Label": "2",  # always add the job number: <title>-job_<n>.pdf
}
PPD_CANDIDATES = ("lsb/usr/cups-pdf/CUPS-PDF_opt.ppd", "lsb/usr/cups-pdf/CUPS-PDF_noopt.ppd")
LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-cups.lock"
TIMEOUT = 30


class CupsSetupError(RuntimeError):
    """The CUPS test environment could not be set up; the message says what went wrong."""


@dataclass(frozen=True)
class CupsPdf:
    """The cups-pdf queue the tests print to, and where its PDF files land."""

    queue: str
    out_dir: Path

    def job_number(self, job_id: str) -> int:
        match = re.fullmatch(rf"{re.escape(self.queue)}-(\d+)", job_id)
        if not match:
            raise AssertionError(f"not a job id of {self.queue}: {job_id!r}")
        return int(match.group(1))

    def wait_for_output(self, job_id: str, timeout: float = 30, newer_than: float = 0) -> Path:
        """The PDF cups-pdf wrote for ``job_id`` once complete; AssertionError after ``timeout`` s.

        ``newer_than`` (a ``time.time()``) ignores files left by an earlier scheduler whose job
        numbers started again from 1.
        """
        number = self.job_number(job_id)
        deadline = time.monotonic() + timeout
        while True:
            found = [
                path for path in (sorted(self.out_dir.glob(f"*-job_{number}.pdf")) if self.out_dir.is_dir() else [])
                if _mtime(path) >= newer_than
            ]
            if found and not _job_pending(self.queue, job_id) and _complete_pdf(found[0]):
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no output for {job_id} in {self.out_dir} after {timeout:.0f} s\n{diagnostics(self.queue)}"
                )
            time.sleep(0.1)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUPS_SERVER", "LPDEST", "PRINTER")}
    env["LC_ALL"] = "C"
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return env


def _run(*args: str, timeout: float = TIMEOUT, check: bool = False) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, env=_env(), timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CupsSetupError(f"{args[0]} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CupsSetupError(f"{' '.join(args)} did not finish in {timeout} s") from exc
    if check and proc.returncode != 0:
        raise CupsSetupError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def _job_pending(queue: str, job_id: str) -> bool:
    out = _run("lpstat", "-o", queue).stdout
    return any(line.split()[:1] == [job_id] for line in out.splitlines())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _complete_pdf(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]


def diagnostics(queue: str = QUEUE) -> str:
    """What CUPS says about the queue and its recent jobs, for assertion messages."""
    parts = []
    for args in (("lpstat", "-r"), ("lpstat", "-l", "-p", queue), ("lpstat", "-W", "all", "-o", queue)):
        try:
            proc = _run(*args, timeout=10)
            parts.append(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        except CupsSetupError as exc:
            parts.append(f"$ {' '.join(args)}\n{exc}")
    for log in (Path("/var/log/cups/error_log"), *sorted(Path("/var/log/cups").glob("cups-pdf*_log"))):
        with contextlib.suppress(OSError):
            parts.append(f"--- {log} (end)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    return "\n".join(parts)


def machine_lock() -> contextlib.AbstractContextManager[None]:
    """Serialises the set-up (and the tests that change the default printer) across processes."""
    return file_lock(LOCK_FILE)


def _is_root() -> bool:
    return os.geteuid() == 0


def _installed() -> bool:
    return (
        CUPSD.exists()
        and BACKEND.exists()
        and all(shutil.which(tool, path=_env()["PATH"]) for tool in ("lp", "lpstat", "lpadmin", "lpoptions"))
    )


def _install_packages() -> None:
    if _installed():
        return
    if not (_is_root() and shutil.which("apt-get")):
        raise CupsSetupError(
            "CUPS with cups-pdf is not installed and cannot be installed here (needs root and apt-get): "
            f"install {' '.join(PACKAGES)}"
        )
    env = _env() | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900, check=False)
    if proc.returncode != 0:  # package lists may be missing or stale on a fresh machine
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600, check=False)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900, check=False)
    if proc.returncode != 0 or not _installed():
        raise CupsSetupError(f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")


def _configure_cups_pdf() -> None:
    try:
        text = CUPS_PDF_CONF.read_text()
    except OSError as exc:
        raise CupsSetupError(f"cannot read {CUPS_PDF_CONF}: {exc}") from exc
    lines = text.splitlines()
    changed = False
    for key, value in CONF_SETTINGS.items():
        wanted = f"{key} {value}"
        active = [i for i, line in enumerate(lines) if re.match(rf"\s*{key}\s", line)]
        if [lines[i].strip() for i in active] == [wanted]:
            continue
        if not _is_root():
            raise CupsSetupError(f"{CUPS_PDF_CONF} must contain « {wanted} » (run tests/cups.py as root)")
        for i in reversed(active):
            del lines[i]
        lines.append(wanted)
        changed = True
    if changed:
        CUPS_PDF_CONF.write_text("\n".join(lines) + "\n")
    OUT_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    if _is_root():
        # cups-pdf creates the per-user folder; the spool root must let users reach theirs
        OUT_ROOT.chmod(0o755)


def scheduler_running() -> bool:
    try:
        proc = _run("lpstat", "-r", timeout=10)
    except CupsSetupError:
        return False
    return proc.returncode == 0 and "is running" in proc.stdout and "not running" not in proc.stdout


def _start_scheduler() -> None:
    if scheduler_running():
        return
    if not _is_root():
        raise CupsSetupError("the CUPS scheduler is not running (start it as root: /usr/sbin/cupsd)")
    Path("/run/cups").mkdir(mode=0o755, exist_ok=True)
    # without -f, cupsd detaches once it is ready and survives the test session
    proc = subprocess.run(
        [str(CUPSD)], capture_output=True, text=True, env=_env(), timeout=TIMEOUT, check=False,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not scheduler_running():
        if time.monotonic() > deadline:
            raise CupsSetupError(
                f"cupsd did not start (exit {proc.returncode}): {proc.stdout}{proc.stderr}\n{diagnostics()}"
            )
        time.sleep(0.2)


def _ppd_names() -> list[str]:
    proc = _run("lpinfo", "-m", timeout=60)
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    pdf = [n for n in names if "cups-pdf" in n.lower()]
    return sorted(pdf, key=lambda n: ("noopt" in n.lower(), n))


def _queue_device(queue: str) -> str | None:
    proc = _run("lpstat", "-v", queue)
    match = re.search(rf"device for {re.escape(queue)}: (\S+)", proc.stdout)
    return match.group(1) if match else None


def _queue_ready(queue: str) -> bool:
    printer = _run("lpstat", "-p", queue).stdout
    accepting = _run("lpstat", "-a", queue).stdout
    return (
        f"printer {queue} " in printer
        and "disabled" not in printer
        and f"{queue} accepting requests" in accepting
    )


def _ensure_queue(queue: str) -> None:
    if _queue_device(queue) == "cups-pdf:/" and _queue_ready(queue):
        return
    if not _is_root():
        raise CupsSetupError(f"queue {queue} missing or not ready (run tests/cups.py as root)\n{diagnostics(queue)}")
    if _queue_device(queue) != "cups-pdf:/":
        errors = []
        for ppd in (*PPD_CANDIDATES, *_ppd_names()):
            proc = _run(
                "lpadmin", "-p", queue, "-E", "-v", "cups-pdf:/", "-m", ppd,
                "-D", "sidep-helper tests (cups-pdf)", "-o", "printer-error-policy=abort-job",
            )
            if proc.returncode == 0 and _queue_device(queue) == "cups-pdf:/":
                break
            errors.append(f"{ppd}: {proc.stdout}{proc.stderr}")
        else:
            raise CupsSetupError(f"lpadmin could not create {queue}:\n" + "\n".join(errors))
    _run("cupsenable", queue, check=True)
    _run("cupsaccept", queue, check=True)
    if not _queue_ready(queue):
        raise CupsSetupError(f"queue {queue} is not ready\n{diagnostics(queue)}")


def out_dir() -> Path:
    """Where cups-pdf puts the jobs of the current user (``Out /var/spool/cups-pdf/${USER}``)."""
    return OUT_ROOT / pwd.getpwuid(os.geteuid()).pw_name


def ensure_cups_pdf(queue: str = QUEUE) -> CupsPdf:
    """Install, configure and start what is missing; returns the queue and its output folder."""
    if sys.platform != "linux":
        raise CupsSetupError("the CUPS test environment is set up on Linux only")
    with machine_lock():
        _install_packages()
        _configure_cups_pdf()
        _start_scheduler()
        _ensure_queue(queue)
    return CupsPdf(queue=queue, out_dir=out_dir())


@dataclass
class PrivateScheduler:
    """A throw-away cupsd of its own (config, spool, logs in a temporary folder, a local socket).

    Tests point ``CUPS_SERVER`` at ``server`` to see a print system with no printer, set a server
    default with ``lpadmin -d``, pause or reject a queue, without touching the machine's scheduler.
    """

    server: str
    root: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = _env() | {"CUPS_SERVER": self.server}
        proc = subprocess.run(
            list(args), capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc

    def add_queue(self, name: str) -> None:
        """A raw queue that prints into /dev/null (jobs are accepted, nothing is kept)."""
        self.run("lpadmin", "-p", name, "-E", "-v", "file:///dev/null", "-m", "raw")


PRIVATE_CUPSD_CONF = """\
Listen {root}/cups.sock
LogLevel warn
Browsing No
DefaultAuthType None
PreserveJobFiles No
<Location />
  Order allow,deny
  Allow all
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""
PRIVATE_FILES_CONF = """\
ServerRoot {root}/etc
RequestRoot {root}/spool
TempDir {root}/spool
CacheDir {root}/cache
StateDir {root}/state
ErrorLog {root}/log/error_log
AccessLog {root}/log/access_log
PageLog {root}/log/page_log
Printcap {root}/printcap
FileDevice Yes
"""


@contextlib.contextmanager
def private_scheduler() -> Iterator[PrivateScheduler]:
    """Start a private ``cupsd -f`` (ensure_cups_pdf() must have installed CUPS), stop it afterwards."""
    if not CUPSD.exists():
        raise CupsSetupError(f"{CUPSD} is missing: call ensure_cups_pdf() first")
    root = Path(tempfile.mkdtemp(prefix="sidep-cupsd-"))
    try:
        root.chmod(0o755)  # cupsd hands spool files to its lp user
        for sub in ("etc", "spool", "cache", "state", "log"):
            (root / sub).mkdir()
        (root / "etc" / "cupsd.conf").write_text(PRIVATE_CUPSD_CONF.format(root=root))
        (root / "etc" / "cups-files.conf").write_text(PRIVATE_FILES_CONF.format(root=root))
        proc = subprocess.Popen(
            [str(CUPSD), "-f", "-c", str(root / "etc" / "cupsd.conf"), "-s", str(root / "etc" / "cups-files.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
            start_new_session=True,
        )
        try:
            scheduler = PrivateScheduler(server=str(root / "cups.sock"), root=root)
            deadline = time.monotonic() + TIMEOUT
            while True:
                if proc.poll() is not None:
                    raise CupsSetupError(f"private cupsd exited {proc.returncode}: {proc.stderr.read().decode()}")
                env = _env() | {"CUPS_SERVER": scheduler.server}
                out = subprocess.run(
                    ["lpstat", "-r"], capture_output=True, text=True, env=env, timeout=10, check=False
                ).stdout
                if out.strip() == "scheduler is running":
                    break
                if time.monotonic() > deadline:
                    raise CupsSetupError(f"private cupsd did not answer on {scheduler.server}")
                time.sleep(0.05)
            yield scheduler
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    started = time.monotonic()
    try:
        cups = ensure_cups_pdf()
    except CupsSetupError as exc:
        print(f"tests/cups.py: {exc}", file=sys.stderr)
        return 1
    print(f"CUPS ready: queue {cups.queue}, cups-pdf output in {cups.out_dir} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
