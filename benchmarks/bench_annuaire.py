#!/usr/bin/env python3
"""``sidep-helper check-annuaire`` over a generated MSSanté directory: wall time and peak RSS.

    python benchmarks/bench_annuaire.py                  # 535,000 rows, 300 sites (targets: < 5 s, < 100 MiB)
    python benchmarks/bench_annuaire.py --rows 100000 --sites 50

Generates the extraction (UTF-8, ``|``, 31 columns) in a temporary folder, then runs the real command line
in a child process (``python -m helper check-annuaire … --json``) and prints the elapsed time and the
child's peak resident memory (``ru_maxrss`` of the finished child).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from directorygen import annuaire_row, big_annuaire, finess  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=535_000)
    ap.add_argument("--sites", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(11)
    ej = finess(rng, "75")
    sites = [finess(rng, "75") for _ in range(args.sites)]
    with tempfile.TemporaryDirectory() as tmp:
        path = big_annuaire(Path(tmp) / "Extraction_Correspondance_MSSante.txt", args.rows)
        with path.open("a", encoding="utf-8") as out:  # the group: one mailbox, a third of sites their own
            out.write(annuaire_row("ORG", "groupe@labo.mssante.fr", ej, "@SIDEP") + "\n")
            for i, site in enumerate(sites[::3]):
                out.write(annuaire_row("ORG", f"site{i}@labo.mssante.fr", site, "Biologie @SIDEP") + "\n")
        list_file = Path(tmp) / "sites.txt"
        list_file.write_text("\n".join(sites) + "\n", encoding="utf-8")
        size = path.stat().st_size
        env = dict(os.environ, PYTHONPATH=str(ROOT), SIDEP_HELPER_HOME=str(Path(tmp) / "home"),
                   SIDEP_HELPER_MACHINE_CONFIG="")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "helper", "check-annuaire", str(path), "--finess-juridique",
                               ej, "--sites", str(list_file), "--json"],
                              capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        data = json.loads(proc.stdout)
        own = sum(1 for s in data["sites"] if s["outcome"] == "geographique")
        group = sum(1 for s in data["sites"] if s["outcome"] == "juridique")
        print(f"annuaire : {data['rows']:,} lignes, {size / 2**20:.0f} Mio ; {len(sites)} sites "
              f"({own} BAL du site, {group} BAL mutualisée)")
        print(f"check-annuaire : {elapsed:.2f} s (cible < 5 s), pic mémoire {peak_mib:.0f} Mio (cible < 100 Mio)")
        assert own == len(sites[::3]) and group == len(sites) - own, "unexpected verdicts"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
