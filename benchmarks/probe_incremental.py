#!/usr/bin/env python3
"""The incremental step of bench_imap.py, again and again, on a mailbox kept up: what Dovecot does
when 100 messages arrive in a large Maildir (raw IMAP timings), the helper's and mbsync's figures.

    sudo .venv/bin/python benchmarks/probe_incremental.py hold --n 100000 &   # a private Dovecot, kept up
    sudo .venv/bin/python benchmarks/probe_incremental.py probe --how rename --wait 2 --items helper body
    sudo .venv/bin/python benchmarks/probe_incremental.py follow &            # a helper on its INBOX
    sudo .venv/bin/python benchmarks/probe_incremental.py probe --helper --repeat 4 [--how lda]
    sudo .venv/bin/python benchmarks/probe_incremental.py mbsync --repeat 4   # stop follow's helper first
    touch OUT/probe-dovecot/stop                                                # stops and removes it all

``hold``: the mailbox of ``bench_imap.py`` (same corpus, same filling, indexing and warm-up) in a
private Dovecot; its coordinates in ``OUT/probe-dovecot/state.json``; stops when ``stop`` appears.
Its imap processes can be watched meanwhile (``strace -tt -T -p PID``).

``probe``: one IMAP session selects INBOX (``--examine``: read-only), then 100 new certificates
arrive (``--how``: ``bench_imap.deliver``); after ``--wait`` seconds the session runs, each timed:
NOOP, UID SEARCH of the new UIDs, then each FETCH of ``--items`` over the new UIDs, then the first
again. ``probe --helper``: bench_imap's incremental step against ``follow``'s helper.

``follow``: a ``sidep-helper serve`` (verification off, fresh data directory) on the held INBOX.
``mbsync``: mbsync's full sync once (untimed), then its incremental runs, timed.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import random
import shutil
import ssl
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_imap  # noqa: E402
import mailgen  # noqa: E402
from dovecot import Dovecot, start_dovecot  # noqa: E402

HEADERS = "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID CONTENT-TYPE)] RFC822.SIZE)"
ITEMS = {
    "helper": HEADERS,
    "headers": "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID CONTENT-TYPE)])",
    "size": "(RFC822.SIZE)",
    "uid": "(UID)",
    "flags": "(FLAGS)",
    "body": "(BODY.PEEK[])",
    "fullheader": "(BODY.PEEK[HEADER] RFC822.SIZE)",
}


def hold(args: argparse.Namespace) -> int:
    place = args.out / "probe-dovecot"
    place.mkdir(parents=True, exist_ok=True)
    (place / "stop").unlink(missing_ok=True)
    server = start_dovecot(client_cert=False, extra_conf=args.extra_conf.replace("\\n", "\n"))
    try:
        corpus, info = bench_imap.generate_corpus(args.out, args.n, args.seed)
        t0 = time.perf_counter()
        bench_imap.fill_maildir(server, corpus)
        print(f"filled in {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"indexed in {bench_imap.index_mailbox(server):.1f} s; read in {bench_imap.warm_up(server):.1f} s",
              flush=True)
        (place / "state.json").write_text(json.dumps({
            "root": str(server.root), "port": server.port, "tls_port": server.tls_port, "user": server.user,
            "password": server.password, "ca": str(server.pki.ca), "pid": server.proc.pid}))
        print("ready", flush=True)
        while not (place / "stop").exists():
            time.sleep(0.5)
        return 0
    finally:
        server.remove()
        (place / "state.json").unlink(missing_ok=True)


def follow(args: argparse.Namespace) -> int:
    """A sidep-helper serve (verification off) following the held Dovecot's INBOX; first sync awaited;
    its coordinates in ``OUT/probe-dovecot/helper.json``; stops with the Dovecot (``stop``)."""
    from imaphelpers import Helper

    place = args.out / "probe-dovecot"
    server = server_of(args.out)
    server.pki = type("P", (), {"ca": server.ca})()  # type: ignore[attr-defined]
    password = place / "imap-password"
    password.write_text(server.password + "\n")
    password.chmod(0o600)
    home = place / "desk"
    shutil.rmtree(home, ignore_errors=True)  # a fresh index for this mailbox
    config = bench_imap.helper_config(server, password, ["INBOX"], verify=False)
    t0 = time.perf_counter()
    helper = Helper.start(home, config, wait=False)
    try:
        while True:
            status = helper.status()
            rows = status["imap"]
            if rows and all(r["last_success"] for r in rows) and status["counts"]["certificates"] > 0:
                break
            time.sleep(1)
        print(f"first sync {time.perf_counter() - t0:.0f} s, {status['counts']['certificates']} certificates", flush=True)
        (place / "helper.json").write_text(json.dumps({"home": str(home), "port": helper.port, "token": helper.token,
                                                        "pid": helper.proc.pid}))
        while not (place / "stop").exists():
            time.sleep(0.5)
        return 0
    finally:
        helper.stop()
        (place / "helper.json").unlink(missing_ok=True)


def server_of(out: Path) -> Dovecot:
    state = json.loads((out / "probe-dovecot" / "state.json").read_text())
    from imappki import Pki  # noqa: F401 - only for the type
    server = Dovecot(root=Path(state["root"]), pki=None, client_cert=False, port=state["port"],
                     tls_port=state["tls_port"], password=state["password"])
    server.ca = state["ca"]  # type: ignore[attr-defined]
    server.proc = type("Proc", (), {"pid": state["pid"]})()  # type: ignore[assignment] - for its CPU time only
    return server


def session(server: Dovecot) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=server.ca)  # type: ignore[attr-defined]
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=ctx, timeout=300)
    conn.login(server.user, server.password)
    return conn


def timed(label: str, fn, *a):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    out = fn(*a)
    print(f"  {label:<44} {1000 * (time.perf_counter() - t0):8.1f} ms", flush=True)
    return out


def deliver(server: Dovecot, how: str, raws: list[bytes], seed: int) -> float:
    t0 = time.perf_counter()
    bench_imap.deliver(server, raws, seed, how)
    return time.perf_counter() - t0


def probe(args: argparse.Namespace) -> int:
    server = server_of(args.out)
    if args.helper:
        return probe_helper(args, server)
    conn = session(server)
    typ, data = timed("EXAMINE INBOX" if args.examine else "SELECT INBOX", conn.select, "INBOX", args.examine)
    exists = int(data[0])
    typ, data = conn.status("INBOX", "(UIDNEXT)")
    uidnext = int(data[0].decode().split("UIDNEXT", 1)[1].strip(" )"))
    print(f"  exists {exists}, uidnext {uidnext}")
    rng = random.Random(time.time_ns())
    raws = [mailgen.make_message(bench_imap.recent(rng)) for _ in range(args.count)]
    took = deliver(server, args.how, raws, rng.randrange(10**9))
    print(f"  delivered {args.count} by {args.how} in {1000 * took:.1f} ms", flush=True)
    time.sleep(args.wait)
    for _ in range(args.noops):
        timed("NOOP", conn.noop)
    typ, data = timed("UID SEARCH new", conn.uid, "SEARCH", f"UID {uidnext}:*")
    uids = [u for u in data[0].split() if int(u) >= uidnext]
    print(f"  {len(uids)} new UIDs")
    if uids:
        seqset = f"{int(uids[0])}:{int(uids[-1])}"
        for items in args.items:
            timed(f"UID FETCH {items}", conn.uid, "FETCH", seqset, ITEMS[items])
        timed(f"again UID FETCH {args.items[0]}", conn.uid, "FETCH", seqset, ITEMS[args.items[0]])
    timed("NOOP", conn.noop)
    conn.logout()
    return 0


def probe_helper(args: argparse.Namespace, server: Dovecot) -> int:
    """The benchmark's incremental step against the running helper (``follow``), ``--repeat`` times."""
    from imaphelpers import Helper

    info = json.loads((args.out / "probe-dovecot" / "helper.json").read_text())
    helper = Helper(Path(info["home"]), info["port"], None, info["token"])  # type: ignore[arg-type]
    for i in range(args.repeat):
        before = helper.status()["counts"]["certificates"]
        seed = time.time_ns() % 10**9
        inc = bench_imap.incremental(server, helper, before, args.count, seed, args.how)
        print(f"  incremental {i + 1} ({args.how}): {inc['delivered_to_searchable_s']:.2f} s "
              f"({inc['first_delivery_to_searchable_s']:.2f} s from the first delivery)", flush=True)
        time.sleep(args.pause)
    return 0


def mbsync(args: argparse.Namespace) -> int:
    """mbsync's incremental run: a full sync first when it has no state (untimed), then ``--repeat``
    times 100 new messages delivered by ``--how`` and mbsync timed. Stop ``follow``'s helper first."""
    server = server_of(args.out)
    server.pki = type("P", (), {"ca": server.ca})()  # type: ignore[attr-defined]
    work = args.out / "probe-dovecot" / "mbsync"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "mbsyncrc").exists():
        full = bench_imap.run_mbsync(server, server.password, work)
        print(f"  mbsync full sync {full['wall_s']:.1f} s, {full['messages']} messages", flush=True)
    else:
        bench_imap.mbsync_catch_up(work)
    for i in range(args.repeat):
        time.sleep(args.pause)
        inc = bench_imap.mbsync_incremental(server, work, args.count, time.time_ns() % 10**9, args.how)
        print(f"  mbsync incremental {i + 1} ({args.how}): {inc['wall_s']:.2f} s, {inc['messages']} new", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--n", type=int, default=100_000)
    h.add_argument("--seed", type=int, default=7)
    h.add_argument("--extra-conf", default="", help="appended to dovecot.conf (\\n for new lines)")
    p = sub.add_parser("probe")
    p.add_argument("--how", choices=("rename", "lda"), default="rename")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--wait", type=float, default=2.0)
    p.add_argument("--noops", type=int, default=1)
    p.add_argument("--items", nargs="+", choices=sorted(ITEMS), default=["helper"])
    p.add_argument("--examine", action="store_true", help="EXAMINE (read-only) instead of SELECT")
    p.add_argument("--helper", action="store_true", help="the bench's incremental step against `follow`'s helper")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--pause", type=float, default=3.0)
    f = sub.add_parser("follow")
    m = sub.add_parser("mbsync")
    m.add_argument("--how", choices=("rename", "lda"), default="rename")
    m.add_argument("--count", type=int, default=100)
    m.add_argument("--repeat", type=int, default=1)
    m.add_argument("--pause", type=float, default=3.0)
    for s in (h, p, f, m):
        s.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    return {"hold": hold, "probe": probe, "follow": follow, "mbsync": mbsync}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
