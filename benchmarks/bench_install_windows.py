"""Windows installers: installed size and cold start of the Wine-installed helper vs a venv install.

Steps (the Windows part of the installation benchmark; the Debian package has its own script):
1. build the MSI and setup.exe from the tree (``packaging/windows/build all --out OUT/dist``) unless
   ``--dist`` names a folder that already holds them; print their sizes and the build time;
2. install the MSI silently in a fresh WINEPREFIX (tests/wine.py), with PORT set; print the size of
   ``C:\\Program Files\\sidep-helper`` and the install time;
3. cold start under Wine, ``--runs`` times: the logon command line from the HKLM Run key
   (pythonw.exe -m helper serve), time from launch to the first ``/api/v1/health`` answer; the first
   run also starts wineserver (reported apart), the others find it running (like a Windows session);
4. the same from a venv: ``python -m venv`` + the hash-locked runtime requirements (uv export) + our
   wheel; its size (site-packages, without the interpreter) and its cold start (``python -m helper
   serve``), ``--runs`` times.
Prints a table and writes OUT/install-windows.json. Needs root+apt for Wine (see tests/wine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from wine import Prefix  # noqa: E402

INSTDIR = r"C:\Program Files\sidep-helper"
RUN_KEY = r"software\microsoft\windows\currentversion\run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def wait_health(port: int, timeout: float = 180) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no health answer on port {port} within {timeout} s")


def wait_closed(port: int) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
        except OSError:
            return
        time.sleep(0.1)


def build(out: Path) -> tuple[Path, Path, float]:
    start = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "packaging/windows/build"), "all", "--out", str(out)], check=True)
    elapsed = time.monotonic() - start
    return next(out.glob("*-x64.msi")), next(out.glob("*-setup.exe")), elapsed


def wine_figures(msi: Path, work: Path, runs: int) -> dict[str, object]:
    prefix = Prefix(work / "prefix")
    port = free_port()
    start = time.monotonic()
    rc = prefix.run("msiexec", "/i", str(msi), "/qn", f"PORT={port}", timeout=900)
    prefix.wait()
    install_s = time.monotonic() - start
    if rc != 0:
        raise SystemExit(f"msiexec exited {rc}")
    # the user's config says the same port (the branch may not read the machine config yet)
    cfg = prefix.local_appdata / "sidep-helper" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n", encoding="utf-8")
    exe, rest = re.fullmatch(r'"([^"]+)"\s+(.*)', str(prefix.hklm()[RUN_KEY]["sidep-helper"])).groups()
    times = []
    try:
        for i in range(runs + 1):
            if i == 0:
                prefix.kill()  # first run: wineserver not running yet
            t0 = time.monotonic()
            proc = prefix.spawn(exe, *rest.split())
            times.append(wait_health(port) - t0)
            # stop the helper only (wineserver -k would make every run a first run)
            prefix.run(f"{INSTDIR}\\python\\python.exe", "-c",
                       "import sys; sys.path.insert(0, r'" + INSTDIR + "\\tools'); import setup_actions, pathlib; "
                       "setup_actions.stop_processes(pathlib.Path(r'" + INSTDIR + "'))")
            proc.wait(60)
            wait_closed(port)
    finally:
        prefix.kill()
    return {"installed_bytes": du(prefix.unix(INSTDIR)), "install_s": install_s,
            "cold_start_first_s": times[0], "cold_start_s": times[1:]}


def venv_figures(work: Path, runs: int) -> dict[str, object]:
    uv = ROOT / "packaging/.uv/bin/uv"
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    req = work / "req.txt"
    with open(req, "w") as fh:
        subprocess.run([str(uv), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header",
                        "--format", "requirements-txt", "--project", str(ROOT)], check=True, stdout=fh)
    py = venv / "bin" / "python"
    subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(py), "--require-hashes", "-r", str(req)],
                   check=True)
    subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(py), "--no-deps", str(ROOT)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    port = free_port()
    home = work / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"port = {port}\nwatch_downloads = false\nwatch_thunderbird = false\n")
    env = dict(os.environ, SIDEP_HELPER_HOME=str(home))
    env.pop("PYTHONPATH", None)
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        proc = subprocess.Popen([str(py), "-m", "helper", "serve"], env=env, cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(wait_health(port) - t0)
        proc.terminate()
        proc.wait(30)
        wait_closed(port)
    return {"installed_bytes": du(site), "cold_start_s": times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, help="folder holding already built installers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-install-win-") as tmp:
        work = Path(tmp)
        if args.dist:
            msi, exe, build_s = next(args.dist.glob("*-x64.msi")), next(args.dist.glob("*-setup.exe")), None
        else:
            msi, exe, build_s = build(work / "dist")
        results = {"msi_bytes": msi.stat().st_size, "setup_exe_bytes": exe.stat().st_size, "build_s": build_s,
                   "wine": wine_figures(msi, work, args.runs), "venv": venv_figures(work, args.runs)}
        shutil.rmtree(work / "venv", ignore_errors=True)
    w, v = results["wine"], results["venv"]
    mb = 1e6
    print("\n| mesure | Windows (MSI sous Wine) | venv Linux |")
    print("|---|---|---|")
    print(f"| taille installée | {w['installed_bytes'] / mb:.1f} Mo (Python embarqué compris) | "
          f"{v['installed_bytes'] / mb:.1f} Mo (site-packages, sans l'interpréteur) |")
    print(f"| démarrage à froid → 1re réponse /health (médiane) | {statistics.median(w['cold_start_s']):.2f} s "
          f"(1er lancement avec wineserver : {w['cold_start_first_s']:.2f} s) | {statistics.median(v['cold_start_s']):.2f} s |")
    print(f"| installeurs | MSI {results['msi_bytes'] / mb:.1f} Mo, setup.exe {results['setup_exe_bytes'] / mb:.1f} Mo | |")
    if build_s is not None:
        print(f"| construction (les deux installeurs) | {build_s:.0f} s | |")
    print(f"| installation silencieuse MSI | {w['install_s']:.0f} s | |")
    (args.out / "install-windows.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
