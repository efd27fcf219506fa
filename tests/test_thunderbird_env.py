"""The Thunderbird test environment itself (tests/thunderbird.py), with a tiny add-on of our own.

No sidep-helper code here: these tests prove that a real headless Thunderbird starts with a generated
profile, that the messages written to Local Folders are seen through the MailExtension APIs the real
add-on uses (``messages.query``, ``messages.getRaw``, ``folders``), that an unpacked add-on loads from a
proxy file, that managed settings reach ``storage.managed`` (private install and the machine-wide
``/etc/thunderbird/policies`` file), that ``console.log`` shows up, that nothing but the loopback
is reachable, and that an IMAP account on a loopback Dovecot syncs and signals new mail
(``messages.onNewMailReceived``).
"""

from __future__ import annotations

import contextlib
import email
import http.server
import json
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mailgen
import pytest
import thunderbird
from thunderbird import ThunderbirdProcess, make_profile, run_thunderbird

PROBE_ID = "probe@sidep-test.local"
MARKUP = "<img src=x onerror=alert(1)>"


class Collector:
    """A loopback HTTP server receiving what the probe add-on posts: JSON reports and raw messages."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.raw: dict[str, bytes] = {}
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector.headers.append(dict(self.headers))
                if self.path.startswith("/raw/"):
                    collector.raw[urllib.parse.unquote(self.path[5:])] = body
                else:
                    collector.reports.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_report(self, tb: ThunderbirdProcess, kind: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for report in self.reports:
                if report.get("kind") == kind:
                    return report
            if not tb.alive() or time.monotonic() > deadline:
                raise AssertionError(f"no {kind!r} report from the probe add-on after {timeout:.0f} s "
                                     f"(Thunderbird alive: {tb.alive()}); console:\n{tb.tail()}")
            time.sleep(0.1)


PROBE_BACKGROUND = """\
const COLLECTOR = "http://127.0.0.1:%(port)d";
const post = (path, body) => fetch(COLLECTOR + path, {method: "POST", body});

async function allMessages() {
  const out = [];
  let page = await browser.messages.query({});
  for (;;) {
    out.push(...page.messages);
    if (!page.id) return out;
    page = await browser.messages.continueList(page.id);
  }
}

async function snapshot(kind) {
  const report = {kind, browser: await browser.runtime.getBrowserInfo()};
  try {
    const accounts = await browser.accounts.list(true);
    const names = f => [f.path, ...(f.subFolders || []).flatMap(names)];
    report.accounts = accounts.map(a => ({type: a.type, name: a.name, folders: names(a.rootFolder)}));
    report.folderQuery = (await browser.folders.query({})).map(f => f.path);
    report.subFolders = [];
    for (const a of accounts) {
      const subs = await browser.folders.getSubFolders(a.rootFolder.id, true);
      report.subFolders.push(...subs.flatMap(names));
    }
    report.bySubject = (await browser.messages.query({subject: "Projet SI-DEP"})).messages.length;
    const local = accounts.find(a => a.type === "local" || a.type === "none");
    report.inInbox = await browser.messages.query({folderId: local.id + "://Inbox"})
      .then(l => l.messages.length, e => String(e));
    const messages = await allMessages();
    report.messages = messages.map(m => ({id: m.id, subject: m.subject, author: m.author,
      folder: m.folder && m.folder.path, headerMessageId: m.headerMessageId}));
    report.managed = await browser.storage.managed.get().catch(e => ({error: String(e)}));
    report.hostPermission = await browser.permissions.contains({origins: ["http://127.0.0.1/*"]});
    if (kind === "startup") {
      for (const m of messages) {
        const file = await browser.messages.getRaw(m.id, {data_format: "File"});
        await post("/raw/" + encodeURIComponent(m.headerMessageId), file);
      }
      const outside = await fetch("http://192.0.2.1/", {signal: AbortSignal.timeout(10000)})
        .then(r => "reached: " + r.status, e => "blocked: " + e.name);
      report.outside = outside;
    }
  } catch (e) {
    report.error = String(e) + "\\n" + e.stack;
  }
  console.log("probe: " + kind + " " + JSON.stringify({count: (report.messages || []).length, error: report.error}));
  await post("/report", JSON.stringify(report));
}

browser.messages.onNewMailReceived.addListener(async (folder, list) => {
  const subjects = list.messages.map(m => m.subject);
  console.log("probe: new mail in " + folder.path + " " + JSON.stringify(subjects));
  await post("/report", JSON.stringify({kind: "newmail", folder: folder.path, accountId: folder.accountId, subjects}));
}, true);

snapshot("startup").then(() => new Promise(r => setTimeout(r, 3000))).then(() => snapshot("later"));
"""


def write_probe(directory: Path, port: int) -> Path:
    """A 40-line MV3 MailExtension: reads accounts, folders, messages, managed settings, posts them."""
    directory.mkdir(parents=True)
    manifest = {
        "manifest_version": 3,
        "name": "sidep-helper test probe",
        "version": "1.0",
        "browser_specific_settings": {"gecko": {"id": PROBE_ID, "strict_min_version": "128.0"}},
        "permissions": ["accountsRead", "messagesRead", "storage"],
        "host_permissions": ["http://127.0.0.1/*"],
        "background": {"scripts": ["background.js"]},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    (directory / "background.js").write_text(PROBE_BACKGROUND % {"port": port}, encoding="utf-8")
    return directory


def corpus() -> tuple[list[mailgen.CertSpec], list[bytes], list[bytes]]:
    """Inbox: 3 certificates (one with markup in the name) + 2 other mails; Archives/2021: 1 certificate."""
    rng = random.Random(20210622)
    specs = [mailgen.random_spec(rng) for _ in range(2)]
    specs.append(mailgen.random_spec(rng, last_name=MARKUP, first_name="Zoé"))
    inbox = [mailgen.make_message(s) for s in specs] + [mailgen.other_mail(rng, i) for i in range(2)]
    archived = mailgen.random_spec(rng, last_name="ARCHIVÉ")
    specs.append(archived)
    return specs, inbox, [mailgen.make_message(archived, newline="\n", body_kind="html")]


@pytest.fixture(scope="module")
def binary() -> str:
    return thunderbird.ensure_thunderbird()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def message_id(raw: bytes) -> str:
    return email.message_from_bytes(raw)["Message-ID"].strip()


def test_thunderbird_is_installed_esr_128_or_later(binary: str) -> None:
    assert Path(binary).is_file()
    version = thunderbird.thunderbird_version()
    assert int(version.split(".")[0]) >= 128, version


def test_starts_headless_with_local_folders_and_stays_up(binary: str, tmp_path: Path) -> None:
    _, inbox, archived = corpus()
    started = time.monotonic()
    profile = make_profile(tmp_path, extension_dir=None, local_mbox_messages=inbox, imap=None,
                           local_folders={"Archives/2021": archived})
    primed = time.monotonic() - started
    local = profile / "Mail" / "Local Folders"
    assert (local / "Inbox.msf").stat().st_size > 0, "the primer run builds the Inbox summary"
    assert (local / "Archives.sbd" / "2021.msf").stat().st_size > 0

    tb = run_thunderbird(profile, timeout=60)
    try:
        ready = time.monotonic() - tb.started
        time.sleep(5)
        assert tb.alive(), f"Thunderbird exited ({tb.proc.returncode}):\n{tb.tail()}"
        assert tb.errors() == [], "\n".join(tb.errors())
    finally:
        code = tb.stop()
    assert code is not None
    prefs = (profile / "prefs.js").read_text(encoding="utf-8")
    assert 'user_pref("mail.server.server1.type", "none");' in prefs
    assert (local / "Trash").exists(), "Thunderbird created the default folders of Local Folders"
    print(f"\nThunderbird {thunderbird.thunderbird_version()}: profile primed in {primed:.1f} s, "
          f"main window after {ready:.1f} s")


def test_probe_addon_sees_the_messages_and_the_managed_settings(binary: str, tmp_path: Path,
                                                              collector: Collector) -> None:
    specs, inbox, archived = corpus()
    settings = {"helperUrl": "http://127.0.0.1:51789", "token": "t" * 43, "autoIndexOnStartup": True}
    probe = write_probe(tmp_path / "probe", collector.port)
    profile = make_profile(tmp_path, extension_dir=probe, local_mbox_messages=inbox, imap=None,
                           local_folders={"Archives/2021": archived}, managed_settings={PROBE_ID: settings})
    tb = run_thunderbird(profile, timeout=90)
    try:
        startup = collector.wait_report(tb, "startup", timeout=60)
        later = collector.wait_report(tb, "later", timeout=30)
        console = tb.wait_console("probe: later")
        addon = tb.addons()[PROBE_ID]
    finally:
        tb.stop()

    assert "error" not in startup, startup["error"]
    assert startup["browser"]["name"] == "Thunderbird"
    assert addon["active"] and addon["location"] == "app-profile", addon
    # the managed settings of the private install's distribution/policies.json
    assert startup["managed"] == settings
    assert startup["hostPermission"] is True, "MV3 host permission granted without a prompt"
    # every message, in Inbox and in a subfolder, is listed from the very first moment
    expected_ids = {message_id(raw) for raw in inbox + archived}
    assert {m["headerMessageId"].join("<>") for m in startup["messages"]} == expected_ids
    by_folder = {m["folder"] for m in startup["messages"]}
    assert by_folder == {"/Inbox", "/Archives/2021"}, by_folder
    subjects = [m["subject"] for m in startup["messages"]]
    assert sum(s.startswith("[Projet SI-DEP] Certificat de test") for s in subjects) == 4
    assert any(MARKUP in s for s in subjects), "markup in a name is kept as text by Thunderbird"
    # messages.query sees every folder from the first moment, with or without a folderId built from the
    # account id; the folder lists (folders.query, accounts.list(true), getSubFolders) may still show
    # the root folder only at that moment: Thunderbird discovers local subfolders lazily
    assert startup["bySubject"] == 4 and startup["inInbox"] == 5, startup
    print(f"\nfolders at add-on start: folders.query {startup['folderQuery']}, accounts.list(true) "
          f"{[a['folders'] for a in startup['accounts']]}, getSubFolders {startup['subFolders']}")
    assert {"/Inbox", "/Archives", "/Archives/2021"} <= set(later["folderQuery"]), later["folderQuery"]
    assert {"/Inbox", "/Archives/2021"} <= {f for a in later["accounts"] for f in a["folders"]}
    assert console.startswith("probe: later") and '"count":6' in console
    # getRaw gives the bytes of the message as written (Thunderbird adds nothing before the headers
    # but its X-Mozilla-* lines, which mailgen.write_mbox wrote like Thunderbird does)
    for raw in inbox + archived:
        got = collector.raw[message_id(raw).strip("<>")]
        assert raw.rstrip(b"\r\n") in got, message_id(raw)
    assert startup["outside"].startswith("blocked"), startup["outside"]
    origins = {h.get("Origin") for h in collector.headers}
    assert all(o and o.startswith("moz-extension://") for o in origins), origins


def test_machine_wide_policies_file_reaches_storage_managed(binary: str, tmp_path: Path,
                                                            collector: Collector) -> None:
    settings = {"helperUrl": "http://127.0.0.1:1", "token": "from-etc", "autoIndexOnStartup": False}
    before = thunderbird.SYSTEM_POLICIES.read_bytes() if thunderbird.SYSTEM_POLICIES.exists() else None
    probe = write_probe(tmp_path / "probe", collector.port)
    profile = make_profile(tmp_path, extension_dir=probe, local_mbox_messages=None, imap=None)
    with thunderbird.system_policies(thunderbird.policies_document({PROBE_ID: settings})) as path:
        assert path == Path("/etc/thunderbird/policies/policies.json")
        tb = run_thunderbird(profile, timeout=60)
        try:
            startup = collector.wait_report(tb, "startup", timeout=60)
        finally:
            tb.stop()
    after = thunderbird.SYSTEM_POLICIES.read_bytes() if thunderbird.SYSTEM_POLICIES.exists() else None
    assert after == before, "the machine-wide policies file is restored"
    assert startup["managed"] == settings


def test_non_loopback_traffic_goes_to_the_dead_proxy(binary: str, tmp_path: Path, collector: Collector) -> None:
    """Point the lockdown proxy at a listener of ours: the probe's request to 192.0.2.1 lands there."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        received.append(conn.recv(200))

    threading.Thread(target=accept, daemon=True).start()
    probe = write_probe(tmp_path / "probe", collector.port)
    profile = make_profile(tmp_path, extension_dir=probe, local_mbox_messages=None, imap=None,
                           extra_prefs={"network.proxy.http_port": port, "network.proxy.socks_port": port,
                                        "network.proxy.ssl_port": port})
    tb = run_thunderbird(profile, timeout=60)
    try:
        startup = collector.wait_report(tb, "startup", timeout=60)
    finally:
        tb.stop()
        listener.close()
    # plain, or upgraded to https (HTTPS-First) and tunnelled: either way it went to the proxy
    assert any(r.startswith((b"GET http://192.0.2.1/ ", b"CONNECT 192.0.2.1:443 ")) for r in received), received
    assert startup["outside"].startswith("blocked"), startup["outside"]


@pytest.fixture
def mailbox() -> Iterator[Any]:
    """A loopback Dovecot with one mailbox (tests/roundcube.py's; its Roundcube is not used here)."""
    import roundcube

    roundcube.install_packages()
    wm = roundcube.start_webmail()
    yield wm
    wm.stop()


def test_imap_account_syncs_and_new_mail_fires_onNewMailReceived(binary: str, tmp_path: Path,
                                                                collector: Collector, mailbox: Any) -> None:
    """IMAP account on Dovecot (password stored by the primer run): existing mail listed, new mail signalled."""
    rng = random.Random(7)
    before = [mailgen.make_message(mailgen.random_spec(rng)) for _ in range(2)]
    for raw in before:
        mailbox.deliver(raw)
    probe = write_probe(tmp_path / "probe", collector.port)
    profile = make_profile(tmp_path, extension_dir=probe, local_mbox_messages=None,
                           imap={"port": mailbox.imap_port, "user": mailbox.user, "password": mailbox.password})
    tb = run_thunderbird(profile, timeout=120)
    try:
        later = collector.wait_report(tb, "later", timeout=60)
        arrived = mailgen.random_spec(rng, last_name="NOUVEAU")
        delivered_at = time.monotonic()
        mailbox.deliver(mailgen.make_message(arrived))
        deadline = delivered_at + 60
        while not any(r["kind"] == "newmail" and any("NOUVEAU" in s for s in r["subjects"])
                      for r in collector.reports):
            assert time.monotonic() < deadline and tb.alive(), f"no onNewMailReceived for the new mail:\n{tb.tail()}"
            time.sleep(0.2)
        signalled = time.monotonic() - delivered_at
    finally:
        tb.stop()
    assert "error" not in later, later["error"]
    imap = [m for m in later["messages"] if m["folder"] == "/INBOX"]
    assert {m["headerMessageId"] for m in imap} == {message_id(raw).strip("<>") for raw in before}
    new_mail = [r for r in collector.reports if r["kind"] == "newmail"]
    assert all(r["folder"] == "/INBOX" for r in new_mail), new_mail
    print(f"\nonNewMailReceived {signalled:.1f} s after the IMAP APPEND")
