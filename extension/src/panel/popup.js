// The panel: search as you type, check the identity traits, print, open the PDF, hand over; a second
// tab, « À remettre », lists the site's certificates not yet handed over (waiting.js).
//
// Keyboard: the search box has the focus on open; ↓ or Entrée goes to the results (Entrée first runs
// the pending search: a barcode scanner types the dossier number then Entrée and lands on that
// certificate); on a result ↑/↓ move, Entrée prints, Échap goes back to the search box (items.js), and
// typing starts a new search. On the tabs ←/→ switch between « Rechercher » and « À remettre », ↓ goes
// to the list. Tab reaches every button.
// Every value from the helper is written with textContent: never markup.

import { errorMessage } from "../shared/api.js";
import { debounce, emptyMessage, homonymIds } from "../shared/format.js";
import { isDemo, showDemoBanner } from "../shared/demo.js";
import { browserTranslator, localizePage } from "../shared/i18n.js";
import { PairedHelper } from "../shared/pairing.js";
import { PAIRED_KEY, loadSettings } from "../shared/settings.js";
import { makeCards, wireList } from "./items.js";
import { makeWaitingTab } from "./waiting.js";

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
      list.replaceChildren();
      summary.textContent = "";
      summary.dataset.state = "error";
      showError(error);
    }
  })();
  return current;
}

const searchSoon = debounce(search, 200);

const template = $("result-template");
const cards = makeCards({ template, t, ext, client: () => client, helperUrl });
const backToSearch = () => {
  input.focus();
  input.select();
};
const nav = wireList(list, cards, { onEscape: backToSearch });

// --- tabs -----------------------------------------------------------------------------------------------

const tabs = { search: $("tab-search"), waiting: $("tab-waiting") };
const panels = { search: $("search-panel"), waiting: $("waiting-panel") };
const waitingTab = makeWaitingTab({
  ext, t, client: () => client, helperUrl, template, onEscape: () => tabs.waiting.focus(),
});

function activeTab() {
  return document.body.dataset.tab || "search";
}

function showTab(name, { focus = false } = {}) {
  for (const [key, tab] of Object.entries(tabs)) {
    const on = key === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    panels[key].hidden = !on;
  }
  document.body.dataset.tab = name;
  if (focus) tabs[name].focus();
  if (name === "waiting") return waitingTab.load();
  return Promise.resolve();
}

tabs.search.addEventListener("click", () => showTab("search"));
tabs.waiting.addEventListener("click", () => showTab("waiting"));
for (const tab of Object.values(tabs)) {
  tab.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      showTab(activeTab() === "search" ? "waiting" : "search", { focus: true });
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      if (activeTab() === "waiting") waitingTab.focusFirst();
      else goToResults();
    }
  });
}

function render(found, total, q, answer = {}) {
  const homonyms = homonymIds(found);
  const items = found.map((cert) => cards.make(cert, homonyms.has(cert.id)));
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

// --- keyboard and clicks -------------------------------------------------------------------------------

async function goToResults() {
  if (searchSoon.pending()) {
    searchSoon.cancel();
    search();
  }
  await current;
  const first = nav.items()[0];
  if (first) nav.select(first);
}

input.addEventListener("input", () => {
  if (activeTab() !== "search") showTab("search");
  searchSoon();
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    goToResults();
  } else if (event.key === "ArrowDown") {
    event.preventDefault();
    goToResults();
  }
});

// Typing (or a new scan) anywhere but in a field starts a new search.
document.addEventListener("keydown", (event) => {
  const printable = event.key.length === 1 && event.key !== " " && !event.ctrlKey && !event.metaKey && !event.altKey;
  if (!printable || event.target.closest("input, textarea, select")) return;
  event.preventDefault();
  if (activeTab() !== "search") showTab("search");
  input.value = event.key;
  input.focus();
  searchSoon();
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
  if (activeTab() === "waiting") waitingTab.load();
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
