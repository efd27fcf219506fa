"""``sidep-helper report``: one day per site — received, dispatched, printed, handed over, waiting (age),
superseded, à affecter — in French, CSV and JSON, from a real index filled by ``ingest`` and ``dispatch``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from pathlib import Path

import mailgen
from conftest import Cli, recent_spec
from mailgen import luhn_finess

from helper.index.store import Store

A, B, UNKNOWN = (luhn_finess(f"7500004{i}") for i in range(3))


def test_daily_report_per_site(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "partage-a"
    folder.mkdir()
    cli.write_config(f'[sites."{A}"]\nname = "Bercy"\nfolder = "{folder}"\n\n[sites]\n"{B}" = "Nation"\n')
    rng = random.Random(8)
    a1, a2, b1, stray = (recent_spec(rng, finess=f) for f in (A, A, B, UNKNOWN))
    reissue = mailgen.random_spec(rng, finess=A, dossier=a1.dossier, sampled_at=a1.sampled_at,
                          integrated_at=a1.integrated_at + dt.timedelta(hours=2), last_name=a1.last_name,
                          first_name=a1.first_name, birth_date=a1.birth_date)
    mailgen.write_eml(tmp_path / "mail", [mailgen.make_message(s) for s in (a1, a2, b1, stray, reissue)])
    assert cli.ingest(tmp_path / "mail")["new"] == 5
    cli.run("dispatch", "run")
    store = Store(cli.home)
    try:
        ids = {r["dossier"]: r["id"] for r in store.db.execute("SELECT id, dossier FROM certificates")}
        store.mark_printed(ids[a2.dossier])
        store.mark_delivered(ids[a2.dossier], "MD")
        store.mark_printed(ids[b1.dossier])
    finally:
        store.close()
    today = dt.date.today().isoformat()
    data = json.loads(cli.run("report", "--date", today, "--json").stdout)
    by = {s["finess"]: s for s in data["sites"]}
    assert {k: by[A][k] for k in ("name", "received", "dispatched", "printed", "handed_over", "waiting",
                                  "oldest_waiting_days", "superseded", "unassigned")} == {
        "name": "Bercy", "received": 3, "dispatched": 3, "printed": 1, "handed_over": 1, "waiting": 1,
        "oldest_waiting_days": 0, "superseded": 1, "unassigned": 0}
    assert (by[B]["received"], by[B]["dispatched"], by[B]["printed"], by[B]["waiting"]) == (1, 0, 1, 1)
    assert (by[UNKNOWN]["received"], by[UNKNOWN]["unassigned"]) == (1, 1)
    # One site; French text; CSV for a spreadsheet.
    only = json.loads(cli.run("report", "--date", today, "--site", B, "--json").stdout)["sites"]
    assert [s["finess"] for s in only] == [B]
    text = cli.run("report", "--date", today).stdout
    assert f"- {A} Bercy : reçus 3, répartis 3, imprimés 1, remis 1, en attente 1" in text
    rows = list(csv.reader(io.StringIO(cli.run("report", "--date", today, "--csv").stdout), delimiter=";"))
    assert rows[0][:4] == ["date", "FINESS", "site", "reçus"] and len(rows) == 4
    # Another day: nothing received; tomorrow the waiting ones are one day old.
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    later = {s["finess"]: s for s in json.loads(cli.run("report", "--date", tomorrow, "--json").stdout)["sites"]}
    assert later[A]["received"] == 0 and later[A]["waiting"] == 1 and later[A]["oldest_waiting_days"] == 1
    proc = cli.run("report", "--date", "31/12/2026", check=False)
    assert proc.returncode == 2 and "date invalide" in proc.stderr


def test_report_on_an_empty_data_directory(cli: Cli) -> None:
    assert "Aucun certificat." in cli.run("report").stdout


def test_report_api_answers_the_same_figures(cli: Cli, tmp_path: Path) -> None:
    import signal
    import urllib.error
    import urllib.request

    from conftest import free_port, start, wait_healthy

    port = free_port()
    cli.write_config(f'port = {port}\n[sites]\n"{A}" = "Bercy"\n')
    rng = random.Random(13)
    mailgen.write_eml(tmp_path / "mail", [mailgen.make_message(recent_spec(rng, finess=A)) for _ in range(2)])
    cli.ingest(tmp_path / "mail")
    today = dt.date.today().isoformat()
    expected = json.loads(cli.run("report", "--date", today, "--json").stdout)
    proc = start(cli.home, port, "--no-watch", stderr_to=tmp_path / "serve.log")
    token = cli.run("token").stdout.strip()

    def get(query: str, auth: bool = True) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/report{query}")
        if auth:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        wait_healthy(port, proc)
        assert get(f"?date={today}") == (200, expected)
        assert expected["sites"][0]["received"] == 2 and expected["sites"][0]["name"] == "Bercy"
        assert get(f"?date={today}&site={A}")[1]["sites"] == expected["sites"]
        assert get(f"?date={today}&site={B}")[1]["sites"] == []
        status, body = get("?date=2026-02-30")
        assert status == 400 and body["error"] == "bad_date"
        assert get("?site=12")[0] == 400
        assert get(f"?date={today}", auth=False)[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
