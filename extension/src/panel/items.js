// One certificate in a list of the panel (search results, « À remettre »): its card, its actions
// (print, open the PDF, hand over, undo) and the keyboard of the list it sits in.
//
// Keyboard on a card: ↑/↓ move, Entrée prints, Échap calls the list's `onEscape`; Entrée in the
// initials field hands over. Tab reaches every button.
// Every value from the helper is written with textContent: never markup.

import { errorMessage } from "../shared/api.js";
import {
  frDate, frDateTime, receivedLabel, resultLabel, sexLabel, siteLabel, stateKind, stateLabel,
} from "../shared/format.js";
import { localizePage } from "../shared/i18n.js";

// Barcode verification: `mismatch` and `invalid_signature` show what differs and need an explicit
// confirmation before printing (the API refuses the print without it, 409).
const NEEDS_CONFIRMATION = new Set(["mismatch", "invalid_signature"]);
const VERIFICATION_LABELS = {
  verified: "verificationVerified",
  mismatch: "verificationMismatch",
  unverifiable: "verificationUnverifiable",
  invalid_signature: "verificationInvalid",
};

/**
 * The cards of one list.
 * @param {{template: HTMLTemplateElement, t: Function, ext: object, client: () => object,
 *          helperUrl: () => string, onChange?: (li: HTMLElement, cert: object, action: string) => void}} options
 */
export function makeCards({ template, t, ext, client, helperUrl, onChange = () => {} }) {
  function setText(li, selector, text) {
    li.querySelector(selector).textContent = text || "—";
  }

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

  function fill(li, cert, homonym = li.classList.contains("homonym")) {
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
    li.querySelector(".received-trait").hidden = !cert.received_at; // the « À remettre » list only
    setText(li, ".received", receivedLabel(cert.received_at, t));
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

  function make(cert, homonym = false) {
    const li = template.content.firstElementChild.cloneNode(true);
    localizePage(li, t);
    li.dataset.id = String(cert.id);
    fill(li, cert, homonym);
    return li;
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

  function print(li, { confirmed = false } = {}) {
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
      const answer = await client().print(id, { confirmUnverified: confirmed });
      li.dataset.job = answer.job;
      fill(li, answer.certificate);
      feedback(li, t("printedOk", [answer.printer]), "ok");
      onChange(li, answer.certificate, "print");
    });
  }

  function deliver(li) {
    const id = Number(li.dataset.id);
    const initials = li.querySelector(".initials").value;
    return act(li, li.querySelector(".deliver"), async () => {
      const cert = await client().delivered(id, initials);
      fill(li, cert);
      feedback(li, t("deliveredOk"), "ok");
      li.querySelector(".undo").focus();
      onChange(li, cert, "delivered");
    });
  }

  function undo(li) {
    const id = Number(li.dataset.id);
    return act(li, li.querySelector(".undo"), async () => {
      const cert = await client().undoDelivered(id);
      fill(li, cert);
      feedback(li, t("undoneOk"), "ok");
      li.querySelector(".deliver").focus();
      onChange(li, cert, "undo");
    });
  }

  function openPdf(li) {
    const url = ext.runtime.getURL(`src/viewer/pdf.html?id=${encodeURIComponent(li.dataset.id)}`);
    ext.tabs.create({ url });
  }

  return { make, fill, feedback, print, deliver, undo, openPdf };
}

/** Keyboard and clicks of a list of cards; `onEscape` runs on Échap from a card. */
export function wireList(list, cards, { onEscape }) {
  const items = () => Array.from(list.children).filter((li) => li.classList.contains("result"));

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

  list.addEventListener("keydown", (event) => {
    const li = event.target.closest(".result");
    if (!li) return;
    if (event.target.classList.contains("initials") && event.key === "Enter") {
      event.preventDefault();
      cards.deliver(li);
      return;
    }
    if (event.target !== li) return; // buttons and fields keep their own keys
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      move(li, event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter") {
      event.preventDefault();
      cards.print(li);
    } else if (event.key === "Escape") {
      event.preventDefault();
      onEscape();
    }
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
    if (button.classList.contains("print")) cards.print(li);
    else if (button.classList.contains("confirm-print")) cards.print(li, { confirmed: true });
    else if (button.classList.contains("confirm-cancel")) {
      li.querySelector(".confirm-box").hidden = true;
      cards.feedback(li, "", "");
      li.focus();
    } else if (button.classList.contains("pdf")) cards.openPdf(li);
    else if (button.classList.contains("deliver")) cards.deliver(li);
    else if (button.classList.contains("undo")) cards.undo(li);
  });

  list.addEventListener("focusin", (event) => {
    const li = event.target.closest(".result");
    if (li && event.target === li) {
      for (const other of items()) other.classList.toggle("selected", other === li);
    }
  });

  return { items, select };
}
