"""A real ``sidep-helper serve`` reading a real Dovecot mailbox, for the IMAP tests and benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apicontract import validate
from conftest import Cli, free_port, start, wait_healthy
from dovecot import Dovecot


def imap_config(server: Dovecot, *, tls: str = "starttls", cert: str | None = "good", password_file: Path | None = None,
                ca: Path | None = None, folders: tuple[str, ...] = ("INBOX",), poll: int = 30,
                move_to: str = "", name: str = "bal") -> str:
    lines = ["[[sources.imap]]", f'name = "{name}"', 'host = "127.0.0.1"',
             f"port = {server.tls_port if tls == 'implicit' else server.port}", f'tls = "{tls}"',
             f'ca_file = "{(ca or server.pki.ca).as_posix()}"',
             "folders = [" + ", ".join(f'"{f}"' for f in folders) + "]", f"poll_seconds = {poll}"]
    if cert:
        crt, key = server.pki.client(cert)
        lines += [f'cert_file = "{crt.as_posix()}"', f'key_file = "{key.as_posix()}"']
    if password_file:
        lines += [f'user = "{server.user}"', f'password_file = "{password_file.as_posix()}"']
    if move_to:
        lines.append(f'move_processed_to = "{move_to}"')
    return "\n".join(lines) + "\n"


@dataclass
class Helper:
    home: Path
    port: int
    proc: subprocess.Popen[bytes]
    token: str

    @classmethod
    def start(cls, home: Path, imap: str, *, printer: str = "", wait: bool = True) -> Helper:
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        extra = f'printer = "{printer}"\n' if printer else ""
        (home / "config.toml").write_text(
            f"port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n{extra}{imap}", encoding="utf-8"
        )
        proc = start(home, port, stderr_to=home / "serve.stderr")  # a pipe nobody reads would fill up
        wait_healthy(port, proc)
        helper = cls(home, port, proc, Cli(home).run("token").stdout.strip())
        if wait:
            helper.wait_imap_ok()
        return helper

    def restart(self) -> None:
        self.proc = start(self.home, self.port, stderr_to=self.home / "serve.stderr")
        wait_healthy(self.port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def search(self, q: str, limit: int = 50) -> dict[str, Any]:
        status, body = self.call("GET", "/api/v1/certificates?" + urllib.parse.urlencode({"q": q, "limit": limit}))
        assert status == 200, body
        return body

    def wait_for(self, q: str, total: int = 1, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.search(q)
            if body["total"] >= total or time.monotonic() > deadline:
                return body
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        status, body = self.call("GET", "/api/v1/status")
        assert status == 200, body
        validate(body, "/api/v1/status", "GET", 200)  # the contract, ImapFolderStatus included
        return body

    def imap_status(self) -> list[dict[str, Any]]:
        return self.status()["imap"]

    def wait_imap_ok(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.imap_status()
            if rows and all(r["last_success"] and r["state"] not in ("connexion", "erreur", "reconnexion")
                            for r in rows):
                return
            time.sleep(0.1)
        raise AssertionError(f"IMAP source not synced: {rows}\n{self.log()}")

    def wait_imap_error(self, code: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.imap_status()
            for row in rows:
                if row["error_code"] == code:
                    return row
            time.sleep(0.1)
        raise AssertionError(f"no IMAP error {code}: {rows}")

    def cert(self, cert_id: int) -> dict[str, Any]:
        status, body = self.call("GET", f"/api/v1/certificates/{cert_id}")
        assert status == 200, body
        return body

    def log(self) -> str:
        path = self.home / "logs" / "sidep-helper.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def sync_inbox_once(server: Dovecot, data_dir: Path, **settings: Any) -> tuple[Any, Any]:
    """One sync of INBOX as the service runs it (``FolderSync.sync``, good client certificate), in this
    process; returns the store (left open: the caller closes it) and the folder's state at selection."""
    import threading

    from helper.config import ImapSource, Settings
    from helper.index import imapstate
    from helper.index.store import Store
    from helper.service import imapsync
    from helper.service.audit import Audit
    from helper.sources.imap import Folder, connect

    crt, key = server.pki.client("good")
    account = ImapSource(name="bal", host="127.0.0.1", port=server.port, ca_file=server.pki.ca, cert_file=crt,
                         key_file=key)
    config = Settings(data_dir=data_dir, config_file=data_dir.parent / "none.toml", **settings)
    store = Store(config.data_dir)
    imapstate.ensure(store)
    sync = imapsync.FolderSync(config, account, "INBOX", Audit(config.data_dir), threading.Lock(), threading.Event())
    client = connect(account)
    try:
        folder = Folder(client, "INBOX")
        info = folder.select()
        sync.sync(store, folder, info)  # raises on an internal error
    finally:
        client.logout()
    return store, info
