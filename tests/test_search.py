"""The search rules a secretary relies on, through ``sidep-helper search`` as she (or the extension) runs it."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import mailgen
import pytest
from conftest import Cli

REQUIRED_FIELDS = {
    "id", "site_finess", "dossier", "last_name", "first_name", "sex", "birth_date", "ins", "analysis_code",
    "analysis_label", "sampled_at", "integrated_at", "result", "outcome", "message_id", "source", "superseded",
    "warnings",
}
SITE_A = mailgen.luhn_finess("75071218")
SITE_B = mailgen.luhn_finess("69078181")


def when(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2021, 9, day, hour, 15)


# (key, overrides) — the people at the lab's desk
PEOPLE: list[tuple[str, dict]] = [
    ("lefevre", dict(last_name="LEFÈVRE", first_name="Émilie", sex="F", birth_date=dt.date(1980, 2, 1),
                     sampled_at=when(3), dossier="2109030001", finess=SITE_A)),
    ("dalmeida", dict(last_name="D'ALMEIDA", first_name="João", sex="M", birth_date=dt.date(1975, 5, 12),
                      sampled_at=when(4), dossier="2109040002", finess=SITE_A)),
    ("stetienne", dict(last_name="SAINT-ÉTIENNE", first_name="Marie Christine Louise", sex="F",
                       birth_date=dt.date(1950, 12, 24), sampled_at=when(5), dossier="2109050003", finess=SITE_A)),
    ("legall", dict(last_name="LE GALL", first_name="Yann", sex="M", birth_date=dt.date(1990, 7, 14),
                    sampled_at=when(6), dossier="A2109060004", finess=SITE_B)),
    ("martin_old", dict(last_name="MARTIN", first_name="Jean-Pierre", sex="M", birth_date=dt.date(1961, 3, 3),
                        sampled_at=when(1), dossier="2109010005", finess=SITE_A)),
    ("martin_new", dict(last_name="MARTIN", first_name="Jean-Pierre", sex="M", birth_date=dt.date(1985, 11, 30),
                        sampled_at=when(20), dossier="2109200006", finess=SITE_B)),
    ("martinez", dict(last_name="MARTINEZ", first_name="Lucia", sex="F", birth_date=dt.date(1999, 1, 9),
                      sampled_at=when(28), dossier="2109280007", finess=SITE_A)),
    ("grandjean", dict(last_name="GRANDJEAN", first_name="Hélène", sex="F", birth_date=dt.date(1944, 4, 4),
                       sampled_at=when(7), dossier="2109070008", finess=SITE_A)),
    ("roux", dict(last_name="ROUX", first_name="Noël", sex="M", birth_date=dt.date(2001, 8, 8),
                  sampled_at=when(8), dossier="2109080009", finess=SITE_A)),
    ("dupont", dict(last_name="DUPONT", first_name="Zoé", sex="F", birth_date=dt.date(2010, 10, 10),
                    sampled_at=when(9), dossier="21090900", finess=SITE_A,
                    ins=None)),
    ("xss", dict(last_name="<IMG SRC=X ONERROR=ALERT(1)>", first_name="Test", sex="M",
                 birth_date=dt.date(1970, 1, 1), sampled_at=when(10), dossier="2109100011", finess=SITE_A)),
]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, dict[str, mailgen.CertSpec]]:
    root = tmp_path_factory.mktemp("search")
    rng = random.Random(2021)
    specs = {key: mailgen.random_spec(rng, **overrides) for key, overrides in PEOPLE}
    specs["lefevre"].ins = mailgen.random_ins(rng, "F", dt.date(1980, 2, 1))
    # Background crowd so that ranking and counting work on more than a handful of rows.
    taken = {overrides["last_name"] for _, overrides in PEOPLE}
    crowd: list[mailgen.CertSpec] = []
    while len(crowd) < 150:
        spec = mailgen.random_spec(rng)
        if spec.last_name not in taken and not spec.last_name.startswith(("MARTIN", "LEF", "DUP", "ROU")):
            crowd.append(spec)
    messages = [mailgen.make_message(s) for s in list(specs.values()) + crowd]
    mailgen.write_maildir(root / "Maildir", messages)
    cli = Cli(root / "home")
    # The desk's certificates date from September 2021: a retention long enough to keep them.
    cli.home.mkdir(parents=True)
    (cli.home / "config.toml").write_text("retention_days = 36500\n", encoding="utf-8")
    assert cli.ingest(root / "Maildir")["new"] == len(messages)
    return cli, specs


def dossiers(result: dict) -> list[str]:
    return [c["dossier"] for c in result["results"]]


@pytest.mark.parametrize("query", ["lefevre", "Lefèvre", "LEFÈVRE", "LEFEVRE", "lefèvre émilie", "emilie lefevre"])
def test_name_ignores_case_accents_and_order(desk, query: str) -> None:
    cli, specs = desk
    assert dossiers(cli.search(query)) == [specs["lefevre"].dossier]


@pytest.mark.parametrize("query", ["saint etienne", "saint-etienne", "SAINT ÉTIENNE", "saintetienne", "saint eti"])
def test_hyphenated_names(desk, query: str) -> None:
    cli, specs = desk
    assert specs["stetienne"].dossier in dossiers(cli.search(query))


@pytest.mark.parametrize("query", ["dalmeida", "d'almeida", "d’almeida", "D ALMEIDA", "almeida", "joao dalm"])
def test_apostrophes_and_particles(desk, query: str) -> None:
    cli, specs = desk
    assert dossiers(cli.search(query)) == [specs["dalmeida"].dossier]


@pytest.mark.parametrize("query", ["le gall", "legall", "gall yann"])
def test_names_with_spaces(desk, query: str) -> None:
    cli, specs = desk
    assert dossiers(cli.search(query)) == [specs["legall"].dossier]


def test_each_term_is_a_prefix(desk) -> None:
    cli, specs = desk
    assert dossiers(cli.search("lef emi")) == [specs["lefevre"].dossier]
    assert specs["stetienne"].dossier in dossiers(cli.search("chris sain"))  # any given name


def test_several_given_names(desk) -> None:
    cli, specs = desk
    for query in ("marie saint", "louise saint", "christine saint-etienne"):
        assert dossiers(cli.search(query)) == [specs["stetienne"].dossier], query


def test_dossier_matches_exactly(desk) -> None:
    cli, specs = desk
    assert dossiers(cli.search(specs["roux"].dossier)) == [specs["roux"].dossier]
    assert cli.search(specs["roux"].dossier[:-1])["total"] == 0  # no prefix match on dossiers
    assert dossiers(cli.search("a2109060004")) == ["A2109060004"]  # letters, any case


def test_barcode_scan_of_a_dossier_with_surrounding_spaces(desk) -> None:
    cli, specs = desk
    assert dossiers(cli.search(f"  {specs['grandjean'].dossier}  ")) == [specs["grandjean"].dossier]


def test_birth_date_matches_and_narrows_homonyms(desk) -> None:
    cli, specs = desk
    both = cli.search("martin jean-pierre")
    assert set(dossiers(both)) >= {specs["martin_old"].dossier, specs["martin_new"].dossier}
    for query in ("martin 03/03/1961", "03031961 martin", "martin 03-03-1961", "martin 1961-03-03"):
        assert dossiers(cli.search(query)) == [specs["martin_old"].dossier], query
    assert specs["martin_old"].dossier in dossiers(cli.search("03/03/1961"))


def test_eight_digit_term_is_date_or_dossier(desk) -> None:
    cli, specs = desk
    # "21090900" is both a valid ddmmyyyy? No (month 09, day 21, year 0900 is out of range): a dossier.
    assert dossiers(cli.search("21090900")) == [specs["dupont"].dossier]
    assert specs["roux"].dossier in dossiers(cli.search("08082001"))


def test_ins_with_or_without_spaces(desk) -> None:
    cli, specs = desk
    ins = specs["lefevre"].ins
    assert ins
    spaced = f"{ins[0]} {ins[1:3]} {ins[3:5]} {ins[5:7]} {ins[7:10]} {ins[10:13]} {ins[13:]}"
    assert dossiers(cli.search(ins)) == [specs["lefevre"].dossier]
    assert dossiers(cli.search(spaced)) == [specs["lefevre"].dossier]
    wrong = ins[:12] + str((int(ins[12]) + 1) % 10) + ins[13:]
    assert cli.search(wrong)["total"] == 0


def test_typo_one_edit_for_four_letters_and_more(desk) -> None:
    cli, specs = desk
    for query in ("lefebvre", "lefevbre", "leefvre", "dupnot", "rouc"):
        result = cli.search(query)
        assert result["total"] >= 1, query
        assert all(c["match"] == "typo" for c in result["results"])
    assert specs["lefevre"].dossier in dossiers(cli.search("lefebvre emilie"))
    assert specs["dupont"].dossier in dossiers(cli.search("dupnot zoe"))


def test_typo_two_edits_for_eight_letters_and_more(desk) -> None:
    cli, specs = desk
    assert specs["grandjean"].dossier in dossiers(cli.search("grondjaen"))  # substitution + transposition


def test_typo_limits(desk) -> None:
    cli, _ = desk
    assert cli.search("riix")["total"] == 0  # two edits on a 4-letter word: too far
    assert cli.search("rxu")["total"] == 0  # 3 letters: no typo tolerance


def test_no_typo_fallback_when_something_matches(desk) -> None:
    cli, _ = desk
    result = cli.search("martin", limit=100)
    assert {c["match"] for c in result["results"]} <= {"exact", "prefix"}
    assert all(c["last_name"].startswith("MARTIN") or "martin" in c["first_name"].lower() for c in result["results"])


def test_ranking_exact_word_first_then_most_recent_sampling(desk) -> None:
    cli, specs = desk
    result = cli.search("martin", limit=100)
    names = [c["last_name"] for c in result["results"]]
    martins = [i for i, n in enumerate(names) if n == "MARTIN"]
    others = [i for i, n in enumerate(names) if n != "MARTIN"]
    assert martins and others and max(martins) < min(others), names
    exact = [c for c in result["results"] if c["last_name"] == "MARTIN"]
    assert exact == sorted(exact, key=lambda c: c["sampled_at"], reverse=True)
    # MARTINEZ, sampled last, still comes after both MARTIN
    assert dossiers(result).index(specs["martinez"].dossier) > dossiers(result).index(specs["martin_old"].dossier)


def test_site_filter(desk) -> None:
    cli, specs = desk
    assert dossiers(cli.search("martin jean", site=SITE_B)) == [specs["martin_new"].dossier]
    assert all(c["site_finess"] == SITE_B for c in cli.search("", site=SITE_B, limit=500)["results"])


def test_total_counts_all_matches_not_only_the_page(desk) -> None:
    cli, _ = desk
    everything = cli.search("", limit=500)
    page = cli.search("", limit=5)
    assert len(page["results"]) == 5
    assert page["total"] == everything["total"] == 161
    assert [c["id"] for c in page["results"]] == [c["id"] for c in everything["results"][:5]]
    sampled = [c["sampled_at"] for c in everything["results"]]
    assert sampled == sorted(sampled, reverse=True)  # empty query: most recent first


def test_result_objects_carry_the_contract_fields(desk) -> None:
    cli, specs = desk
    cert = cli.search("lefevre")["results"][0]
    assert REQUIRED_FIELDS <= set(cert)
    assert cert["birth_date"] == "1980-02-01"
    assert cert["sampled_at"] == "2021-09-03T09:15:00"
    assert cert["sex"] == "F"
    assert isinstance(cert["id"], int)


def test_markup_in_a_name_is_data(desk) -> None:
    cli, specs = desk
    cert = cli.search("onerror")["results"][0]
    assert cert["last_name"] == "<IMG SRC=X ONERROR=ALERT(1)>"


def test_nothing_found_in_human_mode_gives_a_french_hint(desk) -> None:
    cli, _ = desk
    proc = cli.run("search", "zzzzqqq")
    assert proc.returncode == 1
    assert "Aucun certificat trouvé" in proc.stdout
    assert "date de naissance" in proc.stdout


def test_human_output_shows_identity_traits_together(desk) -> None:
    cli, _ = desk
    proc = cli.run("search", "lefevre")
    assert proc.returncode == 0
    line = proc.stdout.splitlines()[0]
    for part in ("LEFÈVRE", "Émilie", "01/02/1980", "2109030001", "03/09/2021 09:15"):
        assert part in line


def test_search_before_any_ingest(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "empty")
    assert cli.search("martin") == {"results": [], "total": 0, "total_exact": True}
    assert cli.status()["certificates"] == 0


def test_total_is_counted_up_to_a_thousand(tmp_path: Path) -> None:
    from helper.index.store import Store
    from helper.parse.message import Certificate

    store = Store(tmp_path / "big")
    with store.transaction():
        for i in range(1005):
            store.add(Certificate(site_finess=SITE_A, dossier=f"99{i:06d}", last_name="MARTIN", first_name="Paul",
                                  sampled_at=f"2021-10-{1 + i % 28:02d}T10:00:00", outcome="negative"), "test", None)
    store.close()
    cli = Cli(tmp_path / "big")
    many = cli.search("martin")
    assert (many["total"], many["total_exact"], len(many["results"])) == (1000, False, 20)
    few = cli.search("martin 99000007")
    assert (few["total"], few["total_exact"]) == (1, True)
    assert "plus de 980 autres résultat(s)" in cli.run("search", "martin").stdout
    assert cli.search("")["total_exact"] is False
