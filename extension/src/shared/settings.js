// Settings: helper address, token, "mon site", extra webmail hosts, Thunderbird indexing.
//
// Values set by IT through policy (storage.managed: Chrome/Edge "3rdparty" policy, Firefox and
// Thunderbird policies.json "3rdparty") win over the user's own (storage.local) and are shown
// read-only in the options page.

import { DEFAULT_HELPER_URL, normalizeHelperUrl } from "./api.js";

export const DEFAULTS = Object.freeze({
  helperUrl: DEFAULT_HELPER_URL,
  token: "",
  site: "",
  webmailHosts: [],
  autoIndexOnStartup: false,
  indexFolders: [],
});

export const KEYS = Object.freeze(Object.keys(DEFAULTS));

/** In storage.local: when the token in force was given by the pairing host (shared/pairing.js). */
export const PAIRED_KEY = "pairedAt";

const CLEAN = {
  helperUrl: (v) => normalizeHelperUrl(v),
  token: (v) => (typeof v === "string" ? v.trim() : null),
  site: (v) => (typeof v === "string" ? v.trim().toUpperCase() : null),
  webmailHosts: (v) => {
    const list = Array.isArray(v) ? v : typeof v === "string" ? v.split(/[\s,;]+/) : null;
    if (!list) return null;
    const out = [];
    for (const item of list) {
      const origin = normalizeWebmailOrigin(item);
      if (origin && !out.includes(origin)) out.push(origin);
    }
    return out;
  },
  autoIndexOnStartup: (v) => (typeof v === "boolean" ? v : v === "true" ? true : v === "false" ? false : null),
  indexFolders: (v) => (Array.isArray(v) ? v.filter((x) => typeof x === "string" && x) : null),
};

/** "webmail.example.fr" or "https://webmail.example.fr/roundcube/" -> "https://webmail.example.fr". */
export function normalizeWebmailOrigin(value) {
  const text = String(value ?? "").trim();
  if (!text) return null;
  try {
    const url = new URL(text.includes("://") ? text : `https://${text}`);
    if (url.protocol !== "https:" || !url.hostname || url.hostname.includes("*")) return null;
    return `https://${url.host}`;
  } catch {
    return null;
  }
}

/** "https://webmail.example.fr" -> "https://webmail.example.fr/*" (a match pattern). */
export function originPattern(origin) {
  return `${origin}/*`;
}

/**
 * Merge the user's values and IT's: managed values that are valid win.
 * Returns {values, managed}: the settings in force and the names of the keys IT has set.
 */
export function mergeSettings(local = {}, managed = {}) {
  const values = { ...DEFAULTS, webmailHosts: [], indexFolders: [] };
  const managedKeys = new Set();
  for (const key of KEYS) {
    if (local && local[key] !== undefined) {
      const clean = CLEAN[key](local[key]);
      if (clean !== null) values[key] = clean;
    }
  }
  for (const key of KEYS) {
    if (managed && managed[key] !== undefined) {
      const clean = CLEAN[key](managed[key]);
      if (clean !== null) {
        values[key] = clean;
        managedKeys.add(key);
      }
    }
  }
  return { values, managed: managedKeys };
}

function storageApi() {
  return (globalThis.browser ?? globalThis.chrome).storage;
}

/** storage.managed.get(), or {} where there is no policy (Firefox rejects then). */
export async function readManaged(storage = storageApi()) {
  if (!storage || !storage.managed) return {};
  try {
    return (await storage.managed.get(KEYS)) || {};
  } catch {
    return {};
  }
}

export async function loadSettings(storage = storageApi()) {
  const [local, managed] = await Promise.all([storage.local.get(KEYS), readManaged(storage)]);
  return mergeSettings(local || {}, managed);
}

/** Save the user's values; keys set by IT are not written (they would not apply anyway). */
export async function saveSettings(changes, storage = storageApi()) {
  const { managed } = await loadSettings(storage);
  const toSave = {};
  const errors = [];
  for (const [key, value] of Object.entries(changes)) {
    if (!KEYS.includes(key) || managed.has(key)) continue;
    const clean = CLEAN[key](value);
    if (clean === null) {
      if (value === "" || value === undefined) {
        toSave[key] = DEFAULTS[key];
      } else {
        errors.push(key);
      }
      continue;
    }
    toSave[key] = clean;
  }
  if (errors.length === 0) {
    const before = await storage.local.get(["token"]);
    await storage.local.set(toSave);
    // a token typed by hand is no longer the one the pairing host gave
    if ("token" in toSave && toSave.token !== (before.token ?? "")) await storage.local.remove(PAIRED_KEY);
  }
  return { saved: toSave, errors };
}
