"""The Windows installers' Python actions (packaging/windows/tools/setup_actions.py), on Linux.

What IT types on the command line becomes the machine configuration: both quoting styles of
setup.exe options, validation in French, and a merge that keeps what an upgrade does not repeat.
The installers themselves run under Wine in tests/test_installer_windows.py.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("setup_actions", ROOT / "packaging/windows/tools/setup_actions.py")
actions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(actions)


@pytest.mark.parametrize("command_line", [
    '/S /PORT=51790 /WATCH="D:\\Mes certificats" /PRINTER="Accueil HP" /TRUSTED_FORWARDERS="a@b.fr, c@d.fr"',
    '/S "/PORT=51790" "/WATCH=D:\\Mes certificats" "/PRINTER=Accueil HP" "/TRUSTED_FORWARDERS=a@b.fr, c@d.fr"',
    '/s /port=51790 /watch="D:\\Mes certificats\\" /printer="Accueil HP" /trusted_forwarders="a@b.fr, c@d.fr" '
    "/D=C:\\Program Files\\ailleurs",
])
def test_setup_options_in_both_quoting_styles(command_line: str) -> None:
    options = actions.parse_setup_options(command_line)
    assert options == {"Port": "51790", "Watch": options["Watch"], "Printer": "Accueil HP",
                       "TrustedForwarders": "a@b.fr, c@d.fr"}
    assert options["Watch"].rstrip("\\") == "D:\\Mes certificats"
    assert actions.to_config(options) == {
        "port": 51790, "watch": ["D:\\Mes certificats"], "printers": ["Accueil HP"], "printer": "Accueil HP",
        "trusted_forwarders": ["a@b.fr", "c@d.fr"]}


def test_unknown_or_empty_options_are_ignored() -> None:
    assert actions.parse_setup_options('/S /PORT= /FOO=1 /NCRC "/RETENTION_DAYS=" /D=C:\\x') == {}


@pytest.mark.parametrize(("params", "message"), [
    ({"Port": "80"}, "PORT doit être un numéro de port entre 1024 et 65535 (reçu : « 80 »)."),
    ({"Port": "5x"}, "PORT doit être un numéro de port"),
    ({"RetentionDays": "0"}, "RETENTION_DAYS doit être un nombre entier de jours, au moins 1"),
    ({"RetentionDays": "-3"}, "RETENTION_DAYS doit être un nombre entier"),
    ({"TrustedForwarders": "secretariat.labo.fr"}, "TRUSTED_FORWARDERS doit être une liste d'adresses e-mail"),
    ({"TrustedForwarders": "a@b@c.fr"}, "TRUSTED_FORWARDERS doit être une liste d'adresses e-mail"),
])
def test_bad_values_are_refused_in_french(params: dict[str, str], message: str) -> None:
    with pytest.raises(actions.SetupError) as err:
        actions.to_config(params)
    assert message in str(err.value)


def test_merge_keeps_what_is_not_asked_again(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    actions.merge_config(config, actions.to_config({"Port": "51790", "Watch": 'D:\\a "quoted" dossier',
                                                    "RetentionDays": "30"}))
    actions.merge_config(config, actions.to_config({"RetentionDays": "60"}))  # an upgrade changing one value
    text = config.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {"port": 51790, "watch": ['D:\\a "quoted" dossier'], "retention_days": 60}
    assert text.startswith("# Configuration de sidep-helper pour tout le poste")
    actions.merge_config(config, {})  # a re-install without any parameter changes nothing
    assert tomllib.loads(config.read_text(encoding="utf-8"))["port"] == 51790
