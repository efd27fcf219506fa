// Zero-touch pairing: the extension gets the helper's address and token from the native-messaging host
// fr.sidep_helper.pairing (installed with sidep-helper), so nobody pastes a token.
//
// - With no token, the first call asks the host (runtime.sendNativeMessage) and stores its answer in
//   storage.local (token, helperUrl, pairedAt: the options page then says « appairé automatiquement »).
// - On a 401 (token rotated by `sidep-helper token --rotate`) or when the helper does not answer, the host
//   is asked again (it also starts the helper when it is not running) and the call is made once more.
// - A token set by IT (storage.managed, policy) wins: the host is not asked for one then.
// - No host (not installed, or refused): the error is "not_paired" when there was no token at all (the
//   panel explains what to do), and the helper's own error otherwise (the options page stays the manual
//   fallback).
// Pure but for the injected WebExtension API: unit tested with fakes.

import { HelperClient, HelperError, normalizeHelperUrl } from "./api.js";
import { PAIRED_KEY, loadSettings } from "./settings.js";

export { PAIRED_KEY };
export const HOST_NAME = "fr.sidep_helper.pairing";
const ASK_TIMEOUT_MS = 5000;
const START_WAIT_MS = 15000;
const RETRY_CODES = new Set(["wrong_token", "helper_not_running"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Ask the host once: {helperUrl, token, running}. Rejects with HelperError "not_paired". */
export async function askHost(runtime, { timeoutMs = ASK_TIMEOUT_MS } = {}) {
  if (!runtime || typeof runtime.sendNativeMessage !== "function") {
    throw new HelperError("not_paired", { message: "nativeMessaging" });
  }
  let answer;
  let timer;
  try {
    answer = await Promise.race([
      runtime.sendNativeMessage(HOST_NAME, { type: "pair" }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
      }),
    ]);
  } catch (cause) {
    throw new HelperError("not_paired", { cause });
  } finally {
    clearTimeout(timer);
  }
  const helperUrl = normalizeHelperUrl(answer && answer.helper_url);
  const token = answer && typeof answer.token === "string" ? answer.token.trim() : "";
  if (!helperUrl || token.length < 22 || /\s/.test(token)) {
    throw new HelperError("not_paired", { message: String((answer && answer.error) || "answer") });
  }
  return { helperUrl, token, running: answer.running !== false };
}

let pending = null;

/** Ask the host and store its answer (one request at a time); returns loadSettings() plus `running`. */
export function pairNow(ext, { ask = askHost } = {}) {
  if (!pending) {
    pending = (async () => {
      const answer = await ask(ext.runtime);
      await ext.storage.local.set({ token: answer.token, helperUrl: answer.helperUrl,
        [PAIRED_KEY]: new Date().toISOString() });
      return { ...(await loadSettings(ext.storage)), running: answer.running };
    })().finally(() => {
      pending = null;
    });
  }
  return pending;
}

/** Whether the token in force came from the host (not typed, not set by IT). */
export async function pairingState(storage) {
  const [loaded, stored] = await Promise.all([loadSettings(storage), storage.local.get([PAIRED_KEY, "token"])]);
  if (loaded.managed.has("token")) return { paired: false, managed: true, at: null };
  const paired = Boolean(stored[PAIRED_KEY] && stored.token && stored.token === loaded.values.token);
  return { paired, managed: false, at: paired ? stored[PAIRED_KEY] : null };
}

/**
 * The helper's API (same methods as HelperClient) with pairing: settings read at each call, the host
 * asked when there is no token, and once more after a 401 or when the helper does not answer.
 */
export class PairedHelper {
  constructor(ext, { fetch, ask = askHost, startWaitMs = START_WAIT_MS, pause = sleep } = {}) {
    this.ext = ext;
    this.fetchImpl = fetch;
    this.ask = ask;
    this.startWaitMs = startWaitMs;
    this.pause = pause;
    this.settings = null; // the settings of the last call (for error messages: the address)
  }

  health() { return this.call("health"); }
  search(query) { return this.call("search", query); }
  certificate(id) { return this.call("certificate", id); }
  pdfBlob(id) { return this.call("pdfBlob", id); }
  print(id, options) { return this.call("print", id, options); }
  delivered(id, initials) { return this.call("delivered", id, initials); }
  undoDelivered(id) { return this.call("undoDelivered", id); }
  pushMessage(bytes) { return this.call("pushMessage", bytes); }
  status() { return this.call("status"); }
  waiting(query) { return this.call("waiting", query); }

  async call(method, ...args) {
    let loaded = await loadSettings(this.ext.storage);
    this.settings = loaded.values;
    const managedToken = loaded.managed.has("token");
    if (!loaded.values.token && !managedToken && method !== "health") {
      loaded = await pairNow(this.ext, { ask: this.ask }); // no token, no host: "not_paired"
      this.settings = loaded.values;
      return this.#invoke(loaded.values, method, args, !loaded.running);
    }
    try {
      return await this.#invoke(loaded.values, method, args, false);
    } catch (error) {
      if (!error || !RETRY_CODES.has(error.code)) throw error;
      if (managedToken && error.code === "wrong_token") throw error; // IT's token: not ours to replace
      let again;
      try {
        again = await pairNow(this.ext, { ask: this.ask });
      } catch {
        throw error; // no host: the helper's own error (the options page is the fallback)
      }
      this.settings = again.values;
      return this.#invoke(again.values, method, args, true);
    }
  }

  async #invoke(values, method, args, waitForStart) {
    const client = new HelperClient({ baseUrl: values.helperUrl, token: values.token, fetch: this.fetchImpl });
    if (waitForStart) await this.#waitUntilUp(client);
    return client[method](...args);
  }

  /** The host may just have started the helper: wait for its health (a few seconds at most). */
  async #waitUntilUp(client) {
    const deadline = Date.now() + this.startWaitMs;
    for (;;) {
      try {
        await client.health();
        return;
      } catch (error) {
        if (error.code !== "helper_not_running" || Date.now() > deadline) return;
        await this.pause(250);
      }
    }
  }
}
