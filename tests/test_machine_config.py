"""Machine-wide configuration (/etc/sidep-helper/config.toml, %ProgramData%): enforced over the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli, free_port, wait_healthy

from helper.config import DEFAULT_CONFIG, machine_config_file, machine_template


class MachineCli(Cli):
    """``sidep-helper`` with a machine-wide file of our own in place of /etc/sidep-helper/config.toml."""

    def __init__(self, home: Path, machine: Path) -> None:
        super().__init__(home)
        self.machine = machine

    def env(self) -> dict[str, str]:
        env = super().env()
        env["SIDEP_HELPER_MACHINE_CONFIG"] = str(self.machine)
        return env


@pytest.fixture
def mcli(tmp_path: Path) -> MachineCli:
    (tmp_path / "home").mkdir()
    return MachineCli(tmp_path / "home", tmp_path / "etc" / "config.toml")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_machine_keys_are_enforced_and_the_user_cannot_extend_lists(mcli: MachineCli) -> None:
    write(mcli.machine, 'port = 52000\ntrusted_senders = ["noreply.sidep@enovacom.easycrypt.fr"]\n'
                        'watch = ["/srv/certificats"]\n')
    write(mcli.home / "config.toml", 'port = 53000\nretention_days = 30\n'
                                     'trusted_senders = ["noreply.sidep@enovacom.easycrypt.fr", "pirate@example.org"]\n'
                                     'watch = ["/home/x/Autre"]\n')
    values = mcli.json("config")
    assert values["port"] == 52000
    assert values["trusted_senders"] == ["noreply.sidep@enovacom.easycrypt.fr"]  # not extended
    assert values["watch"] == ["/srv/certificats"]
    assert values["retention_days"] == 30  # not set by the machine: the user's value applies
    assert values["sources"]["port"] == str(mcli.machine)
    assert values["sources"]["retention_days"] == str(mcli.home / "config.toml")
    assert values["sources"]["printer"] == "défaut"
    assert len(values["warnings"]) == 3 and all("imposé par la configuration du poste" in w for w in values["warnings"])
    human = mcli.run("config").stdout
    assert f"port = 52000    (imposé par {mcli.machine})" in human
    assert f"retention_days = 30    ({mcli.home / 'config.toml'})" in human
    assert "Attention : réglage « trusted_senders » imposé" in human


def test_enforced_port_refuses_a_command_line_override(mcli: MachineCli) -> None:
    write(mcli.machine, "port = 52001\n")
    proc = mcli.run("serve", "--port", "52002", check=False)
    assert proc.returncode == 2 and "imposé par la configuration du poste" in proc.stderr


def test_machine_file_errors_name_the_machine_file(mcli: MachineCli) -> None:
    write(mcli.machine, "retention_days = 0\n")
    proc = mcli.run("config", check=False)
    assert proc.returncode == 2 and str(mcli.machine) in proc.stderr


def test_commented_machine_template_changes_nothing_and_names_every_setting(mcli: MachineCli) -> None:
    write(mcli.machine, machine_template())
    values = mcli.json("config")
    assert values["machine_config_exists"] is True and values["warnings"] == []
    assert set(values["sources"].values()) == {"défaut"}
    for line in DEFAULT_CONFIG.splitlines():
        if line.startswith("# ") and " = " in line and not line.startswith("# Configuration"):
            assert line in machine_template()


def test_machine_file_place_per_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDEP_HELPER_MACHINE_CONFIG")
    expected = (Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "sidep-helper" / "config.toml"
                if os.name == "nt" else Path("/etc/sidep-helper/config.toml"))
    assert machine_config_file() == expected
    monkeypatch.setenv("SIDEP_HELPER_MACHINE_CONFIG", "")
    assert machine_config_file() is None


def test_serve_logs_the_ignored_user_value(mcli: MachineCli) -> None:
    port = free_port()
    write(mcli.machine, f"port = {port}\n")
    write(mcli.home / "config.toml", "port = 50999\n")
    proc = subprocess.Popen([sys.executable, "-m", "helper", "serve", "--no-watch"], env=mcli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_healthy(port, proc)  # listens on the machine's port, not the user's
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    log = (mcli.home / "logs" / "sidep-helper.log").read_text(encoding="utf-8")
    assert "réglage « port » imposé par la configuration du poste" in log
    assert "imposé" in err.decode()
