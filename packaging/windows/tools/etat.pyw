"""Start-menu entry « Certificats SI-DEP — état du service »: one French message box, no console.

Run by ``pythonw.exe`` (``--print`` writes the same text to stdout instead, for IT in a console and for
the tests under Wine):
1. the settings of the user who clicked (helper.config: port, data folder);
2. service state: ``GET http://127.0.0.1:<port>/api/v1/health`` within 2 s (« en marche » with its
   version, or « arrêté » with how to start it);
3. pairing: is the user's token there (created at the service's first start), and are the browsers'
   native-messaging keys of the pairing host registered for this machine;
4. last ingest and counts, from ``sidep-helper status --json`` run in-process;
5. a MessageBoxW (information icon when running, warning otherwise).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import urllib.request
from typing import Any

TITLE = "Certificats SI-DEP — état du service"
HOST_KEYS = (
    (r"Software\Google\Chrome\NativeMessagingHosts\fr.sidep_helper.pairing", "Chrome"),
    (r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts\fr.sidep_helper.pairing", "Edge"),
    (r"Software\Chromium\NativeMessagingHosts\fr.sidep_helper.pairing", "Chromium"),
    (r"SOFTWARE\Mozilla\NativeMessagingHosts\fr.sidep_helper.pairing", "Firefox/Thunderbird"),
)


def service_state(port: int) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/api/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False, (f"Service : ARRÊTÉ (rien ne répond sur le port {port}).\n"
                       "Il démarre à l'ouverture de session ; pour le lancer maintenant, fermez puis "
                       "rouvrez la session, ou lancez « sidep-helper serve ».")
    if body.get("service") != "sidep-helper":
        return False, f"Service : le port {port} est occupé par un autre programme."
    return True, f"Service : en marche (version {body.get('version', '?')}, port {port})."


def registered_hosts() -> list[str]:
    names = []
    try:
        import winreg
    except ImportError:
        return names
    for key, name in HOST_KEYS:
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as k:
                if winreg.QueryValueEx(k, "")[0]:
                    names.append(name)
        except OSError:
            continue
    return names


def status(settings: Any) -> dict[str, Any]:
    from helper import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["--data-dir", str(settings.data_dir), "status", "--json"])
    return json.loads(out.getvalue())


def report() -> tuple[bool, str]:
    from helper import config

    try:
        settings = config.load()
    except config.ConfigError as exc:
        return False, f"Configuration illisible : {exc}"
    running, lines = service_state(settings.port)
    text = [lines]
    token = settings.data_dir / "token"
    if token.is_file():
        text.append("Jeton d'accès : créé (les extensions l'obtiennent par l'appairage automatique).")
    else:
        text.append("Jeton d'accès : pas encore créé (il l'est au premier démarrage du service).")
    hosts = registered_hosts()
    if hosts:
        text.append("Appairage automatique : installé pour " + ", ".join(hosts) + ".")
    else:
        text.append("Appairage automatique : non installé (réinstallez sidep-helper).")
    try:
        st = status(settings)
    except (OSError, ValueError, SystemExit) as exc:
        text.append(f"Index : illisible ({exc}).")
    else:
        text.append(f"Dernière indexation : {st.get('last_ingest') or 'jamais'}.")
        text.append(f"Certificats indexés : {st.get('certificates', 0)} ; en quarantaine : {st.get('quarantined', 0)}.")
    text.append(f"Données : {settings.data_dir}")
    return running, "\n".join(text)


def main(argv: list[str]) -> int:
    running, text = report()
    if "--print" in argv:
        sys.stdout.reconfigure(encoding="utf-8")  # a console is UTF-8 already; a pipe or file would be cp1252
        print(text)
        return 0 if running else 1
    import ctypes

    icon = 0x40 if running else 0x30  # MB_ICONINFORMATION / MB_ICONWARNING
    ctypes.windll.user32.MessageBoxW(None, text, TITLE, icon)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
