// Test doubles: the helper's HTTP answers, and the parts of the WebExtension / Thunderbird APIs the
// backgrounds use. Not a test file by itself.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTranslator } from "../../src/shared/i18n.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function messages(lang = "fr") {
  return JSON.parse(readFileSync(join(ROOT, "_locales", lang, "messages.json"), "utf8"));
}

export const fr = makeTranslator(messages("fr"));

/** A Response as sidep-helper sends it (with its version header unless told otherwise). */
export function helperResponse(status, body, { helper = true, type = "application/json" } = {}) {
  const headers = new Headers({ "Content-Type": type });
  if (helper) headers.set("X-Sidep-Helper", "0.1.0");
  const payload = type === "application/json" ? JSON.stringify(body) : body;
  return new Response(status === 204 ? null : payload, { status, headers });
}

/** A fetch that records its calls and answers with route(url, init) (a Response, or throws). */
export function fakeFetch(route) {
  const calls = [];
  const fn = async (url, init = {}) => {
    calls.push({ url: String(url), init });
    return route(String(url), init, calls.length);
  };
  fn.calls = calls;
  return fn;
}

export function cert(overrides = {}) {
  return {
    id: 1, site_finess: "750712184", site_name: "Site des Lilas", dossier: "2106221234",
    last_name: "DUPONT", first_name: "Marie", sex: "F", birth_date: "1980-02-01", ins: null,
    analysis_code: "94500-6", analysis_label: "PCR", sampled_at: "2021-06-22T10:12:00",
    integrated_at: "2021-06-22T14:00:00", result: "NEGATIF", outcome: "negative", message_id: "<a@b>",
    source: "eml", superseded: false, warnings: [], printed_at: null, print_count: 0, delivered_at: null,
    delivered_by: null, ...overrides,
  };
}

function event() {
  const listeners = [];
  return {
    listeners,
    extra: [],
    addListener(fn, ...extra) {
      listeners.push(fn);
      this.extra.push(extra);
    },
    removeListener(fn) {
      const i = listeners.indexOf(fn);
      if (i >= 0) listeners.splice(i, 1);
    },
    hasListener: (fn) => listeners.includes(fn),
    async fire(...args) {
      return Promise.all(listeners.map((fn) => fn(...args)));
    },
  };
}

export function memoryStorage(initial = {}) {
  const data = structuredClone(initial);
  return {
    data,
    async get(keys) {
      if (keys == null) return structuredClone(data);
      const list = typeof keys === "string" ? [keys] : Array.isArray(keys) ? keys : Object.keys(keys);
      const out = {};
      for (const k of list) if (k in data) out[k] = structuredClone(data[k]);
      return out;
    },
    async set(values) {
      Object.assign(data, structuredClone(values));
    },
    async remove(keys) {
      for (const k of [].concat(keys)) delete data[k];
    },
  };
}

/**
 * The WebExtension API as a background sees it: runtime (messaging, events), storage (local,
 * managed), i18n (French), permissions, scripting, runtime.sendNativeMessage when `nativeHost` is given
 * (the pairing host); plus Thunderbird's messages, folders, accounts,
 * messageDisplay and messageDisplayAction when `thunderbird` is given.
 */
export function fakeExtension({ local = {}, managed = null, thunderbird = null, granted = [], nativeHost = null } = {}) {
  const msgs = messages("fr");
  const t = makeTranslator(msgs);
  const registered = [];
  const api = {
    runtime: {
      id: "test-extension",
      onMessage: event(),
      onInstalled: event(),
      onStartup: event(),
      getManifest: () => ({ content_scripts: [{ matches: ["https://mailiz.mssante.fr/*"] }] }),
      getURL: (p) => `chrome-extension://test-extension/${p}`,
      nativeCalls: [],
      // The pairing host: nativeHost(name, message) answers (or throws: "host not found"); absent when null.
      ...(nativeHost ? {
        async sendNativeMessage(name, message) {
          api.runtime.nativeCalls.push({ name, message });
          return nativeHost(name, message);
        },
      } : {}),
      async send(message, sender = { id: "test-extension" }) {
        return new Promise((resolve) => {
          let answered = false;
          for (const fn of api.runtime.onMessage.listeners) {
            const keep = fn(message, sender, (answer) => {
              answered = true;
              resolve(answer);
            });
            if (keep === true) return;
          }
          if (!answered) resolve(undefined);
        });
      },
    },
    storage: {
      local: memoryStorage(local),
      managed: managed === null
        ? { get: async () => { throw new Error("Managed storage manifest not found"); } }
        : memoryStorage(managed),
      onChanged: event(),
    },
    i18n: { getMessage: (key, subs) => t(key, subs), getUILanguage: () => "fr" },
    permissions: {
      contains: async ({ origins }) => origins.every((o) => granted.includes(o)),
      request: async () => true,
      onAdded: event(),
      onRemoved: event(),
    },
    scripting: {
      registered,
      async registerContentScripts(scripts) { registered.push(...scripts); },
      async unregisterContentScripts({ ids }) {
        for (const id of ids) {
          const i = registered.findIndex((s) => s.id === id);
          if (i >= 0) registered.splice(i, 1);
        }
      },
      async getRegisteredContentScripts({ ids }) { return registered.filter((s) => ids.includes(s.id)); },
    },
  };
  if (thunderbird) Object.assign(api, fakeThunderbird(thunderbird));
  return api;
}

/**
 * Thunderbird's mail APIs over folders = {folderId: [{id, headerMessageId, subject, author, raw}]}.
 * Lists are paginated by `pageSize` (continueList), as Thunderbird does.
 */
function fakeThunderbird({ folders, pageSize = 2, accounts = [{ id: "account1", name: "Local Folders" }] }) {
  const lists = new Map();
  let listCounter = 0;
  const byId = new Map();
  for (const list of Object.values(folders)) for (const m of list) byId.set(m.id, m);
  const header = ({ raw, ...h }) => h;
  function page(all) {
    const first = all.slice(0, pageSize).map(header);
    const rest = all.slice(pageSize);
    if (!rest.length) return { id: null, messages: first };
    const id = `list-${++listCounter}`;
    lists.set(id, rest);
    return { id, messages: first };
  }
  const enabled = new Map();
  return {
    accounts: { list: async () => accounts.map((a) => ({ ...a, rootFolder: { id: `${a.id}://`, isRoot: true } })) },
    folders: {
      query: async () => [
        { id: "account1://", isRoot: true, accountId: "account1", path: "/" },
        ...Object.keys(folders).map((id) => ({ id, isRoot: false, isVirtual: false, accountId: "account1", path: id })),
      ],
    },
    messages: {
      queries: [],
      rawCalls: [],
      onNewMailReceived: event(),
      async query(info) {
        this.queries.push(info);
        const all = (folders[info.folderId] || []).filter((m) => !info.subject || m.subject.includes(info.subject));
        return page(all);
      },
      async list(folderId) { return page(folders[folderId] || []); },
      async continueList(id) {
        const rest = lists.get(id);
        lists.delete(id);
        return page(rest || []);
      },
      async get(id) { return header(byId.get(id)); },
      async getRaw(id, options) {
        this.rawCalls.push({ id, options });
        return new File([byId.get(id).raw], "message.eml", { type: "message/rfc822" });
      },
      pageOf: page,
    },
    messageDisplay: { onMessagesDisplayed: event(), getDisplayedMessages: async () => ({ id: null, messages: [] }) },
    messageDisplayAction: {
      enabled,
      enable: async (tabId) => enabled.set(tabId ?? "global", true),
      disable: async (tabId) => enabled.set(tabId ?? "global", false),
    },
  };
}
