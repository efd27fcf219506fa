"""End to end, « BAL mutualisée » (issue 11): a 300-site group reads its MSSanté mailbox (a real Dovecot, TLS
and client certificate) with a real ``serve`` that dispatches each certificate to its site's folder.

1. The site directory comes from a generated FINESS extraction (``sites import``); IT adds each site's
   folder to ``sites.toml``. About 120 certificates are delivered to the mailbox while the helper serves,
   for known sites and for three FINESS outside the directory.
2. The helper is killed (SIGKILL) in the middle of the dispatch (each copy slowed a little, as on a
   network share), then restarted.
3. One site's share is made read-only (a read-only bind mount, as a share remounted read-only; root
   bypasses file modes, so chmod would prove nothing here — ``chattr +i`` where mounts are refused) while
   its certificates arrive: ``status`` (API, within the contract, and CLI) names the site and says why in
   French; nothing is lost; once writable again, its certificates land.
4. The unknown ones are « à affecter » in ``status``, then dispatched after ``dispatch assign``.
5. At the end the journal and the folders agree: every certificate ``done`` exactly once, each file
   present once in its site's folder with the PDF's bytes, no temporary leftovers, no ``-2`` copies.

Time is compressed with the test knobs SIDEP_HELPER_TEST_DISPATCH_EVERY (1 s between passes instead of 10)
and SIDEP_HELPER_TEST_RETRY_DELAY (first retry after 0.5 s instead of 30).
"""

from __future__ import annotations

import random
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import directorygen
import mailgen
import pytest
from conftest import Cli, recent_spec
from dovecot import Dovecot, make_pki, start_dovecot
from imaphelpers import Helper, imap_config
from mailgen import luhn_finess

EJ = luhn_finess("75000009")
TIMEOUT = 40


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = start_dovecot(make_pki(tmp_path_factory.mktemp("pki")), client_cert=True)
    yield server
    server.remove()


def _journal(home: Path) -> dict[int, tuple[str, str | None, str | None]]:
    db = sqlite3.connect(f"file:{home / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute("SELECT cert_id, state, target, finess FROM dispatch_journal")}
    except sqlite3.OperationalError:  # no journal yet
        return {}
    finally:
        db.close()


def _wait(what: str, check: Callable[[], Any], helper: Helper, timeout: float = TIMEOUT, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert helper.proc.poll() is None, f"serve exited while waiting for {what}:\n{helper.log()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


class ReadOnly:
    """A folder made read-only for everyone, root included: a read-only bind mount, else ``chattr +i``."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.how = folder, ""

    def __enter__(self) -> ReadOnly:
        if subprocess.run(["mount", "--bind", str(self.folder), str(self.folder)], capture_output=True).returncode == 0:
            self.how = "mount"
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(self.folder)], capture_output=True).returncode:
                self.release()
                pytest.fail("read-only remount refused")
        elif subprocess.run(["chattr", "+i", str(self.folder)], capture_output=True).returncode == 0:
            self.how = "chattr"
        else:
            pytest.fail("neither a read-only bind mount nor chattr +i is possible here (root and ext4 needed)")
        probe = self.folder / ".probe"
        with pytest.raises(OSError):
            probe.write_bytes(b"x")
        return self

    def release(self) -> None:
        if self.how == "mount":
            subprocess.run(["umount", str(self.folder)], check=True)
        elif self.how == "chattr":
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        self.how = ""

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_group_mailbox_dispatch_survives_kill_and_read_only_share(
        server: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    sites = sorted({directorygen.finess(rng) for _ in range(330)})[:300]
    home, share = tmp_path / "home", tmp_path / "partages"
    home.mkdir(mode=0o700)
    cli = Cli(home)
    cli.write_config("")
    extraction = directorygen.finess_file(tmp_path / "finess.csv", [
        directorygen.structureet(f, EJ, f"LBM SITE {i}", f"Laboratoire site n° {i}") for i, f in enumerate(sites)])
    assert "300 site(s) ajouté(s)" in cli.run("sites", "import", extraction, "--finess-juridique", EJ).stdout
    # IT completes sites.toml with each site's share.
    directory = home / "sites.toml"
    text = directory.read_text(encoding="utf-8")
    text, n = re.subn(r'^(\[sites\."([0-9AB]{9})"\]\nname = .*\n)folder = ""$',
                      lambda m: f'{m.group(1)}folder = "{share / m.group(2)}"', text, flags=re.M)
    assert n == 300
    directory.write_text(text, encoding="utf-8")
    for f in sites:
        (share / f).mkdir(parents=True)
    locked, strays = sites[7], sorted({luhn_finess(f"13{rng.randrange(10**6):06d}") for _ in range(3)})
    others = [f for f in sites if f != locked]

    numbers = iter(range(2612000001, 2612001000))  # one dossier each: the file name tells its certificate

    def batch(known: int, on_locked: int, unknown: int) -> list[Any]:
        finesses = [rng.choice(others) for _ in range(known)] + [locked] * on_locked
        finesses += [rng.choice(strays) for _ in range(unknown)]
        return [recent_spec(rng, finess=f, dossier=str(next(numbers))) for f in finesses]

    first, second = batch(54, 0, 5), batch(52, 4, 5)
    specs = first + second
    pdfs = {s.dossier: mailgen.make_pdf(s) for s in specs}
    assert len(pdfs) == len(specs) == 120
    monkeypatch.setenv("SIDEP_HELPER_TEST_DISPATCH_PAUSE", "0.05")  # a share a little slower than a local disk
    monkeypatch.setenv("SIDEP_HELPER_TEST_DISPATCH_EVERY", "1")
    monkeypatch.setenv("SIDEP_HELPER_TEST_RETRY_DELAY", "0.5")
    t0 = time.monotonic()
    helper = Helper.start(home, imap_config(server, poll=5))
    try:
        for spec in first:
            server.append(mailgen.make_message(spec))
        # 2. SIGKILL in the middle of the dispatch.
        _wait("a dispatch under way", lambda: sum(s == "done" for s, _, _ in _journal(home).values()) >= 10,
              helper, every=0.05)
        helper.kill()
        states = [s for s, _, _ in _journal(home).values()]
        assert 10 <= states.count("done") < 54 and states.count("started") <= 1, states
        # 3. The locked site's share goes read-only; restart; more mail arrives, some of it for that site.
        with ReadOnly(share / locked) as read_only:
            helper.restart()
            for spec in second:
                server.append(mailgen.make_message(spec))

            def settled() -> dict[str, Any] | None:
                status = helper.status()  # validated against the contract
                d = status["dispatch"]
                ok = (status["counts"]["certificates"] == 120 and d["counts"].get("done") == 106
                      and d["counts"].get("retry") == 4 and d["counts"].get("unassigned") == 10)
                return status if ok else None

            status = _wait("every known site served, the locked one waiting", settled, helper)
            [unreachable] = status["dispatch"]["unreachable"]
            assert (unreachable["finess"], unreachable["count"]) == (locked, 4)
            reason = {"mount": "partage monté en lecture seule", "chattr": "accès refusé"}[read_only.how]
            assert unreachable["error"].startswith(f"copie impossible dans {share / locked} : {reason}")
            text = cli.run("status").stdout
            assert f"dossier du site {locked} (Laboratoire site n° 7) inaccessible : copie impossible" in text
            assert "4 certificat(s) en attente" in text and "10 à affecter" in text
            assert not list((share / locked).iterdir())
        # Writable again: it recovers by itself.
        _wait("the locked site served", lambda: helper.status()["dispatch"]["counts"].get("retry", 0) == 0, helper)
        assert len(list((share / locked).iterdir())) == 4 and helper.status()["dispatch"]["unreachable"] == []
        # 4. « À affecter », then assigned by IT.
        unassigned = helper.status()["dispatch"]["unassigned"]
        assert sorted({u["finess"] for u in unassigned}) == sorted({s.finess for s in specs if s.finess in strays})
        for n, row in enumerate(unassigned):
            assert "affecté au site" in cli.run("dispatch", "assign", str(row["id"]), sites[n % 3]).stdout
        _wait("everything dispatched", lambda: helper.status()["dispatch"]["counts"] == {"done": 120}, helper)
    finally:
        helper.stop()
    elapsed = time.monotonic() - t0
    # 5. The journal and the folders agree: one file per certificate, in its site's folder, no leftovers.
    journal = _journal(home)
    assert len(journal) == 120 and {s for s, _, _ in journal.values()} == {"done"}
    files = [p for p in share.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(target or "" for _, target, _ in journal.values())
    assert sorted((p.parent.name, p.name) for p in files) == sorted((f, t) for _, t, f in journal.values())
    assert not any(p.name.startswith(".") or p.name.endswith("-2.pdf") for p in files)
    assert sorted(p.read_bytes() for p in files) == sorted(pdfs.values())
    for p in files:
        assert p.name.startswith(p.parent.name + "_")
        dossier = p.name.split("_")[1]
        assert p.read_bytes() == pdfs[dossier]
    log = helper.log()
    assert "Traceback" not in log and not any(s.last_name in log for s in specs)
    print(f"scénario : {elapsed:.1f} s")
