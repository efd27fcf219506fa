// Popup of the « Imprimer le certificat » message display action (Thunderbird): pushes the displayed
// SI-DEP message to sidep-helper and prints its certificate; shows the identity traits printed.

import { frDate } from "../shared/format.js";
import { browserTranslator, localizePage } from "../shared/i18n.js";

const ext = globalThis.messenger ?? globalThis.browser;
const t = browserTranslator(ext);
const SETTINGS_CODES = new Set(["wrong_token", "not_configured", "bad_address", "forbidden"]);

function setStatus(text, state) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.dataset.state = state;
}

async function run() {
  localizePage(document, t);
  const [tab] = await ext.tabs.query({ active: true, currentWindow: true });
  const displayed = tab ? await ext.messageDisplay.getDisplayedMessages(tab.id) : null;
  const messages = Array.isArray(displayed) ? displayed : (displayed && displayed.messages) || [];
  if (!messages.length) {
    setStatus(t("tbNoMessage"), "error");
    return;
  }
  const answer = await ext.runtime.sendMessage({ type: "printMessages", messageIds: messages.map((m) => m.id) });
  if (!answer || !answer.ok) {
    const error = (answer && answer.error) || { text: t("errorHttp", [""]) };
    setStatus(error.text, "error");
    if (SETTINGS_CODES.has(error.code)) {
      const button = document.getElementById("open-settings");
      button.hidden = false;
      button.addEventListener("click", () => ext.runtime.openOptionsPage());
    }
    return;
  }
  const printed = answer.data.printed;
  if (!printed.length) {
    setStatus(t("tbNoMessage"), "error");
    return;
  }
  const failed = printed.find((p) => !p.certificate);
  setStatus(failed ? failed.error : t("contentPrinted"), failed ? "error" : "ok");
  const rows = printed.filter((p) => p.certificate).map(({ certificate: c }) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${c.last_name} ${c.first_name}`;
    li.append(name, ` — ${t("labelBorn")} : ${frDate(c.birth_date)} — ${t("labelDossier")} : ${c.dossier || ""}`);
    return li;
  });
  document.getElementById("printed").replaceChildren(...rows);
  document.body.dataset.ready = "1";
}

run().catch((error) => setStatus(String((error && error.message) || error), "error"));
