// Background of the webmail extension (Chrome/Edge service worker, Firefox event page).
//
// - answers the content scripts' helper requests (push the displayed message, print it): content
//   scripts may not reach the loopback themselves;
// - registers the content script on the extra webmail hosts that IT or the user added in the
//   settings and granted (optional host permissions), besides Mailiz, declared in the manifest.
// Listeners are registered at top level: the worker is stopped when idle and started again by events.

import { handleHelperRequest, isHelperRequest } from "./router.js";
import { loadSettings, originPattern } from "../shared/settings.js";

const ext = globalThis.browser ?? globalThis.chrome;
const SCRIPT_ID = "sidep-helper-webmail-hosts";
const BUILT_IN = new Set(
  (ext.runtime.getManifest().content_scripts || []).flatMap((c) => c.matches || []),
);
const CONTENT_JS = ["src/shared/sidep.js", "src/content/roundcube-lib.js", "src/content/roundcube.js"];
const CONTENT_CSS = ["src/content/roundcube.css"];
// Requests a content script (a webmail page) may make; extension pages may make all.
const FROM_CONTENT = new Set(["pushMessage", "print"]);

ext.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (!isHelperRequest(message)) return false;
  if (sender.id !== ext.runtime.id) return false;
  if (sender.tab && !FROM_CONTENT.has(message.type)) return false;
  handleHelperRequest(message).then(sendResponse);
  return true; // answer asynchronously
});

/** Register the content script on the granted extra webmail hosts (and only those). */
export async function syncContentScripts() {
  if (!ext.scripting || !ext.scripting.registerContentScripts) return [];
  const { values } = await loadSettings(ext.storage);
  const matches = [];
  for (const origin of values.webmailHosts) {
    const pattern = originPattern(origin);
    if (BUILT_IN.has(pattern)) continue;
    if (await ext.permissions.contains({ origins: [pattern] })) matches.push(pattern);
  }
  const existing = await ext.scripting.getRegisteredContentScripts({ ids: [SCRIPT_ID] });
  if (existing.length) await ext.scripting.unregisterContentScripts({ ids: [SCRIPT_ID] });
  if (matches.length) {
    await ext.scripting.registerContentScripts([
      {
        id: SCRIPT_ID,
        matches,
        js: CONTENT_JS,
        css: CONTENT_CSS,
        allFrames: true,
        runAt: "document_idle",
        persistAcrossSessions: true,
      },
    ]);
  }
  return matches;
}

function resync() {
  syncContentScripts().catch((err) => console.warn("sidep-helper: content scripts", err));
}

ext.runtime.onInstalled.addListener(resync);
ext.runtime.onStartup.addListener(resync);
ext.permissions.onAdded.addListener(resync);
ext.permissions.onRemoved.addListener(resync);
ext.storage.onChanged.addListener((changes, area) => {
  if ((area === "local" || area === "managed") && changes.webmailHosts) resync();
});
