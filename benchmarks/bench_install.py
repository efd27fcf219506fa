"""Installed size and cold start of the packaged helper, compared with a venv install (Debian part).

What it does, step by step:
1. builds the .deb with ``packaging/build deb`` (timed), unless ``--deb FILE`` names one;
2. installs it with ``dpkg -i`` (root), measures ``/opt/sidep-helper`` on disk (with the .pyc that
   postinst compiles) and the .deb's size;
3. makes the README-style venv install in a temporary folder, on the same Debian python3, from the same
   locked wheels (``uv export`` + ``pip install --require-hashes``) plus our wheel, and measures it;
4. cold start of each: a new ``sidep-helper serve --no-watch`` process on a fresh data folder, from
   launch to the first ``/api/v1/health`` answer (index, token and log created on the way), ``--runs``
   times, median and max;
5. purges the package again if it was not installed before, prints the figures and writes
   ``benchmarks/out/install-debian.json``.
The Windows figures (NSIS/MSI under Wine) live in their own script (``bench_install_windows.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(command: list[str], runs: int) -> list[float]:
    """Seconds from launch to the first health answer, each run on a fresh data folder."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            port = free_port()
            Path(home, "config.toml").write_text(f"port = {port}\n")
            env = {"PATH": "/usr/bin:/bin", "HOME": home, "SIDEP_HELPER_HOME": home, "LANG": "C.UTF-8",
                   "SIDEP_HELPER_MACHINE_CONFIG": ""}
            started = time.perf_counter()
            proc = subprocess.Popen([*command, "serve", "--no-watch"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"{command[0]} serve exited {proc.returncode}")
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                            break
                    except OSError:
                        time.sleep(0.005)
                times.append(time.perf_counter() - started)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "min_s": round(min(times), 3)}


def venv_install(work: Path) -> tuple[Path, float]:
    """The README's venv install, from the locked wheels (hash-checked) and our wheel."""
    uv = ROOT / "packaging" / ".uv" / "bin" / "uv"
    if not uv.exists():
        subprocess.run([str(ROOT / "packaging" / "lock")], check=True, capture_output=True)  # bootstraps uv
    req = work / "requirements.txt"
    subprocess.run([str(uv), "export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--no-header",
                    "--format", "requirements-txt", "--output-file", str(req)], cwd=ROOT, check=True)
    subprocess.run([str(uv), "build", "--quiet", "--wheel", "--out-dir", str(work / "wheel"), str(ROOT)], check=True)
    venv = work / "venv"
    started = time.perf_counter()
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(req)], check=True)
    subprocess.run([*pip, "--no-deps", *map(str, (work / "wheel").glob("*.whl"))], check=True)
    return venv, time.perf_counter() - started


def debian(args: argparse.Namespace) -> dict[str, object]:
    if os.geteuid() != 0 or not shutil.which("dpkg"):
        raise SystemExit("La partie Debian demande root et dpkg.")
    result: dict[str, object] = {}
    if args.deb:
        deb = Path(args.deb)
    else:
        started = time.perf_counter()
        out = subprocess.run([str(ROOT / "packaging" / "build"), "deb"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        result["deb_build_s"] = round(time.perf_counter() - started, 1)
        deb = ROOT / out.strip().splitlines()[-1]
    result["deb_file_bytes"] = deb.stat().st_size
    was_installed = subprocess.run(["dpkg-query", "-W", "sidep-helper"], capture_output=True).returncode == 0
    started = time.perf_counter()
    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    result["deb_install_s"] = round(time.perf_counter() - started, 1)
    try:
        result["deb_installed_bytes"] = du(Path("/opt/sidep-helper"))
        result["deb_cold_start"] = summary(cold_start(["/usr/bin/sidep-helper"], args.runs))
    finally:
        if not was_installed:
            subprocess.run(["dpkg", "--purge", "sidep-helper"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as work:
        venv, seconds = venv_install(Path(work))
        result["venv_install_s"] = round(seconds, 1)
        result["venv_installed_bytes"] = du(venv)
        result["venv_cold_start"] = summary(cold_start([str(venv / "bin" / "sidep-helper")], args.runs))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", help="paquet déjà construit (sinon : packaging/build deb)")
    parser.add_argument("--runs", type=int, default=7, help="démarrages mesurés par installation (défaut 7)")
    args = parser.parse_args()
    result = debian(args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "install-debian.json").write_text(json.dumps(result, indent=2) + "\n")
    mb = 1_000_000
    print(f"paquet .deb : {result['deb_file_bytes'] / mb:.1f} Mo"
          + (f", construit en {result['deb_build_s']} s" if "deb_build_s" in result else ""))
    print(f"{'installation':<24}{'taille':>10}{'démarrage médian':>20}{'max':>10}")
    for name, key in (("paquet .deb (/opt)", "deb"), ("venv (README)", "venv")):
        start = result[f"{key}_cold_start"]
        print(f"{name:<24}{result[f'{key}_installed_bytes'] / mb:>8.1f} Mo{start['median_s']:>18.3f} s"  # type: ignore[index]
              f"{start['max_s']:>8.3f} s")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
