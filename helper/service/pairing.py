"""Native-messaging host ``fr.sidep_helper.pairing``: gives the extension the helper's address and token.

What happens, step by step:

1. The browser starts this program as the logged-in user (it finds it through the manifests written by
   ``helper.service.nativehosts``), with the caller in its arguments: Chrome/Edge/Chromium pass the
   origin ``chrome-extension://<id>/`` first (then ``--parent-window=N`` on Windows), Firefox and
   Thunderbird the manifest's path then the add-on id.
2. A caller that is not in the manifests' allowed lists (``helper.extension_ids``, the one source of
   both) gets ``{"error": "caller_refused"}`` and the program exits: nothing is read from stdin.
3. Messages on stdin are a 32-bit length in native byte order, then that many bytes of UTF-8 JSON.
   A truncated prefix, a length of 0 or above ``MAX_MESSAGE`` (a request is a few bytes: 2 GB is an
   attack or garbage), or a body that is not a JSON object ends the program without reading the body.
4. For each request (``{"type": "pair"}``): the settings and data folder are the helper's own
   (``helper.config.load``: ``SIDEP_HELPER_HOME`` or the user's folders), the token file is read or
   created (0600), and ``/api/v1/health`` is asked on the loopback. When nothing answers, the helper is
   started detached (``python -m helper serve`` with this same interpreter, its output discarded; it
   keeps its own log in the data folder) and health is awaited briefly, so the answer leaves within a
   second: ``{"helper_url", "token", "version", "running"}`` (``running`` false: still starting).
5. The program exits when stdin closes (the browser's port closes). It never writes the token anywhere
   but stdout: its only log lines (stderr, which browsers copy into their own logs) carry no secret.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from helper import __version__
from helper.config import ConfigError, Settings, load
from helper.extension_ids import CHROMIUM_IDS, GECKO_IDS
from helper.service.token import read_or_create

MAX_MESSAGE = 64 * 1024
HEALTH_TIMEOUT = 0.25
START_WAIT = 0.7  # seconds awaited for a helper just started: the answer must leave within a second


class ProtocolError(Exception):
    """Bytes on stdin that are not a native-messaging request: the host stops reading."""


def caller(argv: list[str]) -> str | None:
    """The allowed caller named by the browser's arguments, or None when refused."""
    if not argv:
        return None
    first = argv[0]
    if first.startswith("chrome-extension://"):
        ext_id = first[len("chrome-extension://"):].rstrip("/")
        return first if ext_id in CHROMIUM_IDS else None
    if len(argv) >= 2 and argv[1] in GECKO_IDS:  # Firefox/Thunderbird: manifest path, then add-on id
        return argv[1]
    return None


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """One request, or None at end of input. Raises ProtocolError without reading a bad body."""
    prefix = stream.read(4)
    if not prefix:
        return None
    if len(prefix) != 4:
        raise ProtocolError("préfixe de longueur tronqué")
    (length,) = struct.unpack("=I", prefix)
    if length == 0 or length > MAX_MESSAGE:
        raise ProtocolError(f"longueur de message refusée ({length} octets)")
    body = stream.read(length)
    if len(body) != length:
        raise ProtocolError("message tronqué")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("message illisible (JSON UTF-8 attendu)") from exc
    if not isinstance(message, dict):
        raise ProtocolError("message illisible (objet JSON attendu)")
    return message


def write_message(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    stream.write(struct.pack("=I", len(body)) + body)
    stream.flush()


def helper_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.port}"


def healthy(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """True when sidep-helper (its version header, not another program) answers on ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status == 200 and bool(resp.headers.get("X-Sidep-Helper"))
    except OSError:
        return False


def start_helper() -> None:
    """``python -m helper serve`` detached from this host (and from the browser's pipes)."""
    python = Path(sys.executable)
    kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                              "stderr": subprocess.DEVNULL, "close_fds": True}
    if os.name == "nt":
        windowless = python.with_name("pythonw.exe")
        if windowless.is_file():
            python = windowless
        kwargs["creationflags"] = (subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                                   | subprocess.CREATE_NO_WINDOW)  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    subprocess.Popen([str(python), "-m", "helper", "serve"], **kwargs)  # noqa: S603 - our own interpreter


def pair(settings: Settings) -> dict[str, Any]:
    """The answer to a pairing request: address, token (created if needed), version, running."""
    token = read_or_create(settings.data_dir)
    url = helper_url(settings)
    running = healthy(url)
    if not running:
        log("sidep-helper ne répond pas : démarrage du service")
        start_helper()
        deadline = time.monotonic() + START_WAIT
        while not running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = healthy(url, timeout=0.1)
    return {"helper_url": url, "token": token, "version": __version__, "running": running}


def log(text: str) -> None:
    """A line for IT on stderr (browsers copy it to their own log). Never give it the token."""
    print(f"sidep-helper-pairing : {text}", file=sys.stderr, flush=True)


def serve(argv: list[str], stdin: BinaryIO, stdout: BinaryIO) -> int:
    who = caller(argv)
    if who is None:
        log("appelant refusé (extension inconnue)")
        write_message(stdout, {"error": "caller_refused"})
        return 2
    try:
        settings = load()
    except ConfigError as exc:
        log(str(exc))
        write_message(stdout, {"error": "config", "message": str(exc)})
        return 1
    while True:
        try:
            message = read_message(stdin)
        except ProtocolError as exc:
            log(f"requête refusée : {exc}")
            return 3
        if message is None:
            return 0  # the browser closed the port
        if message.get("type") not in ("pair", None):
            write_message(stdout, {"error": "unknown_request"})
            continue
        try:
            answer = pair(settings)
        except OSError as exc:
            log(f"dossier de données inutilisable : {type(exc).__name__}")
            answer = {"error": "data_dir", "message": f"Dossier de données inutilisable : {settings.data_dir}"}
        write_message(stdout, answer)


def main() -> int:
    return serve(sys.argv[1:], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
