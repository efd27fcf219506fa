"""The README's two commands, from a fresh clone, in an environment that cannot see the developer's venv.

1. ``git clone`` of this worktree's HEAD into a temporary folder; a clean environment (system PATH,
   temporary HOME, no PYTHONPATH/VIRTUAL_ENV), so only what the clone installs is used;
2. the first command installs, starts the service on its embedded defaults and prints where it listens,
   where its data is and the next step; a certificate dropped in the new user's Downloads is found;
3. the second command (``bash tests/run``) would run this very suite: it is checked for syntax and run
   with SIDEP_TESTS_SETUP_ONLY=1, which installs everything from the lock and stops before pytest.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mailgen
import pytest
from conftest import ROOT, free_port, recent_spec

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return [b.strip() for b in blocks[:2]]


def fresh_clone(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, capture_output=True, timeout=120)
    assert not (dest / ".venv").exists()
    return dest


def clean_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
    # Downloads are cached across runs (this only avoids downloading the same wheels again).
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    # The machine's network set-up (proxy, certificate authorities) is the machine's, not the developer's.
    for key, value in os.environ.items():
        if key.lower() in ("http_proxy", "https_proxy", "no_proxy", "ssl_cert_file", "requests_ca_bundle", "pip_cert"):
            env[key] = value
    return env


def test_readme_has_the_two_commands() -> None:
    first, second = readme_commands()
    assert first == "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/sidep-helper serve"
    assert second == "bash tests/run"


def test_first_command_installs_and_runs_the_service_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path, "clone")
    home = tmp_path / "home"
    env = clean_env(home)
    port = free_port()  # the machine's 51789 may be in use by another run; everything else is default
    (home / ".config" / "sidep-helper").mkdir(parents=True)
    (home / ".config" / "sidep-helper" / "config.toml").write_text(f"port = {port}\n")
    (home / "Downloads").mkdir()
    proc = subprocess.Popen(["bash", "-c", readme_commands()[0]], cwd=clone, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(b.decode(errors="replace") for b in proc.stdout),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600  # pip install from the package index, then start
        while True:
            assert proc.poll() is None, "".join(lines)[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as resp:
                    assert json.loads(resp.read())["status"] == "ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, "no /health answer:\n" + "".join(lines)[-3000:]
                time.sleep(0.5)
        token = subprocess.run([str(clone / ".venv/bin/sidep-helper"), "token"], env=env, capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        spec = recent_spec(random.Random(7), last_name="PREMIERLANCEMENT", first_name="Inès")
        (home / "Downloads" / "certificat.eml").write_bytes(mailgen.make_message(spec))
        deadline = time.monotonic() + 20
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/certificates?" + urllib.parse.urlencode({"q": "premierlancement"}),
                headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                found = json.loads(resp.read())
            if found["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert found["total"] == 1  # the Downloads folder is watched by default
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    assert f"en service sur http://127.0.0.1:{port}" in out
    assert f"Données : {home / '.local' / 'share' / 'sidep-helper'}" in out
    assert "Étape suivante : installez l'extension" in out and "sidep-helper token" in out
    assert (home / ".local" / "share" / "sidep-helper" / "index.sqlite3").exists()


def test_second_command_bootstraps_from_the_lock_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path, "clone")
    assert subprocess.run(["bash", "-n", "tests/run"], cwd=clone).returncode == 0
    env = clean_env(tmp_path / "home") | {"SIDEP_TESTS_SETUP_ONLY": "1"}
    proc = subprocess.run(["bash", "tests/run"], cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pytest non lancé" in proc.stdout
    # The lock matches pyproject.toml (a dependency added without « packaging/lock » fails here).
    check = subprocess.run([str(clone / ".venv/bin/uv"), "lock", "--check"], cwd=clone, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # Exactly the locked versions, for every locked package of the test set.
    exported = subprocess.run(
        [str(clone / ".venv/bin/uv"), "export", "--frozen", "--extra", "test", "--no-emit-project", "--no-header",
         "--no-hashes", "--format", "requirements-txt"], cwd=clone, capture_output=True, text=True, check=True).stdout
    locked = {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ;.*)?$", exported, re.M)
              if "win32" not in m[0]}
    frozen = subprocess.run([str(clone / ".venv/bin/python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(frozen)}
    assert {k: installed.get(k) for k in locked} == locked
    # Node >= 20 from the locked wheel, and the extension's tools from its lock file.
    node = subprocess.run([str(clone / ".venv/node-bin/node"), "--version"], capture_output=True, text=True).stdout
    assert int(node.strip().lstrip("v").split(".")[0]) >= 20
    assert (clone / "extension" / "node_modules" / ".bin" / "web-ext").exists()
    assert not (clone / ".pytest_cache").exists()  # stopped before pytest


@pytest.fixture(autouse=True)
def _git_available() -> None:
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.fail("git is needed to clone the repository")
