// Content script for Roundcube webmails (Mailiz and other MSSanté webmails).
//
// On a displayed SI-DEP certificate message (the "_action=show" page or the preview frame), adds an
// « Imprimer le certificat » button next to the subject. The message source is read same-origin with
// the user's session (?_action=viewsource) and handed to the background, which pushes it to
// sidep-helper (POST /api/v1/messages: the answer names the certificate) and, on click, prints it.
// Content scripts never call the helper themselves: the browser blocks them from the loopback.
"use strict";
(function () {
  if (globalThis.__sidepHelperContent) return;
  globalThis.__sidepHelperContent = true;

  const rc = globalThis.SidepRoundcube;
  const sidep = globalThis.SidepMessage;
  const ext = globalThis.browser ?? globalThis.chrome;
  const BUTTON_ID = "sidep-helper-print";
  const STATUS_ID = "sidep-helper-status";
  const t = (key, subs) => ext.i18n.getMessage(key, subs) || key;

  async function send(message) {
    try {
      const answer = await ext.runtime.sendMessage(message);
      return answer || { ok: false, error: { code: "extension", text: t("errorHttp", [""]) } };
    } catch (err) {
      return { ok: false, error: { code: "extension", text: String(err && err.message ? err.message : err) } };
    }
  }

  // Firefox: content.fetch is the page's own fetch (same origin, the user's cookies).
  const pageFetch = (globalThis.content && typeof globalThis.content.fetch === "function")
    ? globalThis.content.fetch.bind(globalThis.content)
    : globalThis.fetch.bind(globalThis);

  async function readSource(ref) {
    const response = await pageFetch(rc.viewSourceUrl(location.href, ref), { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(t("contentSourceUnavailable", [String(response.status)]));
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length === 0) throw new Error(t("contentSourceUnavailable", ["0"]));
    return rc.bytesToBase64(bytes);
  }

  async function pushDisplayed(ref) {
    let raw;
    try {
      raw = await readSource(ref);
    } catch (err) {
      return { ok: false, error: { code: "source", text: String(err && err.message ? err.message : err) } };
    }
    return send({ type: "pushMessage", raw });
  }

  function setStatus(status, text, kind) {
    status.textContent = text;
    status.dataset.state = kind;
  }

  function install(subjectEl, ref) {
    const box = document.createElement("span");
    box.className = "sidep-helper-box";
    const button = document.createElement("button");
    button.type = "button";
    button.id = BUTTON_ID;
    button.className = "sidep-helper-print button";
    button.textContent = t("contentPrintButton");
    button.title = t("contentPrintTitle");
    const status = document.createElement("span");
    status.id = STATUS_ID;
    status.className = "sidep-helper-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    box.append(button, status);
    subjectEl.insertAdjacentElement("afterend", box);

    let pushed = pushDisplayed(ref);
    pushed.then((answer) => {
      button.dataset.ready = answer && answer.ok ? "1" : "0";
      if (answer && answer.ok && answer.data && answer.data.certificate) {
        const cert = answer.data.certificate;
        if (cert.print_count > 0 || cert.delivered_at) setStatus(status, answer.data.stateText || "", "info");
      } else if (answer && !answer.ok && answer.error && answer.error.code !== "helper_not_running") {
        setStatus(status, answer.error.text, "error");
      }
    });

    button.addEventListener("click", async () => {
      button.disabled = true;
      setStatus(status, t("contentPrinting"), "busy");
      try {
        let answer = await pushed;
        if (!answer || !answer.ok) {
          pushed = pushDisplayed(ref); // the helper may have been started since
          answer = await pushed;
        }
        if (!answer || !answer.ok) {
          setStatus(status, (answer && answer.error && answer.error.text) || t("errorHttp", [""]), "error");
          return;
        }
        const id = answer.data.certificateId;
        if (id == null) {
          setStatus(status, answer.data.reasonText || t("contentNotCertificate"), "error");
          return;
        }
        const printed = await send({ type: "print", id });
        if (printed && printed.ok) setStatus(status, t("contentPrinted"), "ok");
        else setStatus(status, (printed && printed.error && printed.error.text) || t("errorHttp", [""]), "error");
      } finally {
        button.disabled = false;
      }
    });
  }

  function scriptTexts() {
    return Array.from(document.querySelectorAll("script:not([src])"), (s) => s.textContent || "");
  }

  function check() {
    if (document.getElementById(BUTTON_ID)) return true;
    if (!rc.isRoundcubeDocument(document)) return false;
    const subjectEl = rc.findSubjectElement(document);
    if (!subjectEl || !sidep.isCertificateSubject(subjectEl.textContent)) return false;
    const ref = rc.messageRef(location.href, scriptTexts());
    if (!ref) return false;
    install(subjectEl, ref);
    return true;
  }

  if (!check() && document.body && typeof MutationObserver === "function") {
    // Headers drawn after load (skins, plugins): look again for a little while.
    let timer = null;
    const observer = new MutationObserver(() => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        if (check()) observer.disconnect();
      }, 150);
    });
    observer.observe(document.body, { childList: true, subtree: true });
    setTimeout(() => observer.disconnect(), 30000);
  }
})();
