// Roundcube page knowledge for the content script, as plain functions (unit tested in Node).
// Classic script and ES module at once (no import/export): defines globalThis.SidepRoundcube.
//
// A content script lives in an isolated world: it cannot see window.rcmail. Roundcube is recognised
// by its DOM (body.task-mail, #messagestack, #message-header, .rcmail…) and the displayed message by
// the page address (_uid, _mbox: "_action=show" pages and the "_action=preview" frame of the elastic
// skin) or, failing that, by the rcmail.set_env({...}) call in the page's inline script.
"use strict";
(function (root) {
  const ROUNDCUBE_SELECTORS = [
    "body.task-mail",
    "#messagestack",
    "#message-header",
    "#messageheader",
    "#messagecontframe",
    ".rcmail",
    "#rcmbody",
    "#layout-content",
  ];
  const SUBJECT_SELECTORS = [
    "#message-header h2.subject",
    "#messageheader h2.subject",
    "h2.subject",
    ".header-headline .subject",
    "#message-header .subject",
    ".subject",
  ];

  function isRoundcubeDocument(doc) {
    if (!doc || !doc.querySelector) return false;
    return ROUNDCUBE_SELECTORS.some((sel) => doc.querySelector(sel) !== null);
  }

  function findSubjectElement(doc) {
    for (const sel of SUBJECT_SELECTORS) {
      for (const el of doc.querySelectorAll(sel)) {
        // never a subject of the message list (main page): only the displayed message's header
        if (el.closest && el.closest("#messagelist, .messagelist, .records-table, #messagelist-content")) continue;
        if (String(el.textContent || "").trim()) return el;
      }
    }
    return null;
  }

  /** {uid, mbox, action} from a Roundcube address (_uid and _mbox parameters), or null. */
  function refFromUrl(href) {
    let url;
    try {
      url = new URL(href);
    } catch (e) {
      return null;
    }
    const uid = url.searchParams.get("_uid");
    if (!uid || !/^[0-9]+(\.[0-9.]+)?$/.test(uid)) return null;
    return { uid, mbox: url.searchParams.get("_mbox") || "INBOX", action: url.searchParams.get("_action") || "" };
  }

  function readJsonString(text, key) {
    const re = new RegExp('"' + key + '"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*"|[0-9]+)');
    const m = re.exec(text);
    if (!m) return null;
    try {
      return String(JSON.parse(m[1]));
    } catch (e) {
      return null;
    }
  }

  /** {uid, mbox} from the inline scripts' rcmail.set_env({"uid":…, "mailbox":…}), or null. */
  function refFromScripts(texts) {
    for (const text of texts || []) {
      if (!text || text.indexOf("set_env") < 0) continue;
      const uid = readJsonString(text, "uid");
      if (!uid || !/^[0-9]+$/.test(uid)) continue;
      return { uid, mbox: readJsonString(text, "mailbox") || "INBOX", action: readJsonString(text, "action") || "" };
    }
    return null;
  }

  /** The displayed message of this document (address first, then rcmail env). */
  function messageRef(href, scriptTexts) {
    return refFromUrl(href) || refFromScripts(scriptTexts);
  }

  /** Same-origin address of the raw message: ?_task=mail&_action=viewsource&_uid=…&_mbox=… */
  function viewSourceUrl(href, ref) {
    const url = new URL(href);
    const out = new URL(url.origin + url.pathname);
    out.searchParams.set("_task", "mail");
    out.searchParams.set("_action", "viewsource");
    out.searchParams.set("_uid", ref.uid);
    out.searchParams.set("_mbox", ref.mbox);
    return out.toString();
  }

  /** Base64 of bytes, in chunks (messages of several MB). */
  function bytesToBase64(bytes) {
    let binary = "";
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
  }

  root.SidepRoundcube = Object.freeze({
    isRoundcubeDocument,
    findSubjectElement,
    refFromUrl,
    refFromScripts,
    messageRef,
    viewSourceUrl,
    bytesToBase64,
  });
})(globalThis);
