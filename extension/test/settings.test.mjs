import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULTS, loadSettings, mergeSettings, normalizeWebmailOrigin, saveSettings } from "../src/shared/settings.js";
import { memoryStorage } from "./helpers/fakes.mjs";

test("defaults: the helper on 127.0.0.1:51789, no token, all sites", () => {
  const { values, managed } = mergeSettings({}, {});
  assert.equal(values.helperUrl, "http://127.0.0.1:51789");
  assert.equal(values.token, "");
  assert.equal(values.site, "");
  assert.deepEqual(values.webmailHosts, []);
  assert.equal(values.autoIndexOnStartup, false);
  assert.equal(managed.size, 0);
  assert.equal(DEFAULTS.helperUrl, "http://127.0.0.1:51789");
});

test("managed values win over local ones and are reported", () => {
  const { values, managed } = mergeSettings(
    { helperUrl: "http://127.0.0.1:6000", token: "local", site: "750712184" },
    { token: "  from-it  ", site: "130000000", autoIndexOnStartup: true },
  );
  assert.equal(values.helperUrl, "http://127.0.0.1:6000");
  assert.equal(values.token, "from-it");
  assert.equal(values.site, "130000000");
  assert.equal(values.autoIndexOnStartup, true);
  assert.deepEqual([...managed].sort(), ["autoIndexOnStartup", "site", "token"]);
});

test("invalid values are ignored, managed or not", () => {
  const { values, managed } = mergeSettings(
    { helperUrl: "https://evil.example", token: 42 },
    { helperUrl: "http://10.0.0.1:51789", webmailHosts: "webmail.example.fr, http://insecure.example, https://*.x" },
  );
  assert.equal(values.helperUrl, "http://127.0.0.1:51789");
  assert.equal(values.token, "");
  assert.deepEqual(values.webmailHosts, ["https://webmail.example.fr"]);
  assert.deepEqual([...managed], ["webmailHosts"]);
});

test("webmail origins are normalised to https origins", () => {
  assert.equal(normalizeWebmailOrigin("webmail.exemple.fr"), "https://webmail.exemple.fr");
  assert.equal(normalizeWebmailOrigin("https://webmail.exemple.fr/roundcube/?_task=mail"), "https://webmail.exemple.fr");
  assert.equal(normalizeWebmailOrigin("http://webmail.exemple.fr"), null);
  assert.equal(normalizeWebmailOrigin(""), null);
});

test("loadSettings survives a browser without managed storage (Firefox rejects)", async () => {
  const storage = {
    local: memoryStorage({ token: "abc", site: "750712184" }),
    managed: { get: async () => { throw new Error("Managed storage manifest not found"); } },
  };
  const { values, managed } = await loadSettings(storage);
  assert.equal(values.token, "abc");
  assert.equal(managed.size, 0);
});

test("saveSettings writes the user's values, not the managed ones, and refuses bad ones", async () => {
  const storage = { local: memoryStorage(), managed: memoryStorage({ site: "130000000" }) };
  let result = await saveSettings({ token: " pasted\n", site: "750712184", helperUrl: "127.0.0.1:6000" }, storage);
  assert.deepEqual(result.errors, []);
  assert.deepEqual(storage.local.data, { token: "pasted", helperUrl: "http://127.0.0.1:6000" });
  result = await saveSettings({ helperUrl: "http://example.org" }, storage);
  assert.deepEqual(result.errors, ["helperUrl"]);
  assert.equal(storage.local.data.helperUrl, "http://127.0.0.1:6000");
  result = await saveSettings({ helperUrl: "" }, storage);
  assert.equal(storage.local.data.helperUrl, "http://127.0.0.1:51789");
  const { values } = await loadSettings(storage);
  assert.equal(values.site, "130000000");
});
