"""Printing through CUPS (Linux, macOS), with its command-line clients.

1. the clients (``lpstat``, ``lp``) are found on ``PATH``, else in the usual bin folders (services
   may run with a minimal PATH); missing ones mean CUPS is not installed;
2. ``lpstat -r -d -a -p`` tells in one call whether the scheduler answers, the default queue and the
   queues that exist, accept jobs and are enabled (:func:`_cups_state`);
3. ``lp -d QUEUE -t TITLE -`` receives the PDF on its standard input, so no file with a patient
   name touches the disk on our side (:func:`_cups_print`); its answer gives the job id;
4. every call has a timeout (``TIMEOUT`` seconds) and the process environment is passed on
   (``CUPS_SERVER`` and friends apply); failures become French ``PrintError``/``NoPrinterError``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from helper.service.printing_errors import _CUPS_HELP, NoPrinterError, PrintError

log = logging.getLogger("helper.service.printing")

TIMEOUT = 15.0  # seconds, for every call to the spooler


@dataclass
class _Queue:
    accepting: bool = True
    enabled: bool = True
    reason: str = ""


@dataclass
class _CupsState:
    default: str | None = None
    queues: dict[str, _Queue] = field(default_factory=dict)


_NOT_INSTALLED = (
    "Le système d'impression CUPS n'est pas installé sur ce poste (commande « {tool} » introuvable). "
    + _CUPS_HELP
)
_NOT_RUNNING = (
    "Le service d'impression (CUPS) ne répond pas : il est arrêté ou injoignable. Redémarrez le poste ; "
    "si le problème persiste, contactez le service informatique."
)
_FALLBACK_BIN = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")  # when PATH is minimal (services)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in _FALLBACK_BIN:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise NoPrinterError(_NOT_INSTALLED.format(tool=name), f"{name} not found in PATH")


def _cups_env() -> dict[str, str]:
    # the process environment (CUPS_SERVER, LPDEST, PRINTER, HOME for lpoptions…) with stable English output
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _cups_run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [_tool(args[0]), *args[1:]]
    try:
        return subprocess.run(
            command, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True, env=_cups_env(), timeout=TIMEOUT, check=False,
        )
    except FileNotFoundError as exc:
        raise NoPrinterError(_NOT_INSTALLED.format(tool=args[0]), str(exc)) from exc
    except subprocess.TimeoutExpired as exc:
        if args[0] == "lp":
            raise PrintError(
                f"Le service d'impression n'a pas répondu à temps ({TIMEOUT:.0f} s). Vérifiez la file "
                f"d'impression avant de relancer, pour ne pas imprimer le certificat deux fois.",
                f"lp timed out after {TIMEOUT} s",
            ) from exc
        raise NoPrinterError(_NOT_RUNNING, f"{args[0]} timed out after {TIMEOUT} s") from exc
    except OSError as exc:
        raise NoPrinterError(_NOT_INSTALLED.format(tool=args[0]), str(exc)) from exc


_ACCEPTING = re.compile(r"^(\S+) (not )?accepting requests")
_PRINTER = re.compile(r"^printer (\S+) ")
_DEFAULT = re.compile(r"^system default destination: (\S+)")
_DEFAULT_MISSING = re.compile(r"names non-existent destination \"([^\"]*)\"")


def _cups_state() -> _CupsState:
    proc = _cups_run(["lpstat", "-r", "-d", "-a", "-p"])
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    first = out.splitlines()[0] if out else ""
    if first != "scheduler is running":
        raise NoPrinterError(_NOT_RUNNING, (first or err).strip())
    state = _CupsState()
    missing = _DEFAULT_MISSING.search(out) or _DEFAULT_MISSING.search(err)
    if missing:  # $PRINTER / $LPDEST / lpoptions name a destination that does not exist
        state.default = missing.group(1)
    last: _Queue | None = None
    for line in out.splitlines()[1:]:
        if line.startswith(("\t", " ")):
            if last is not None and not last.reason:
                last.reason = line.strip()
            continue
        last = None
        if match := _DEFAULT.match(line):
            state.default = match.group(1)
        elif match := _ACCEPTING.match(line):
            last = state.queues.setdefault(match.group(1), _Queue())
            last.accepting = not match.group(2)
        elif match := _PRINTER.match(line):
            last = state.queues.setdefault(match.group(1), _Queue())
            last.enabled = " disabled since " not in line
    return state


_REQUEST_ID = re.compile(r"request id is (\S+)")


def _cups_print(data: bytes, name: str, title: str) -> str:
    proc = _cups_run(
        ["lp", "-d", name, "-t", title, "-o", "document-format=application/pdf", "-"], stdin=data
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace").strip()
    match = _REQUEST_ID.search(out)
    if proc.returncode == 0 and match:
        log.info("print job %s queued on %s (%d bytes)", match.group(1), name, len(data))
        return match.group(1)
    detail = f"lp exited {proc.returncode}: {err or out.strip()}"
    lowered = err.lower()
    if "not accepting" in lowered:
        raise NoPrinterError(f"L'imprimante « {name} » refuse les impressions pour le moment. {_CUPS_HELP}", detail)
    if "does not exist" in lowered or "not found" in lowered:
        raise NoPrinterError(f"L'imprimante « {name} » n'existe plus sur ce poste. {_CUPS_HELP}", detail)
    if "scheduler" in lowered or "connect" in lowered:
        raise NoPrinterError(_NOT_RUNNING, detail)
    raise PrintError(f"L'impression sur « {name} » a échoué. {_CUPS_HELP}", detail)
