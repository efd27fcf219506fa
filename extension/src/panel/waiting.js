// The « À remettre » tab: the site's certificates not yet handed over, oldest arrival first
// (GET /api/v1/report/waiting), each with the same card and actions as a search result.
//
// Which site: the « Mon site » setting (set by IT through policy, or by the desk in the options); when
// it is empty, the only site of the directory; when the directory has several sites, the desk chooses
// one here and the choice is saved as « Mon site » (the search's "Mon site seulement" follows it). A lab
// without a site directory sees all its waiting certificates.
// A certificate handed over from the tab stays shown (greyed, with « Annuler ») until the list is
// loaded again; the count drops at once. Printing it keeps it in the list: printed is not handed over.
// Every value from the helper is written with textContent: never markup.

import { errorMessage } from "../shared/api.js";
import { loadSettings, saveSettings } from "../shared/settings.js";
import { makeCards, wireList } from "./items.js";

const LIMIT = 200;

export function makeWaitingTab({ ext, t, client, helperUrl, template, onEscape }) {
  const $ = (id) => document.getElementById(id);
  const list = $("waiting-list");
  const summary = $("waiting-summary");
  const chooser = $("waiting-site");
  let count = 0;
  let shown = 0;
  let seq = 0;

  const cards = makeCards({
    template, t, ext, client, helperUrl,
    onChange: (li, cert) => {
      const waitingNow = !cert.delivered_at;
      if ((li.dataset.waiting === "1") !== waitingNow) {
        count += waitingNow ? 1 : -1;
        shown += waitingNow ? 1 : -1;
        showCount();
      }
      li.dataset.waiting = waitingNow ? "1" : "0";
      li.classList.toggle("handed-over", !waitingNow);
    },
  });
  const nav = wireList(list, cards, { onEscape });

  function say(text, state) {
    summary.textContent = text;
    summary.dataset.state = state;
  }

  function showCount() {
    if (count === 0) say(t("waitingNone"), "empty");
    else if (count > shown) say(t("waitingShown", [String(shown), String(count)]), "results");
    else say(t("waitingTotal", [String(count)]), "results");
  }

  function showSite(sites, site, managed) {
    const box = $("waiting-site-box");
    box.hidden = managed || sites.length < 2;
    const options = [new Option(t("waitingChooseOption"), "")];
    for (const s of sites) options.push(new Option(s.name ? `${s.finess} — ${s.name}` : s.finess, s.finess));
    chooser.replaceChildren(...options);
    chooser.value = sites.some((s) => s.finess === site) ? site : "";
    const name = (sites.find((s) => s.finess === site) || {}).name || "";
    $("waiting-site-label").textContent = box.hidden && site ? t("waitingSiteIs", [name ? `${site} (${name})` : site]) : "";
  }

  async function load() {
    const mine = ++seq;
    const message = $("waiting-message");
    say(t("searching"), "busy");
    try {
      const { values, managed } = await loadSettings(ext.storage);
      let site = values.site;
      let answer = await client().waiting({ site, limit: LIMIT });
      const sites = answer.sites || [];
      if (!site && sites.length === 1) {
        site = sites[0].finess;
        answer = await client().waiting({ site, limit: LIMIT });
      }
      if (mine !== seq) return;
      message.hidden = true;
      showSite(sites, site, managed.has("site"));
      if (!site && sites.length > 1) {
        list.replaceChildren();
        say(t("waitingChooseSite"), "choose");
        return;
      }
      const items = (answer.results || []).map((cert) => {
        const li = cards.make(cert);
        li.dataset.waiting = "1";
        return li;
      });
      list.replaceChildren(...items);
      if (items.length) items[0].tabIndex = 0; // one stop for Tab into the list
      count = answer.total || 0;
      shown = items.length;
      showCount();
    } catch (error) {
      if (mine !== seq) return;
      list.replaceChildren();
      say("", "error");
      message.hidden = false;
      $("waiting-message-text").textContent = errorMessage(error, t, { url: helperUrl() });
    } finally {
      if (mine === seq) document.body.dataset.waitingReady = String(mine);
    }
  }

  chooser.addEventListener("change", async () => {
    await saveSettings({ site: chooser.value });
    await load();
    if (chooser.value) chooser.focus();
  });
  $("waiting-refresh").addEventListener("click", () => load());

  /** ↓ from the tab: to the first certificate of the list. */
  function focusFirst() {
    nav.select(nav.items()[0]);
  }

  return { load, focusFirst };
}
