// Options page: helper address, token (given by the pairing host, else pasted), "mon site", extra
// webmails (browsers), indexing of the existing messages (Thunderbird). Values set by IT
// (storage.managed) are shown read-only; a token from the pairing host shows « appairé automatiquement ».

import { errorMessage } from "../shared/api.js";
import { browserTranslator, localizePage } from "../shared/i18n.js";
import { PairedHelper, pairNow, pairingState } from "../shared/pairing.js";
import { loadSettings, normalizeWebmailOrigin, originPattern, saveSettings } from "../shared/settings.js";

const ext = globalThis.messenger ?? globalThis.browser ?? globalThis.chrome;
const isThunderbird = Boolean(globalThis.messenger && globalThis.messenger.messages);
const t = browserTranslator(ext);
const $ = (id) => document.getElementById(id);

const TEXT_FIELDS = ["helperUrl", "token", "site"];
const LABELS = { helperUrl: "optHelperUrl", token: "optToken", site: "optSite", webmailHosts: "optWebmails" };

let managed = new Set();
let builtInPatterns = new Set();

function setResult(el, text, state) {
  el.textContent = text;
  el.dataset.state = state;
}

function markManaged(key, control) {
  const isManaged = managed.has(key);
  const holder = document.querySelector(`[data-key="${key}"]`);
  if (holder) holder.querySelector(".managed").hidden = !isManaged;
  if (control.type === "checkbox") control.disabled = isManaged;
  else control.readOnly = isManaged;
}

async function fill() {
  const loaded = await loadSettings(ext.storage);
  managed = loaded.managed;
  const values = loaded.values;
  for (const key of TEXT_FIELDS) {
    $(key).value = values[key] || "";
    markManaged(key, $(key));
  }
  $("webmailHosts").value = values.webmailHosts.join("\n");
  markManaged("webmailHosts", $("webmailHosts"));
  $("autoIndexOnStartup").checked = values.autoIndexOnStartup;
  markManaged("autoIndexOnStartup", $("autoIndexOnStartup"));
  const pairing = await pairingState(ext.storage);
  $("paired").hidden = !pairing.paired;
  document.body.dataset.paired = pairing.paired ? "1" : "0";
  if (!isThunderbird) await showHosts(values.webmailHosts);
  return values;
}

function formHosts() {
  return $("webmailHosts").value.split(/[\s,;]+/).map(normalizeWebmailOrigin).filter(Boolean);
}

function formValues() {
  const values = {};
  for (const key of TEXT_FIELDS) if (!managed.has(key)) values[key] = $(key).value;
  if (!isThunderbird && !managed.has("webmailHosts")) values.webmailHosts = $("webmailHosts").value;
  if (isThunderbird && !managed.has("autoIndexOnStartup")) values.autoIndexOnStartup = $("autoIndexOnStartup").checked;
  return values;
}

async function save() {
  const { errors } = await saveSettings(formValues(), ext.storage);
  if (errors.length) {
    setResult($("result"), t("optInvalid", [errors.map((k) => t(LABELS[k] || k)).join(", ")]), "error");
    return false;
  }
  await fill();
  return true;
}

// --- webmail hosts (browsers) -----------------------------------------------------------------------------

async function requestHosts(origins) {
  const wanted = origins.map(originPattern).filter((p) => !builtInPatterns.has(p));
  if (!wanted.length || !ext.permissions || !ext.permissions.request) return true;
  try {
    return await ext.permissions.request({ origins: wanted });
  } catch {
    return false;
  }
}

async function showHosts(hosts) {
  const listEl = $("webmail-list");
  const template = $("host-template");
  const rows = [];
  for (const origin of hosts) {
    const pattern = originPattern(origin);
    const li = template.content.firstElementChild.cloneNode(true);
    localizePage(li, t);
    li.querySelector(".host").textContent = origin;
    let allowed = builtInPatterns.has(pattern);
    if (!allowed) {
      try {
        allowed = await ext.permissions.contains({ origins: [pattern] });
      } catch {
        allowed = false;
      }
    }
    li.querySelector(".host-state").textContent = allowed ? t("optWebmailAllowed") : t("optWebmailNotAllowed");
    const allow = li.querySelector(".allow");
    allow.hidden = allowed;
    allow.addEventListener("click", async () => {
      await requestHosts([origin]);
      await showHosts(hosts);
    });
    rows.push(li);
  }
  listEl.replaceChildren(...rows);
}

// --- connection test ----------------------------------------------------------------------------------------

async function testConnection() {
  const button = $("test");
  const result = $("result");
  button.disabled = true;
  setResult(result, t("optTesting"), "busy");
  try {
    if (!(await save())) return;
    const client = new PairedHelper(ext);
    try {
      const status = await client.status(); // pairs first when there is no token
      const health = await client.health();
      const printer = status.printer && status.printer.available
        ? t("optPrinter", [status.printer.name || ""])
        : (status.printer && status.printer.message) || "";
      setResult(result, t("optTestOk", [health.version, String(status.counts.certificates), printer]), "ok");
      await fill(); // the token and address the pairing host may have given
    } catch (error) {
      setResult(result, errorMessage(error, t, { url: client.settings ? client.settings.helperUrl : "" }), "error");
      result.dataset.code = error.code || "error";
    }
  } finally {
    button.disabled = false;
  }
}

// --- Thunderbird: existing messages ----------------------------------------------------------------------

function showIndexStatus(status) {
  const el = $("index-status");
  if (!status) return;
  if (status.error) {
    setResult(el, status.error.text, "error");
  } else if (status.running) {
    setResult(el, t("optIndexRunning", [String(status.seen)]), "busy");
  } else {
    setResult(el, t("optIndexDone", [String(status.seen), String(status.pushed), String(status.skipped)]), "ok");
  }
}

async function showFolders(chosen) {
  const box = $("folders");
  let folders = [];
  try {
    folders = (await ext.folders.query({})).filter((f) => !f.isRoot && !f.isVirtual);
  } catch {
    folders = [];
  }
  const accounts = new Map((await ext.accounts.list(false)).map((a) => [a.id, a.name]));
  const rows = folders.map((folder) => {
    const label = document.createElement("label");
    label.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = folder.id;
    box.checked = chosen.includes(folder.id);
    box.disabled = managed.has("indexFolders");
    box.addEventListener("change", saveFolders);
    label.append(box, ` ${accounts.get(folder.accountId) || ""} ${folder.path || folder.name}`);
    return label;
  });
  box.replaceChildren(...rows);
}

async function saveFolders() {
  const chosen = Array.from(document.querySelectorAll("#folders input:checked"), (el) => el.value);
  await saveSettings({ indexFolders: chosen }, ext.storage);
}

async function indexExisting() {
  const button = $("index");
  button.disabled = true;
  setResult($("index-status"), t("optIndexRunning", ["0"]), "busy");
  try {
    const chosen = Array.from(document.querySelectorAll("#folders input:checked"), (el) => el.value);
    const answer = await ext.runtime.sendMessage({ type: "indexExisting", folderIds: chosen });
    showIndexStatus(answer && answer.data);
  } finally {
    button.disabled = false;
  }
}

// --- start -----------------------------------------------------------------------------------------------

async function start() {
  document.documentElement.lang = (ext.i18n.getUILanguage() || "fr").split("-")[0];
  localizePage(document, t);
  builtInPatterns = new Set((ext.runtime.getManifest().content_scripts || []).flatMap((c) => c.matches || []));
  $("webmail-section").hidden = isThunderbird;
  $("thunderbird-section").hidden = !isThunderbird;
  let values = await fill();
  if (!values.token && !managed.has("token")) {
    try {
      await pairNow(ext); // the pairing host, when installed, gives the token: nothing to paste
      values = await fill();
    } catch {
      // no host: the token is pasted by hand (the field stays empty)
    }
  }

  $("settings").addEventListener("submit", async (event) => {
    event.preventDefault();
    const hosts = isThunderbird || managed.has("webmailHosts") ? [] : formHosts();
    if (hosts.length) await requestHosts(hosts); // first: the browser asks within the click
    if (await save()) setResult($("result"), t("optSaved"), "ok");
  });
  $("test").addEventListener("click", testConnection);
  $("show-token").addEventListener("click", () => {
    const token = $("token");
    token.type = token.type === "password" ? "text" : "password";
  });
  $("token").addEventListener("paste", () => {
    // a pasted token often carries a newline or spaces: saveSettings trims it
    setTimeout(() => ($("token").value = $("token").value.trim()), 0);
  });

  if (isThunderbird) {
    await showFolders(values.indexFolders);
    $("index").addEventListener("click", indexExisting);
    $("autoIndexOnStartup").addEventListener("change", () => save());
    const stored = await ext.storage.local.get("indexStatus");
    showIndexStatus(stored.indexStatus);
    ext.storage.onChanged.addListener((changes, area) => {
      if (area === "local" && changes.indexStatus) showIndexStatus(changes.indexStatus.newValue);
    });
  }
  document.body.dataset.ready = "1";
}

start();
