import assert from "node:assert/strict";
import { test } from "node:test";
import { errorMessage } from "../src/shared/api.js";
import { HOST_NAME, PAIRED_KEY, PairedHelper, askHost, pairingState } from "../src/shared/pairing.js";
import { saveSettings } from "../src/shared/settings.js";
import { fakeExtension, fakeFetch, fr, helperResponse } from "./helpers/fakes.mjs";

const TOKEN = "t".repeat(43);
const ROTATED = "r".repeat(43);

/** A helper on 127.0.0.1:6001 that accepts `state.token` (the test changes it to rotate). */
function helper(state) {
  return fakeFetch((url, init) => {
    if (state.down) throw new TypeError("Failed to fetch");
    if (url.endsWith("/api/v1/health")) return helperResponse(200, { service: "sidep-helper", version: "0.1.0" });
    if (init.headers.Authorization !== `Bearer ${state.token}`) {
      return helperResponse(401, { error: "unauthorized", message: "Jeton absent ou invalide." });
    }
    return helperResponse(200, { results: [{ id: 1 }], total: 1 });
  });
}

function host(state) {
  return async (name, message) => {
    assert.equal(name, HOST_NAME);
    assert.deepEqual(message, { type: "pair" });
    if (state.hostAbsent) throw new Error("Specified native messaging host not found.");
    state.down = false; // the host starts the helper
    return { helper_url: "http://127.0.0.1:6001", token: state.token, version: "0.1.0", running: true };
  };
}

test("no token: the first search asks the host, stores its answer and succeeds", async () => {
  const state = { token: TOKEN };
  const ext = fakeExtension({ nativeHost: host(state) });
  const fetch = helper(state);
  const client = new PairedHelper(ext, { fetch });
  const answer = await client.search({ q: "martin" });
  assert.equal(answer.total, 1);
  assert.equal(ext.runtime.nativeCalls.length, 1);
  assert.equal(ext.storage.local.data.token, TOKEN);
  assert.equal(ext.storage.local.data.helperUrl, "http://127.0.0.1:6001");
  assert.ok(ext.storage.local.data[PAIRED_KEY]);
  assert.equal(fetch.calls.at(-1).url.startsWith("http://127.0.0.1:6001/api/v1/certificates?"), true);
  assert.deepEqual(await pairingState(ext.storage), { paired: true, managed: false, at: ext.storage.local.data[PAIRED_KEY] });
  await client.search({ q: "durand" });
  assert.equal(ext.runtime.nativeCalls.length, 1, "asked once: the token is kept");
});

test("a 401 after `token --rotate` asks the host again and the same call succeeds", async () => {
  const state = { token: TOKEN };
  const ext = fakeExtension({ local: { token: TOKEN, helperUrl: "http://127.0.0.1:6001" }, nativeHost: host(state) });
  const client = new PairedHelper(ext, { fetch: helper(state) });
  state.token = ROTATED;
  const answer = await client.search({ q: "martin" });
  assert.equal(answer.total, 1);
  assert.equal(ext.storage.local.data.token, ROTATED);
  assert.equal(ext.runtime.nativeCalls.length, 1);
});

test("concurrent calls share one request to the host", async () => {
  const state = { token: TOKEN };
  const ext = fakeExtension({ nativeHost: host(state) });
  const client = new PairedHelper(ext, { fetch: helper(state) });
  await Promise.all([client.search({}), client.search({}), client.status()]);
  assert.equal(ext.runtime.nativeCalls.length, 1);
});

test("the helper not running: the host (which starts it) is asked, then the call is made again", async () => {
  const state = { token: TOKEN, down: true };
  const ext = fakeExtension({ local: { token: TOKEN, helperUrl: "http://127.0.0.1:6001" }, nativeHost: host(state) });
  const client = new PairedHelper(ext, { fetch: helper(state), pause: async () => undefined });
  assert.equal((await client.search({})).total, 1);
  assert.equal(ext.runtime.nativeCalls.length, 1);
});

test("a helper still starting is awaited before the call", async () => {
  const state = { token: TOKEN, down: true };
  let healthChecks = 0;
  const fetch = fakeFetch((url, init) => {
    if (url.endsWith("/api/v1/health") && ++healthChecks < 3) throw new TypeError("Failed to fetch");
    return helper({ token: TOKEN })(url, init);
  });
  const ext = fakeExtension({
    nativeHost: async () => ({ helper_url: "http://127.0.0.1:6001", token: TOKEN, version: "0.1.0", running: false }),
  });
  const client = new PairedHelper(ext, { fetch, pause: async () => undefined });
  assert.equal((await client.search({})).total, 1);
  assert.equal(healthChecks, 3);
  assert.equal(state.down, true);
});

test("no token and no host: not_paired, explained in French", async () => {
  const ext = fakeExtension({ nativeHost: host({ token: TOKEN, hostAbsent: true }) });
  const fetch = helper({ token: TOKEN });
  const client = new PairedHelper(ext, { fetch });
  await assert.rejects(client.search({}), (error) => {
    assert.equal(error.code, "not_paired");
    const text = errorMessage(error, fr);
    assert.match(text, /n'a pas pu être appairé automatiquement/);
    assert.match(text, /Installez ou réparez sidep-helper/);
    assert.match(text, /collez dans les réglages de l'extension le jeton/);
    return true;
  });
  assert.equal(fetch.calls.length, 0, "nothing sent without a token");
  // a browser without the nativeMessaging API (or permission) says the same
  const bare = fakeExtension();
  await assert.rejects(new PairedHelper(bare, { fetch }).search({}), { code: "not_paired" });
});

test("a wrong pasted token and no host: the helper's own error, the options page is the fallback", async () => {
  const ext = fakeExtension({ local: { token: "pasted-but-wrong-000000000", helperUrl: "http://127.0.0.1:6001" } });
  const client = new PairedHelper(ext, { fetch: helper({ token: TOKEN }) });
  await assert.rejects(client.search({}), { code: "wrong_token" });
});

test("a token set by IT wins: the host is not asked, even after a 401", async () => {
  const state = { token: TOKEN };
  const ext = fakeExtension({ managed: { token: "it-token-00000000000000000000" }, nativeHost: host(state) });
  const client = new PairedHelper(ext, { fetch: helper(state) });
  await assert.rejects(client.search({}), { code: "wrong_token" });
  assert.equal(ext.runtime.nativeCalls.length, 0);
  assert.deepEqual(await pairingState(ext.storage), { paired: false, managed: true, at: null });
  state.token = "it-token-00000000000000000000";
  assert.equal((await client.search({})).total, 1);
});

test("an answer that is not a loopback address and a token is refused", async () => {
  for (const answer of [
    { helper_url: "http://evil.example:80", token: TOKEN },
    { helper_url: "http://127.0.0.1:6001", token: "short" },
    { helper_url: "http://127.0.0.1:6001", token: `${TOKEN} x` },
    { error: "caller_refused" },
    null,
  ]) {
    await assert.rejects(askHost({ sendNativeMessage: async () => answer }), { code: "not_paired" }, JSON.stringify(answer));
  }
  await assert.rejects(askHost({ sendNativeMessage: () => new Promise(() => {}) }, { timeoutMs: 20 }), { code: "not_paired" });
});

test("a token typed by hand is no longer « appairé automatiquement »", async () => {
  const state = { token: TOKEN };
  const ext = fakeExtension({ nativeHost: host(state) });
  await new PairedHelper(ext, { fetch: helper(state) }).search({});
  assert.equal((await pairingState(ext.storage)).paired, true);
  await saveSettings({ token: TOKEN, site: "750712184" }, ext.storage); // the form saves the same token
  assert.equal((await pairingState(ext.storage)).paired, true);
  await saveSettings({ token: "typed-by-hand-0000000000000" }, ext.storage);
  assert.equal((await pairingState(ext.storage)).paired, false);
  assert.equal(ext.storage.local.data[PAIRED_KEY], undefined);
});
