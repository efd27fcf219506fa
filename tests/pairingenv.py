"""What the pairing tests share: a real helper with two certificates, the host declared in a profile."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mailgen
import psutil
from conftest import ROOT, Cli, free_port, recent_spec, start, wait_healthy

from helper.service import nativehosts

SITE = mailgen.luhn_finess("75071218")


@dataclass
class Helper:
    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None
    specs: list[mailgen.CertSpec]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.home / "token").read_text(encoding="ascii").strip()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        for proc in started_by_host(self.home):
            proc.terminate()
            proc.wait(timeout=20)


def started_by_host(home: Path) -> list[psutil.Process]:
    """``serve`` processes with this data folder that the test did not start itself."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if cmd[-3:] == ["-m", "helper", "serve"] and proc.environ().get("SIDEP_HELPER_HOME") == str(home):
                found.append(proc)
        except (psutil.Error, IndexError):
            continue
    return found


@contextlib.contextmanager
def running_helper(base: Path) -> Iterator[Helper]:
    """A real ``sidep-helper serve`` on a free port with two certificates (one for SITE)."""
    home = base / "home"
    home.mkdir()
    drop = base / "drop"
    drop.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'port = {port}\nwatch = ["{drop.as_posix()}"]\nwatch_downloads = false\nwatch_thunderbird = false\n',
        encoding="utf-8")
    rng = random.Random(99)
    specs = [recent_spec(rng, finess=SITE, last_name="APPAIRE", first_name="Lou"),
             recent_spec(rng, finess=mailgen.luhn_finess("13055501"), last_name="AILLEURS", first_name="Max")]
    mailgen.write_eml(drop, [mailgen.make_message(s) for s in specs])
    service = Helper(home, port, start(home, port), specs)
    try:
        assert service.proc is not None
        wait_healthy(port, service.proc)
        deadline = time.monotonic() + 20
        while Cli(home).status()["certificates"] < len(specs) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield service
    finally:
        service.stop()


def write_wrapper(path: Path, home: Path) -> Path:
    """What ``sidep-helper-pairing`` is for a user, with the test's data folder and source tree."""
    path.write_text(
        "#!/bin/sh\n"
        f"export SIDEP_HELPER_HOME='{home}'\n"
        f"export PYTHONPATH='{ROOT}'\n"
        f"exec '{sys.executable}' -m helper.service.pairing \"$@\"\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def declare_host(profile: Path, home: Path) -> Path:
    """The host manifest in the profile's NativeMessagingHosts, pointing at a wrapper with the test's env."""
    wrapper = write_wrapper(profile.parent / "sidep-helper-pairing", home)
    folder = profile / "NativeMessagingHosts"
    folder.mkdir(parents=True)
    path = folder / f"{nativehosts.HOST_NAME}.json"
    path.write_text(json.dumps(nativehosts.manifest("chromium", wrapper)), encoding="utf-8")
    return path


def results(page: Any) -> list[str]:
    found = page.locator("#results .result")  # the search results (not the « À remettre » tab)
    return [found.nth(i).locator(".last-name").text_content() for i in range(found.count())]
