// The panel: search as you type, check the identity traits, print, open the PDF, hand over.
//
// Keyboard: the search box has the focus on open; ↓ or Entrée goes to the results (Entrée first runs
// the pending search: a barcode scanner types the dossier number then Entrée and lands on that
// certificate); on a result ↑/↓ move, Entrée prints, Échap goes back to the search box, and typing
// starts a new search. Tab reaches every button.
// Every value from the helper is written with textContent: never markup.

import { errorMessage } from "../shared/api.js";
import {
  debounce,
  emptyMessage,
  frDate,
  frDateTime,
  homonymIds,
  resultLabel,
  sexLabel,
  siteLabel,
  stateKind,
  stateLabel,
} from "../shared/format.js";
import { isDemo, showDemoBanner } from "../shared/demo.js";
import { browserTranslator, localizePage } from "../shared/i18n.js";
import { PairedHelper } from "../shared/pairing.js";
import { PAIRED_KEY, loadSettings } from "../shared/settings.js";

const ext = globalThis.browser ?? globalThis.chrome;
const t = browserTranslator(ext);
const LIMIT = 20;

const $ = (id) => document.getElementById(id);
const input = $("q");
const list = $("results");
const summary = $("summary");
const onlySite = $("only-site");
const onlyToDeliver = $("only-to-deliver");

let settings = null;
let client = null;
let results = [];
let seq = 0;
let current = Promise.resolve();

// --- settings ------------------------------------------------------------------------------------------

async function applySettings() {
  ({ values: settings } = await loadSettings(ext.storage));
  client = new PairedHelper(ext); // asks the pairing host when there is no token, or after a 401
  const siteFilter = $("site-filter");
  siteFilter.hidden = !settings.site;
  $("only-site-label").textContent = t("onlyMySite", [settings.site]);
}

/** The « DÉMO — certificats fictifs » banner when the helper runs « serve --demo ». */
async function refreshDemo() {
  let health = null;
  try {
    health = await client.health();
  } catch {
    health = null; // not running: the search shows the error
  }
  showDemoBanner($("demo-banner"), isDemo(health), t);
}

// --- messages -------------------------------------------------------------------------------------------

const SETTINGS_CODES = new Set(["wrong_token", "not_configured", "not_paired", "bad_address", "forbidden"]);

function helperUrl() {
  return (client && client.settings && client.settings.helperUrl) || (settings ? settings.helperUrl : "");
}

function showError(error) {
  const box = $("message");
  const action = $("message-action");
  box.hidden = false;
  box.dataset.code = (error && error.code) || "error";
  $("message-text").textContent = errorMessage(error, t, { url: helperUrl() });
  action.hidden = false;
  if (SETTINGS_CODES.has(error && error.code)) {
    action.textContent = t("openSettings");
    action.onclick = () => ext.runtime.openOptionsPage();
  } else {
    action.textContent = t("retry");
    action.onclick = () => search();
  }
}

function clearError() {
  const box = $("message");
  box.hidden = true;
  delete box.dataset.code;
}

// --- search ---------------------------------------------------------------------------------------------

function search() {
  const q = input.value.trim();
  const mine = ++seq;
  summary.textContent = t("searching");
  summary.dataset.state = "busy";
  current = (async () => {
    try {
      const answer = await client.search({
        q,
        site: settings.site && onlySite.checked ? settings.site : "",
        limit: LIMIT,
        status: onlyToDeliver.checked ? "to_deliver" : "all",
      });
      if (mine !== seq) return;
      clearError();
      render(answer.results || [], answer.total || 0, q, answer);
    } catch (error) {
      if (mine !== seq) return;
      results = [];
      list.replaceChildren();
      summary.textContent = "";
      summary.dataset.state = "error";
      showError(error);
    }
  })();
  return current;
}

const searchSoon = debounce(search, 200);

function render(found, total, q, answer = {}) {
  results = found;
  const homonyms = homonymIds(found);
  const items = found.map((cert) => makeItem(cert, homonyms.has(cert.id)));
  list.replaceChildren(...items);
  if (found.length === 0) {
    summary.textContent = emptyMessage(answer, q, t);
    summary.dataset.state = "empty";
  } else if (!q) {
    summary.textContent = t("recentTitle");
    summary.dataset.state = "recent";
  } else {
    summary.textContent = total > found.length ? t("resultsShown", [String(found.length), String(total)])
      : t("resultsTotal", [String(total)]);
    summary.dataset.state = "results";
  }
  if (items.length) items[0].tabIndex = 0; // one stop for Tab into the list
}

// --- one result -----------------------------------------------------------------------------------------

const template = $("result-template");

function makeItem(cert, homonym) {
  const li = template.content.firstElementChild.cloneNode(true);
  localizePage(li, t);
  li.dataset.id = String(cert.id);
  fillItem(li, cert, homonym);
  return li;
}

function setText(li, selector, text) {
  li.querySelector(selector).textContent = text || "—";
}

function fillItem(li, cert, homonym = li.classList.contains("homonym")) {
  li.dataset.state = stateKind(cert);
  li.classList.toggle("homonym", homonym);
  li.classList.toggle("superseded", Boolean(cert.superseded));
  li.classList.toggle("outcome-positive", cert.outcome === "positive");
  setText(li, ".last-name", cert.last_name);
  setText(li, ".first-name", cert.first_name);
  li.querySelector(".homonym-badge").hidden = !homonym;
  const superseded = li.querySelector(".superseded-badge");
  superseded.hidden = !cert.superseded;
  superseded.textContent = cert.superseded ? t("stateSuperseded") : "";
  li.querySelector(".pdf-only-badge").hidden = !cert.pdf_only;
  setText(li, ".birth", frDate(cert.birth_date));
  setText(li, ".sex", sexLabel(cert.sex, t));
  setText(li, ".dossier", cert.dossier);
  setText(li, ".site", siteLabel(cert));
  setText(li, ".sampled", frDateTime(cert.sampled_at, t));
  const result = li.querySelector(".result-value");
  result.textContent = resultLabel(cert, t);
  result.title = cert.result || "";
  result.dataset.outcome = cert.outcome || "unknown";
  const state = li.querySelector(".state");
  state.textContent = stateLabel(cert, t);
  state.dataset.state = stateKind(cert);
  const delivered = Boolean(cert.delivered_at);
  li.querySelector(".deliver-group").hidden = delivered;
  li.querySelector(".undo").hidden = !delivered;
  fillVerification(li, cert.verification);
  li.setAttribute("aria-label", `${cert.last_name} ${cert.first_name}, ${frDate(cert.birth_date)}`);
}

// Barcode verification: `mismatch` and `invalid_signature` show what differs and need an explicit
// confirmation before printing (the API refuses the print without it, 409).
const NEEDS_CONFIRMATION = new Set(["mismatch", "invalid_signature"]);
const VERIFICATION_LABELS = {
  verified: "verificationVerified",
  mismatch: "verificationMismatch",
  unverifiable: "verificationUnverifiable",
  invalid_signature: "verificationInvalid",
};

function fillVerification(li, verification) {
  const box = li.querySelector(".verification");
  const status = verification && VERIFICATION_LABELS[verification.status] ? verification.status : "";
  box.hidden = !status;
  box.dataset.status = status;
  li.dataset.verification = status;
  li.querySelector(".verification-label").textContent = status ? t(VERIFICATION_LABELS[status]) : "";
  const diffs = li.querySelector(".verification-diffs");
  diffs.replaceChildren();
  for (const d of (status === "mismatch" && verification.differences) || []) {
    const item = document.createElement("li");
    item.textContent = t("verificationDifference", [d.label || d.field, String(d.certificate), String(d.barcode)]);
    diffs.append(item);
  }
  if (!NEEDS_CONFIRMATION.has(status)) li.querySelector(".confirm-box").hidden = true;
}

function update(li, cert) {
  const i = results.findIndex((c) => c.id === cert.id);
  if (i >= 0) results[i] = cert;
  fillItem(li, cert);
}

function feedback(li, text, kind) {
  const el = li.querySelector(".feedback");
  el.textContent = text;
  el.dataset.state = kind;
}

async function act(li, button, work) {
  if (button) button.disabled = true;
  li.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (error) {
    feedback(li, errorMessage(error, t, { url: helperUrl() }), "error");
    li.dataset.error = (error && error.code) || "error";
  } finally {
    if (button) button.disabled = false;
    li.removeAttribute("aria-busy");
  }
}

function printItem(li, { confirmed = false } = {}) {
  const id = Number(li.dataset.id);
  const confirmBox = li.querySelector(".confirm-box");
  if (!confirmed && NEEDS_CONFIRMATION.has(li.dataset.verification)) {
    confirmBox.hidden = false; // one click (or Entrée) never prints it: ask first
    feedback(li, t("confirmPrintNeeded"), "error");
    li.querySelector(".confirm-cancel").focus();
    return Promise.resolve();
  }
  confirmBox.hidden = true;
  return act(li, li.querySelector(".print"), async () => {
    delete li.dataset.error;
    feedback(li, t("printing"), "busy");
    const answer = await client.print(id, { confirmUnverified: confirmed });
    li.dataset.job = answer.job;
    update(li, answer.certificate);
    feedback(li, t("printedOk", [answer.printer]), "ok");
  });
}

function deliverItem(li) {
  const id = Number(li.dataset.id);
  const initials = li.querySelector(".initials").value;
  return act(li, li.querySelector(".deliver"), async () => {
    const cert = await client.delivered(id, initials);
    update(li, cert);
    feedback(li, t("deliveredOk"), "ok");
    li.querySelector(".undo").focus();
  });
}

function undoItem(li) {
  const id = Number(li.dataset.id);
  return act(li, li.querySelector(".undo"), async () => {
    const cert = await client.undoDelivered(id);
    update(li, cert);
    feedback(li, t("undoneOk"), "ok");
    li.querySelector(".deliver").focus();
  });
}

function openPdf(li) {
  const url = ext.runtime.getURL(`src/viewer/pdf.html?id=${encodeURIComponent(li.dataset.id)}`);
  ext.tabs.create({ url });
}

// --- keyboard and clicks -------------------------------------------------------------------------------

function items() {
  return Array.from(list.children);
}

function select(li) {
  if (!li) return;
  for (const other of items()) {
    other.tabIndex = other === li ? 0 : -1;
    other.classList.toggle("selected", other === li);
    other.removeAttribute("aria-current");
  }
  li.setAttribute("aria-current", "true");
  li.focus();
  li.scrollIntoView({ block: "nearest" });
}

function move(from, delta) {
  const all = items();
  const i = all.indexOf(from);
  const next = all[Math.max(0, Math.min(all.length - 1, i + delta))];
  if (next) select(next);
}

async function goToResults() {
  if (searchSoon.pending()) {
    searchSoon.cancel();
    search();
  }
  await current;
  const first = items()[0];
  if (first) select(first);
}

input.addEventListener("input", () => searchSoon());
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    goToResults();
  } else if (event.key === "ArrowDown") {
    event.preventDefault();
    goToResults();
  }
});

list.addEventListener("keydown", (event) => {
  const li = event.target.closest(".result");
  if (!li) return;
  if (event.target.classList.contains("initials") && event.key === "Enter") {
    event.preventDefault();
    deliverItem(li);
    return;
  }
  if (event.target !== li) return; // buttons and fields keep their own keys
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    move(li, event.key === "ArrowDown" ? 1 : -1);
  } else if (event.key === "Enter") {
    event.preventDefault();
    printItem(li);
  } else if (event.key === "Escape") {
    event.preventDefault();
    input.focus();
    input.select();
  }
});

// Typing (or a new scan) anywhere but in a field starts a new search.
document.addEventListener("keydown", (event) => {
  const printable = event.key.length === 1 && event.key !== " " && !event.ctrlKey && !event.metaKey && !event.altKey;
  if (!printable || event.target.closest("input, textarea, select")) return;
  event.preventDefault();
  input.value = event.key;
  input.focus();
  searchSoon();
});

list.addEventListener("click", (event) => {
  const li = event.target.closest(".result");
  if (!li) return;
  const button = event.target.closest("button");
  if (!button) {
    if (event.target.closest("input")) return;
    select(li);
    return;
  }
  if (button.classList.contains("print")) printItem(li);
  else if (button.classList.contains("confirm-print")) printItem(li, { confirmed: true });
  else if (button.classList.contains("confirm-cancel")) {
    li.querySelector(".confirm-box").hidden = true;
    feedback(li, "", "");
    li.focus();
  }
  else if (button.classList.contains("pdf")) openPdf(li);
  else if (button.classList.contains("deliver")) deliverItem(li);
  else if (button.classList.contains("undo")) undoItem(li);
});

list.addEventListener("focusin", (event) => {
  const li = event.target.closest(".result");
  if (li && event.target === li) {
    for (const other of items()) other.classList.toggle("selected", other === li);
  }
});

onlySite.addEventListener("change", () => search());
onlyToDeliver.addEventListener("change", () => search());
$("open-settings").addEventListener("click", () => ext.runtime.openOptionsPage());

ext.storage.onChanged.addListener(async (changes, area) => {
  if (area !== "local" && area !== "managed") return;
  if (!["helperUrl", "token", "site"].some((k) => k in changes)) return;
  await applySettings();
  await refreshDemo();
  if (!(changes[PAIRED_KEY] && changes[PAIRED_KEY].newValue)) search(); // pairing happens within a search
});

// --- start ----------------------------------------------------------------------------------------------

async function start() {
  document.documentElement.lang = (ext.i18n.getUILanguage() || "fr").split("-")[0];
  localizePage(document, t);
  await applySettings();
  input.focus();
  await refreshDemo();
  await search();
  document.body.dataset.ready = "1";
}

start();
