"""Headless Chromium with the sidep-helper webmail extension loaded, for the extension tests.

Playwright (the Python package) drives Debian's Chromium (``/usr/bin/chromium``): no browser is ever
downloaded (no ``playwright install``). Manifest V3 extensions need Chromium's "new" headless mode,
so ``--headless=new`` is passed by hand and Playwright is told ``headless=False``.

- ``ensure_chromium()`` installs Debian's ``chromium`` and ``chromium-l10n`` (its French strings: the
  extension speaks the browser's language) when missing (as root, with apt-get);
- ``ensure_node_modules()`` runs ``npm ci`` in ``extension/`` when its dependencies are missing;
- ``build_copy(dest)`` runs ``extension/build`` on a copy of today's sources in ``dest`` (output in
  ``dest/dist``): the work tree's ``extension/dist`` is never written, so parallel test workers (and other
  test runs on the machine) never rebuild it under each other's browsers;
- ``build_extension()`` builds such a copy once per test process and returns its ``dist/webmail``
  (``built_dist()``: its ``dist`` folder, which also holds ``thunderbird/``);
- ``prepare_extension(dest, extra_matches)`` copies the built extension and adds match patterns to
  its content script and host permissions (a test webmail on ``http://127.0.0.1:PORT``), as IT
  granting another webmail host would;
- ``launch(extension_dir)`` returns ``(context, extension_id)``; ``close(context)`` ends it, and
  ``extension_browser(extension_dir)`` does both around a ``with`` block.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from syslock import file_lock

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium's French UI strings: without them the browser (and so the extension) speaks English
FRENCH_LOCALE = Path("/usr/lib/chromium/locales/fr.pak")
PACKAGES = ("chromium", "chromium-l10n")
LOCK_FILE = Path(tempfile.gettempdir()) / "sidep-test-apt.lock"
# Chromium reads /etc/chromium/policies/managed machine-wide, at start and whenever a file there changes:
# a policy a test writes (test_extension_policy: another helper's address, a force-installed extension)
# reaches every Chromium running on the machine. So each test's Chromium holds POLICY_LOCK shared for its
# whole life (``chromium_running``), and a test writes a policy only under it exclusively (``system_policy``).
POLICY_DIR = Path("/etc/chromium/policies/managed")
POLICY_LOCK = Path(tempfile.gettempdir()) / "sidep-test-chromium-policy.lock"
_writing_policy = False  # this process holds POLICY_LOCK exclusively: its own browsers must not wait for it
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=DisableLoadExtensionCommandLineSwitch,Translate,MediaRouter",
)


class BrowserSetupError(RuntimeError):
    """Chromium, Node.js or the extension's build could not be made ready; the message says why."""


@contextlib.contextmanager
def chromium_running() -> Iterator[None]:
    """Hold this around a Chromium's whole life: no machine-wide test policy appears meanwhile."""
    if _writing_policy:
        yield
        return
    with file_lock(POLICY_LOCK, shared=True):
        yield


@contextlib.contextmanager
def system_policy(name: str, document: dict[str, Any]) -> Iterator[Path]:
    """``document`` as the machine-wide Chromium policy file ``name``, once no other test's Chromium
    runs, for the ``with`` block (this process's own browsers may run in it); removed after."""
    global _writing_policy
    with file_lock(POLICY_LOCK):
        _writing_policy = True
        path = POLICY_DIR / name
        try:
            POLICY_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document), encoding="utf-8")
            yield path
        finally:
            path.unlink(missing_ok=True)
            _writing_policy = False


def _machine_lock() -> contextlib.AbstractContextManager[None]:
    return file_lock(LOCK_FILE)


def _chromium_ready() -> bool:
    return CHROMIUM.exists() and FRENCH_LOCALE.exists()


def ensure_chromium() -> Path:
    """Debian's Chromium with its French strings, installed if missing (root and apt-get needed then)."""
    if _chromium_ready():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BrowserSetupError(
            f"{' and '.join(PACKAGES)} missing and cannot be installed here (needs root and apt-get)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *PACKAGES]
    with _machine_lock():
        if _chromium_ready():
            return CHROMIUM
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200, check=False)
        if proc.returncode != 0:  # package lists may be missing or stale on a fresh machine
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], capture_output=True,
                           text=True, env=env, timeout=600, check=False)
            proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200, check=False)
    if not _chromium_ready():
        raise BrowserSetupError(f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    return CHROMIUM


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise BrowserSetupError("Node.js (node, npm) is needed for the extension's build and tests")
    return node


def ensure_node_modules() -> Path:
    """``extension/node_modules`` as package-lock.json says (``npm ci`` when missing or stale)."""
    _node()
    npm = shutil.which("npm")
    if not npm:
        raise BrowserSetupError("npm is needed to install the extension's development tools (web-ext)")
    marker = EXTENSION / "node_modules" / ".package-lock.json"
    lock = EXTENSION / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return EXTENSION / "node_modules"
    with _machine_lock():
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXTENSION,
                              capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise BrowserSetupError(f"npm ci failed in extension/:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return EXTENSION / "node_modules"


def build_copy(dest: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``node build --quiet *args`` on a copy of extension/ (without node_modules and dist) in ``dest``."""
    shutil.copytree(EXTENSION, dest, ignore=shutil.ignore_patterns("node_modules", "dist", ".git"))
    return subprocess.run([_node(), str(dest / "build"), "--quiet", *args], cwd=dest, capture_output=True,
                          text=True, timeout=120, check=False, env=env)


_built: Path | None = None


def built_dist() -> Path:
    """``dist/`` of today's extension sources, built once per test process in a private folder."""
    global _built
    if _built is None or not (_built / "webmail" / "manifest.json").is_file():
        work = Path(tempfile.mkdtemp(prefix="sidep-extension-"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        proc = build_copy(work / "extension")
        if proc.returncode != 0:
            raise BrowserSetupError(f"extension/build failed:\n{proc.stdout}{proc.stderr}")
        _built = work / "extension" / "dist"
    return _built


def build_extension() -> Path:
    """The unpacked webmail extension of today's sources (``dist/webmail`` of ``built_dist()``)."""
    return built_dist() / "webmail"


def prepare_extension(dest: Path, extra_matches: Sequence[str] = (), source: Path | None = None) -> Path:
    """A copy of the built webmail extension whose content script also runs on ``extra_matches``
    (match patterns such as ``http://127.0.0.1:8080/*``), with the host permissions for them."""
    source = source or build_extension()
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    manifest_path = dest / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    for pattern in extra_matches:
        if pattern not in manifest["host_permissions"]:
            manifest["host_permissions"].append(pattern)
        for script in manifest.get("content_scripts", []):
            if pattern not in script["matches"]:
                script["matches"].append(pattern)
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return dest


_RUNNING: dict[int, tuple[Any, Path, Any]] = {}


def launch(extension_dir: Path, *, lang: str = "fr", timeout_ms: float = 20_000,
           user_data_dir: Path | None = None) -> tuple[Any, str]:
    """Start headless Chromium with the unpacked extension; returns ``(context, extension_id)``.

    The browser speaks ``lang`` (the extension's strings follow the browser's language). End it
    with ``close(context)``, which removes the profile (``user_data_dir``, prepared by the caller —
    for instance with ``NativeMessagingHosts/`` — or a fresh temporary folder).
    """
    from playwright.sync_api import sync_playwright

    extension_dir = Path(extension_dir).resolve()
    chromium = ensure_chromium()
    profile = Path(user_data_dir) if user_data_dir else Path(tempfile.mkdtemp(prefix="sidep-chromium-"))
    running = contextlib.ExitStack()  # released by close(), or below if the launch fails
    running.enter_context(chromium_running())
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=False,  # --headless=new below: MV3 extensions need the new headless mode
            args=[*CHROMIUM_ARGS, f"--lang={lang}", f"--disable-extensions-except={extension_dir}",
                  f"--load-extension={extension_dir}"],
            env={**os.environ, "LANGUAGE": lang, "LANG": f"{lang}_FR.UTF-8" if lang == "fr" else "C.UTF-8"},
            locale="fr-FR" if lang == "fr" else "en-US",
            viewport={"width": 640, "height": 640},
            timeout=timeout_ms,
        )
    except Exception:
        playwright.stop()
        shutil.rmtree(profile, ignore_errors=True)
        running.close()
        raise
    _RUNNING[id(context)] = (playwright, profile, running)
    try:
        workers = context.service_workers or [context.wait_for_event("serviceworker", timeout=timeout_ms)]
        extension_id = workers[0].url.split("/")[2]
    except Exception:
        close(context)
        raise
    return context, extension_id


def close(context: Any) -> None:
    """Close a context from ``launch()``, stop its Playwright and remove its profile."""
    playwright, profile, running = _RUNNING.pop(id(context), (None, None, None))
    try:
        context.close()
    finally:
        if playwright is not None:
            playwright.stop()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)
        if running is not None:
            running.close()


@contextlib.contextmanager
def extension_browser(extension_dir: Path, **kwargs: Any) -> Iterator[tuple[Any, str]]:
    context, extension_id = launch(extension_dir, **kwargs)
    try:
        yield context, extension_id
    finally:
        close(context)


def extension_url(extension_id: str, path: str) -> str:
    return f"chrome-extension://{extension_id}/{path.lstrip('/')}"
