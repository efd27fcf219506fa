#!/usr/bin/env python3
"""IMAP source benchmark: first sync, incremental sync, keyword round trip — against mbsync and notmuch.

    python benchmarks/bench_imap.py                 # 100,000 messages (issue 10's figure)
    python benchmarks/bench_imap.py --n 10000       # quicker
    python benchmarks/bench_imap.py --prepare       # only generate the 100,000 messages (cached two days)

What it does, in one run (as root: it starts a private Dovecot, tests/dovecot.py):

1. a mailbox of N messages (certificates with ~40 KB PDFs sampled in the last weeks, ~5 % other
   mail) written straight into the Maildir of a private Dovecot (TLS, password login); each PDF
   carries, as SI-DEP's do, a 2D-DOC and (positive or negative result) an EU DCC, signed by a test
   key listed in the corpus's own trust list (``liste-de-confiance``, given to the helper); plus a folder
   ``Partage`` of 20 certificates; Dovecot indexes it and reads every message once (``doveadm fetch``)
   before anything is timed, so that no tool pays for the cold Maildir;
2. the folder fetched by ``mbsync`` (Debian ``isync``) into a fresh Maildir: wall time, messages/s, RSS;
3. first sync, end to end, with ``verify_barcodes = false`` then ``true`` (``--verify``): a real
   ``sidep-helper serve`` process (own data directory each) with the mailbox as ``[[sources.imap]]``
   (implicit TLS); timed from the process start until every certificate is searchable and the source
   reports success; peak RSS sampled (process tree); the ratio to mbsync of step 2; how many
   certificates came out ``verified`` (read from the helper's database);
4. ``notmuch new`` over mbsync's Maildir (``--no-notmuch`` skips it);
5. incremental sync, per verification setting (``--repeat`` times): 100 new certificates delivered
   while the helper runs, timed until the 100th is searchable (Dovecot tells the helper through IDLE).
   ``--delivery rename`` (default): written to tmp/ and renamed into new/ at once, as Postfix's own
   Maildir delivery does; ``lda``: ``dovecot-lda`` one after the other, timed from the last one;
6. keyword round trip: a second helper (own data directory) follows ``Partage``; desk A marks a
   certificate handed over / undoes it, desk B's API is polled until it shows the change: median, p95;
7. mbsync's incremental run, alone on the mailbox (the helpers stopped): 100 new certificates delivered
   the same way, then ``mbsync`` (the state of step 2) timed.

``--incremental-only``: verification off, no notmuch, no keyword round trip (steps 1-3 still run: the
helper and mbsync need their first sync). ``benchmarks/probe_incremental.py`` keeps a Dovecot and a
helper running to time the incremental step again and again, and raw IMAP commands.

Prints the figures and writes ``OUT/imap-results.json`` (``--out``, default ``benchmarks/out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import pwd
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import barcodegen as bg  # noqa: E402
import mailgen  # noqa: E402
from bench import measure  # noqa: E402
from dovecot import Dovecot, start_dovecot  # noqa: E402
from imaphelpers import Helper  # noqa: E402

from helper.index.schema import DB_NAME  # noqa: E402

MiB = 1024 * 1024
OTHER_SHARE = 0.05


def say(text: str) -> None:
    print(text, flush=True)


def recent(rng: random.Random, **kw: Any) -> mailgen.CertSpec:
    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(minutes=rng.randrange(60, 40 * 24 * 60))
    return mailgen.random_spec(rng, sampled_at=sampled, integrated_at=sampled + dt.timedelta(hours=3), **kw)


CORPUS_RECIPE = 2  # bump when the messages fill_maildir generates change
#: Size of a certificate's PDF (issue 10: "certificates with 40 KB PDFs").
PDF_BYTES = 40_000


def certificate_message(spec: mailgen.CertSpec, signer: bg.Signer) -> bytes:
    """A certificate mail as SI-DEP sends it: its PDF carries the signed 2D-DOC and, for a positive
    or negative result, the EU DCC (as bench_barcodes.py), padded to :data:`PDF_BYTES`."""
    dcc = spec.result[:1].upper() in ("N", "P")  # no DCC exists for a non-conforming sample
    return mailgen.make_message(spec, pdf=bg.certificate_pdf(spec, signer, logo=True, dcc=dcc, pad_to=PDF_BYTES))


def corpus_root(out: Path, n: int, seed: int) -> Path:
    return out / f"imap-corpus-{n}-seed{seed}-r{CORPUS_RECIPE}"


def corpus_signer(root: Path) -> bg.Signer:
    """The test key that signed the corpus's barcodes (its public half is in ``liste-de-confiance``)."""
    return bg.Signer.load((root / "signer.pem").read_bytes())


def _write_certificates(job: tuple[Path, bytes, list[tuple[int, mailgen.CertSpec]]]) -> int:
    folder, private_pem, specs = job
    signer, total = bg.Signer.load(private_pem), 0
    for i, spec in specs:
        raw = certificate_message(spec, signer)
        (folder / f"{1700000000 + i}.M{i}P1.bench").write_bytes(raw)
        total += len(raw)
    return total


def generate_corpus(out: Path, n: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The N messages of the mailbox, generated once per (N, seed) into ``OUT/imap-corpus-N-seedS-rR/``
    (with the test key that signed the barcodes and the trust list that lists it) and reused by later
    runs for two days (100,000 messages take minutes to generate, on every core; their sampling
    dates are relative to the day they were made); (folder, counts)."""
    root = corpus_root(out, n, seed)
    manifest = root / "corpus.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        if info.get("recipe") == CORPUS_RECIPE and time.time() - info.get("generated", 0) < 2 * 86400:
            return root / "messages", info
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "messages"
    folder.mkdir(parents=True)
    signer = bg.Signer.new()
    (root / "signer.pem").write_bytes(signer.private_pem())
    bg.write_trust_list(root / "liste-de-confiance", signer)
    rng = random.Random(seed)
    others = total = 0
    specs: list[tuple[int, mailgen.CertSpec]] = []
    for i in range(n):  # the same draws, in the same order, whatever the number of processes below
        if rng.random() < OTHER_SHARE:
            raw = mailgen.other_mail(rng, i)
            (folder / f"{1700000000 + i}.M{i}P1.bench").write_bytes(raw)
            others += 1
            total += len(raw)
        else:
            specs.append((i, recent(rng)))
    chunks = [(folder, signer.private_pem(), specs[k : k + 500]) for k in range(0, len(specs), 500)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        total += sum(pool.imap_unordered(_write_certificates, chunks))
    info = {"recipe": CORPUS_RECIPE, "generated": time.time(), "certificates": len(specs), "others": others,
            "bytes": total}
    manifest.write_text(json.dumps(info))  # written last: marks the corpus complete
    return folder, info


def fill_maildir(server: Dovecot, corpus: Path) -> None:
    """The corpus straight into INBOX's Maildir (hard links when on the same file system), owned by
    the mail user."""
    mail = pwd.getpwnam("mail")
    new = server.maildir / "new"
    for sub in ("new", "cur", "tmp"):
        (server.maildir / sub).mkdir(parents=True, exist_ok=True)
    for source in corpus.iterdir():
        target = new / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        os.chown(target, mail.pw_uid, mail.pw_gid)
    for path in [server.maildir, *server.maildir.parents][:3]:
        os.chown(path, mail.pw_uid, mail.pw_gid)
    for sub in ("new", "cur", "tmp"):
        os.chown(server.maildir / sub, mail.pw_uid, mail.pw_gid)


#: ``--storage``: how the private Dovecot stores the mailbox (``mail_location``, added to its configuration)
STORAGE_CONF = {"maildir": "", "sdbox": "mail_location = sdbox:~/sdbox\n", "mdbox": "mail_location = mdbox:~/mdbox\n"}


def fill_mailbox(server: Dovecot, corpus: Path, storage: str) -> None:
    """The corpus into INBOX: straight into the Maildir (:func:`fill_maildir`); for Dovecot's own
    formats (sdbox, one file per message; mdbox, several per file) through that Maildir, imported with
    ``doveadm import`` then removed."""
    fill_maildir(server, corpus)
    if storage == "maildir":
        return
    subprocess.run(["doveadm", "-c", str(server.conf), "import", "-u", server.user, f"maildir:{server.maildir}", "",
                    "all"], check=True, capture_output=True, env=server._env())  # noqa: SLF001
    shutil.rmtree(server.maildir)


def index_mailbox(server: Dovecot, folder: str = "INBOX") -> float:
    started = time.perf_counter()
    subprocess.run(["doveadm", "-c", str(server.conf), "mailbox", "status", "-u", server.user, "messages uidnext",
                    folder], check=True, capture_output=True, env=server._env())  # noqa: SLF001
    return time.perf_counter() - started


def _settled(proc: psutil.Process, now: float) -> bool:
    try:
        return now - proc.create_time() >= 1.0
    except psutil.Error:
        return False


class PeakRss(threading.Thread):
    """Peak RSS of the main process, and peak PSS of the process tree (worker processes are forked:
    summing their RSS would count the pages they share with the parent several times)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_tree_pss, self.stop = pid, 0, 0, threading.Event()

    def run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, proc.memory_info().rss)
                # children alive for a second at least: a child forked to run a command (lpstat for
                # the printer's state) shares all the parent's pages until it execs, and read one
                # after the other the two would count them twice
                now = time.time()
                tree = [proc, *(c for c in proc.children(recursive=True) if _settled(c, now))]
                pss = 0
                for p in tree:
                    try:
                        pss += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                self.peak_tree_pss = max(self.peak_tree_pss, pss)
            except psutil.Error:
                return
            time.sleep(0.1)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, its reaped children and its live descendants."""
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0.0


def helper_config(server: Dovecot, password_file: Path, folders: list[str], poll: int = 60,
                  verify: bool = True, trust: Path | None = None) -> str:
    return (
        ("" if verify else "verify_barcodes = false\n")
        + (f"barcode_trust_list = {json.dumps(str(trust))}\n" if trust else "")
        + "[[sources.imap]]\nname = \"bal\"\nhost = \"127.0.0.1\"\n"
        f"port = {server.tls_port}\ntls = \"implicit\"\nca_file = \"{server.pki.ca}\"\n"
        f"user = \"{server.user}\"\npassword_file = \"{password_file}\"\n"
        "folders = [" + ", ".join(f'"{f}"' for f in folders) + f"]\npoll_seconds = {poll}\n"
    )


def first_sync(home: Path, imap: str, expected: int, server: Dovecot) -> dict[str, Any]:
    assert server.proc is not None
    dovecot_cpu = tree_cpu(server.proc.pid)
    started = time.perf_counter()
    helper = Helper.start(home, imap, wait=False)
    sampler = PeakRss(helper.proc.pid)
    sampler.start()
    while True:
        status = helper.status()
        rows = status["imap"]
        if status["counts"]["certificates"] >= expected and rows and all(r["last_success"] for r in rows):
            break
        if time.perf_counter() - started > 4 * 3600:
            raise RuntimeError(f"first sync not done: {status['counts']} {rows}")
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    cpu = tree_cpu(helper.proc.pid)  # the parse workers stay, idle, after the sync
    dovecot_cpu = tree_cpu(server.proc.pid) - dovecot_cpu
    sampler.stop.set()
    sampler.join()
    db = sqlite3.connect(f"file:{home / DB_NAME}?mode=ro", uri=True)
    verification = dict(db.execute(
        "SELECT coalesce(json_extract(verification, '$.status'), 'none'), count(*) FROM certificates GROUP BY 1"))
    db.close()
    return {"helper": helper, "wall_s": elapsed, "cpu_s": cpu, "dovecot_cpu_s": dovecot_cpu, "peak_rss": sampler.peak,
            "peak_tree_pss": sampler.peak_tree_pss, "certificates": status["counts"]["certificates"],
            "verification": verification}


def run_mbsync(server: Dovecot, password: str, work: Path) -> dict[str, Any]:
    target = work / "mbsync-maildir"
    shutil.rmtree(work / "mbsync-maildir", ignore_errors=True)
    target.mkdir(parents=True)
    (work / "mbsync-state").mkdir(exist_ok=True)
    conf = work / "mbsyncrc"
    conf.write_text(
        f"IMAPAccount bench\nHost localhost\nPort {server.tls_port}\nUser {server.user}\nPass {password}\n"
        f"SSLType IMAPS\nSSLVersions TLSv1.2 TLSv1.3\nCertificateFile {server.pki.ca}\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount bench\n\n"
        f"MaildirStore local\nPath {target}/\nInbox {target}/INBOX\n\n"
        f"Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nSync Pull\nCreate Near\n"
        f"SyncState {work}/mbsync-state/\n"
    )
    conf.chmod(0o600)
    assert server.proc is not None
    dovecot_cpu = tree_cpu(server.proc.pid)
    run = measure(["mbsync", "-c", str(conf), "-q", "bench"])
    dovecot_cpu = tree_cpu(server.proc.pid) - dovecot_cpu
    if run.returncode != 0:
        raise RuntimeError(f"mbsync failed: {run.stderr[-2000:]}")
    files = sum(len(os.listdir(target / "INBOX" / sub)) for sub in ("cur", "new"))
    return {"wall_s": run.wall_s, "peak_rss": run.peak_single_rss, "cpu_s": run.cpu_s, "dovecot_cpu_s": dovecot_cpu,
            "messages": files,
            "maildir": target / "INBOX"}


def run_notmuch(maildir: Path, work: Path) -> dict[str, Any]:
    db = work / "notmuch-db"
    shutil.rmtree(db, ignore_errors=True)
    db.mkdir(parents=True)
    (work / "notmuch-hooks").mkdir(exist_ok=True)
    config = work / "notmuch-config"
    config.write_text(f"[database]\npath={db}\nmail_root={maildir}\nhook_dir={work}/notmuch-hooks\n"
                      "[new]\ntags=unread;inbox\n[maildir]\nsynchronize_flags=true\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTMUCH_DATABASE", "NOTMUCH_PROFILE", "MAILDIR")}
    env["NOTMUCH_CONFIG"] = str(config)
    run = measure(["notmuch", "new", "--quiet"], env)
    if run.returncode != 0:
        raise RuntimeError(f"notmuch new failed: {run.stderr[-2000:]}")
    return {"wall_s": run.wall_s, "peak_rss": run.peak_single_rss, "cpu_s": run.cpu_s}


#: The test key that signed the corpus (set by main): new mail is signed by it too.
SIGNER: bg.Signer | None = None


def stage(server: Dovecot, n: int, seed: int) -> tuple[list[mailgen.CertSpec], list[bytes]]:
    rng = random.Random(seed)
    specs = [recent(rng) for _ in range(n)]
    assert SIGNER is not None
    return specs, [certificate_message(spec, SIGNER) for spec in specs]


def deliver(server: Dovecot, raws: list[bytes], seed: int, how: str) -> float:
    """Delivers the messages into INBOX; returns the time.perf_counter() from which the sync is timed.

    ``rename``: each written to tmp/ then renamed into new/ (what Postfix's own Maildir delivery does,
    with no Dovecot process involved), all renames at once, timed from the first rename;
    ``lda``: one ``dovecot-lda`` after the other (what an MTA handing mail to Dovecot does), timed
    from the end of the last delivery (each delivery takes long in a large Maildir, see
    benchmarks/README.md, and the helper reads the first ones meanwhile);
    ``append``: IMAP APPEND one after the other over one connection (what a mail server's own
    delivery into a Dovecot does, whatever its storage), timed from the first APPEND."""
    if how == "lda":
        for raw in raws:
            server.deliver(raw)
        return time.perf_counter()
    if how == "append":
        started = time.perf_counter()
        server.append_many(raws)
        return started
    mail = pwd.getpwnam("mail")
    staged = []
    for i, raw in enumerate(raws):
        # a unique base name per delivery (Dovecot keys its UID list by it: a reused name is not new mail)
        path = server.maildir / "tmp" / f"{1800000000 + i}.M{i}S{seed}P2.bench"
        path.write_bytes(raw)
        os.chown(path, mail.pw_uid, mail.pw_gid)
        staged.append(path)
    started = time.perf_counter()
    for path in staged:
        path.rename(server.maildir / "new" / path.name)
    return started


def incremental(server: Dovecot, helper: Helper, before: int, n: int, seed: int, how: str = "rename") -> dict[str, Any]:
    """n new certificates delivered at once (``deliver``) while the helper runs; timed until all are
    searchable (one search for the last one, then the count)."""
    specs, raws = stage(server, n, seed)
    first = time.perf_counter()
    started = deliver(server, raws, seed, how)
    # a light probe (one search) so that polling does not slow the helper down; then the full count
    while helper.search(specs[-1].dossier)["total"] < 1:
        if time.perf_counter() - started > 120:
            raise RuntimeError("incremental sync not done in 120 s")
        time.sleep(0.05)
    while helper.status()["counts"]["certificates"] < before + n:
        if time.perf_counter() - started > 120:
            raise RuntimeError("incremental sync not done in 120 s")
        time.sleep(0.05)
    done = time.perf_counter()
    return {"delivery": how, "delivered_to_searchable_s": done - started, "first_delivery_to_searchable_s": done - first}


def mbsync_catch_up(work: Path) -> None:
    """mbsync fetches, untimed, what arrived since its last run (the helper's incremental steps)."""
    run = measure(["mbsync", "-c", str(work / "mbsyncrc"), "-q", "bench"])
    if run.returncode != 0:
        raise RuntimeError(f"mbsync failed: {run.stderr[-2000:]}")


def mbsync_incremental(server: Dovecot, work: Path, n: int, seed: int, how: str = "rename") -> dict[str, Any]:
    """mbsync (state of ``run_mbsync``, caught up: ``mbsync_catch_up``) fetching n new messages
    delivered the same way, with no other client on the mailbox: wall time of the mbsync run (its
    connection and login included)."""
    _, raws = stage(server, n, seed)
    deliver(server, raws, seed, how)
    before = sum(len(os.listdir(work / "mbsync-maildir" / "INBOX" / sub)) for sub in ("cur", "new"))
    run = measure(["mbsync", "-c", str(work / "mbsyncrc"), "-q", "bench"])
    if run.returncode != 0:
        raise RuntimeError(f"mbsync failed: {run.stderr[-2000:]}")
    after = sum(len(os.listdir(work / "mbsync-maildir" / "INBOX" / sub)) for sub in ("cur", "new"))
    return {"delivery": how, "wall_s": run.wall_s, "messages": after - before}


def keyword_round_trips(a: Helper, b: Helper, dossiers: list[str], rounds: int,
                        server: Dovecot | None = None) -> dict[str, Any]:
    pairs = []
    for dossier in dossiers:
        # only a dossier number no other certificate shares: at 100,000 messages (10,000 numbers a
        # day), desk A, which follows INBOX too, may hold another certificate with it (another
        # patient's, or one that a same-site same-dossier certificate supersedes)
        found_b = [r for r in b.wait_for(dossier, timeout=30)["results"] if r.get("dossier") == dossier]
        found_a = [r for r in a.search(dossier)["results"] if r.get("dossier") == dossier]
        if len(found_a) == 1 and len(found_b) == 1:
            pairs.append((found_a[0]["id"], found_b[0]["id"]))
        if len(pairs) == 10:
            break
    if not pairs:
        raise RuntimeError("no certificate shared by the two desks")
    times: list[float] = []
    for i in range(rounds):
        id_a, id_b = pairs[i % len(pairs)]
        current = a.cert(id_a)["delivered_at"] is not None
        started = time.perf_counter()
        if current:
            a.call("DELETE", f"/api/v1/certificates/{id_a}/delivered")
        else:
            a.call("POST", f"/api/v1/certificates/{id_a}/delivered", b"{}")
        want = not current
        while (b.cert(id_b)["delivered_at"] is not None) != want:
            if time.perf_counter() - started > 30:
                # what to look at next time: did desk A write the keyword, and what do the desks say?
                flags = server.flags("Partage") if server is not None else "?"
                remis = sorted(uid for uid, f in flags.items() if "$SidepRemis" in f) if isinstance(flags, dict) else flags
                raise RuntimeError(f"keyword change (round {i}, want delivered={want}) did not reach desk B in 30 s; "
                                   f"Partage UIDs with $SidepRemis on the server: {remis}; desk A delivered_at: "
                                   f"{a.cert(id_a)['delivered_at']}; desk A imap: {a.status()['imap']}; "
                                   f"desk B imap: {b.status()['imap']}")
            time.sleep(0.01)
        times.append(time.perf_counter() - started)
    times.sort()
    return {"rounds": len(times), "median_s": statistics.median(times),
            "p95_s": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], "max_s": times[-1]}


def warm_up(server: Dovecot, folder: str = "INBOX") -> float:
    """Dovecot reads every message once (its index and cache, the page cache) so that no tool timed
    afterwards pays for the first read of the Maildir."""
    started = time.perf_counter()
    subprocess.run(["doveadm", "-c", str(server.conf), "fetch", "-u", server.user, "body", "mailbox", folder, "all"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=server._env())  # noqa: SLF001
    return time.perf_counter() - started


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_first_sync(label: str, home: Path, imap: str, expected: int, n: int,
                     server: Dovecot) -> tuple[Helper, dict[str, Any]]:
    say(f"First sync, {label} (sidep-helper serve, IMAP over TLS) ...")
    before = load()
    first = first_sync(home, imap, expected, server)
    helper = first.pop("helper")
    first["messages_per_s"] = n / first["wall_s"]
    first["load_before"], first["load_after"] = before, load()
    say(f"  {first['wall_s']:.1f} s, {first['messages_per_s']:,.0f} messages/s, peak RSS {first['peak_rss'] / MiB:.0f} MiB "
        f"(service process; whole tree with its worker processes: peak PSS {first['peak_tree_pss'] / MiB:.0f} MiB); "
        f"load {first['load_after']}")
    say(f"  CPU: {1000 * first['cpu_s'] / n:.2f} ms/message in sidep-helper (service + workers), "
        f"{1000 * first['dovecot_cpu_s'] / n:.2f} ms/message in Dovecot")
    say(f"  verification of the certificates: {first['verification']}")
    return helper, first


def timed_incremental(label: str, server: Dovecot, helper: Helper, seed: int, how: str = "rename") -> dict[str, Any]:
    say(f"Incremental sync, {label}: 100 new certificates ({DELIVERY[how]}) ...")
    before = helper.status()["counts"]["certificates"]
    inc = incremental(server, helper, before, 100, seed, how)
    inc["load"] = load()
    if how == "lda":
        say(f"  {inc['delivered_to_searchable_s']:.2f} s from the last delivery until all are searchable "
            f"({inc['first_delivery_to_searchable_s']:.1f} s from the first); load {inc['load']}")
    else:
        say(f"  {inc['delivered_to_searchable_s']:.2f} s from delivery until all are searchable; load {inc['load']}")
    return inc


DELIVERY = {"rename": "tmp/ → new/, as Postfix's Maildir delivery", "lda": "dovecot-lda, one after the other",
            "append": "IMAP APPEND, one after the other"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="messages in the mailbox (default 100,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=40, help="keyword round trips")
    parser.add_argument("--verify", choices=("off", "on", "both"), default="both",
                        help="barcode verification (verify_barcodes) in the helper: off, on (default), or both")
    parser.add_argument("--no-notmuch", action="store_true", help="skip notmuch new")
    parser.add_argument("--storage", choices=tuple(STORAGE_CONF), default="maildir",
                        help="how Dovecot stores the mailbox: maildir (default), sdbox or mdbox (Dovecot's own "
                             "formats: no directory re-read when mail arrives)")
    parser.add_argument("--delivery", choices=("rename", "lda", "append", "both"), default=None,
                        help="how the incremental step's 100 messages arrive: renamed into new/ (default with "
                             "maildir), dovecot-lda, IMAP APPEND (default with sdbox/mdbox), or both "
                             "(rename and lda with maildir, append and lda otherwise)")
    parser.add_argument("--repeat", type=int, default=1, help="incremental steps per setting (default 1)")
    parser.add_argument("--incremental-only", action="store_true",
                        help="only what the incremental step needs: verification off, no notmuch, no keyword "
                             "round trip (the first syncs still run, untimed figures printed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--prepare", action="store_true", help="only generate the messages (cached), then stop")
    args = parser.parse_args()
    if args.prepare:
        folder, info = generate_corpus(args.out, args.n, args.seed)
        say(f"{folder}: {info['certificates']:,} certificates, {info['others']:,} other, {info['bytes'] / MiB:,.0f} MiB")
        return 0
    if os.geteuid() != 0:
        say("This benchmark starts a private Dovecot and must run as root.")
        return 2
    first_way = "rename" if args.storage == "maildir" else "append"
    if args.delivery == "rename" and args.storage != "maildir":
        parser.error("--delivery rename writes into a Maildir: use --storage maildir")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-imap-", dir=args.out))
    server = start_dovecot(client_cert=False, extra_conf=STORAGE_CONF[args.storage])
    helpers: list[Helper] = []
    if args.incremental_only:
        args.verify, args.no_notmuch = "off", True
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.verify]
    deliveries = [first_way, "lda"] if args.delivery == "both" else [args.delivery or first_way]
    results: dict[str, Any] = {"n": args.n, "storage": args.storage, "cpu_count": os.cpu_count(), "load_start": load()}
    try:
        password = work / "imap-password"
        password.write_text(server.password + "\n")
        password.chmod(0o600)
        say(f"Filling the mailbox ({args.storage}) with {args.n:,} messages ...")
        t0 = time.perf_counter()
        corpus, info = generate_corpus(args.out, args.n, args.seed)
        fill_mailbox(server, corpus, args.storage)
        global SIGNER
        SIGNER, trust = corpus_signer(corpus.parent), corpus.parent / "liste-de-confiance"
        certs, others, total = info["certificates"], info["others"], info["bytes"]
        say(f"  {certs:,} certificates, {others:,} other, {total / MiB:,.0f} MiB in {time.perf_counter() - t0:.0f} s"
            f" (generated once in {corpus.parent})")
        say(f"  Dovecot indexed it in {index_mailbox(server):.1f} s; read it once in {warm_up(server):.1f} s")
        server.create_folder("Partage")
        shared_rng = random.Random(args.seed + 1)
        shared = [recent(shared_rng) for _ in range(20)]
        for spec in shared:
            server.append(certificate_message(spec, SIGNER), "Partage")
        certs += 20
        results.update(certificates=certs, others=others, mailbox_bytes=total)

        say("mbsync (isync) of the same folder to a Maildir ...")
        mb = run_mbsync(server, server.password, work)
        mb["messages_per_s"] = mb["messages"] / mb["wall_s"]
        mb["load_after"] = load()
        maildir = mb.pop("maildir")
        say(f"  {mb['wall_s']:.1f} s, {mb['messages_per_s']:,.0f} messages/s, peak RSS {mb['peak_rss'] / MiB:.0f} MiB; "
            f"load {mb['load_after']}")
        say(f"  CPU: {1000 * mb['cpu_s'] / args.n:.2f} ms/message in mbsync, "
            f"{1000 * mb['dovecot_cpu_s'] / args.n:.2f} ms/message in Dovecot")
        results["mbsync"] = mb

        desks: dict[bool, Helper] = {}
        for verify in modes:
            label = "verify_barcodes = " + ("true" if verify else "false")
            key = "verify_on" if verify else "verify_off"
            helper, first = timed_first_sync(label, work / f"desk-{key}",
                                             helper_config(server, password, ["INBOX", "Partage"], verify=verify, trust=trust),
                                             certs, args.n + 20, server)
            helpers.append(helper)
            first["vs_mbsync"] = first["messages_per_s"] / mb["messages_per_s"]
            say(f"  {first['vs_mbsync']:.2f} × mbsync")
            results[f"first_sync_{key}"] = first
            helper.stop()
            desks[verify] = helper

        if not args.no_notmuch:
            say("notmuch new over the mbsync Maildir ...")
            nm = run_notmuch(maildir, work)
            nm["messages_per_s"] = args.n / nm["wall_s"]
            say(f"  {nm['wall_s']:.1f} s, {nm['messages_per_s']:,.0f} messages/s, peak RSS {nm['peak_rss'] / MiB:.0f} MiB")
            say(f"  mbsync + notmuch: {mb['wall_s'] + nm['wall_s']:.1f} s")
            results["notmuch"] = nm

        a = None
        added = 0
        seeds = iter(range(args.seed + 2, args.seed + 10_000))
        for verify in modes:
            key = "verify_on" if verify else "verify_off"
            a = desks[verify]
            a.restart()
            deadline = time.perf_counter() + 600  # it catches up what the other desk's run delivered
            while a.status()["counts"]["certificates"] < certs + added and time.perf_counter() < deadline:
                time.sleep(0.25)
            a.wait_imap_ok(timeout=60)
            for how in deliveries:
                runs = []
                for _ in range(args.repeat):
                    time.sleep(2)
                    runs.append(timed_incremental(key, server, a, next(seeds), how))
                    added += 100
                suffix = "" if how == first_way else f"_{how}"
                results[f"incremental_100_{key}{suffix}"] = runs[0] if len(runs) == 1 else runs
            if verify != modes[-1]:
                a.stop()
        assert a is not None

        if not args.incremental_only:
            say("Keyword round trip between two desks ...")
            b = Helper.start(work / "desk-b", helper_config(server, password, ["Partage"], trust=trust))
            helpers.append(b)
            kw = keyword_round_trips(a, b, [spec.dossier for spec in shared], args.rounds, server)
            say(f"  {kw['rounds']} round trips: median {kw['median_s'] * 1000:.0f} ms, p95 {kw['p95_s'] * 1000:.0f} ms")
            results["keywords"] = kw
        for h in helpers:  # mbsync alone on the mailbox, as the helper was
            h.stop()
        mbsync_catch_up(work)
        for how in deliveries:
            runs = []
            for _ in range(args.repeat):
                say(f"mbsync, incremental: 100 new certificates ({DELIVERY[how]}) ...")
                time.sleep(2)
                inc = mbsync_incremental(server, work, 100, next(seeds), how)
                inc["load"] = load()
                say(f"  {inc['wall_s']:.2f} s for mbsync to fetch the {inc['messages']} new messages; load {inc['load']}")
                runs.append(inc)
            results["mbsync_incremental_100" + ("" if how == first_way else f"_{how}")] = runs[0] if len(runs) == 1 else runs
        results["load_end"] = load()
        (args.out / "imap-results.json").write_text(json.dumps(results, indent=2, default=str))
        return 0
    finally:
        for h in helpers:
            h.stop()
        server.remove()
        for log in work.glob("desk-*/logs/sidep-helper.log"):  # kept for a look at the timings
            shutil.copy(log, args.out / f"{log.parent.parent.name}.log")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
