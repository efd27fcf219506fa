"""Shared fixtures: run the real command line in a private data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mail"
    d.mkdir()
    return d
