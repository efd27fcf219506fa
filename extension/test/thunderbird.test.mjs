// The Thunderbird background against fake Thunderbird APIs and a fake helper.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { cert, fakeExtension, helperResponse } from "./helpers/fakes.mjs";

const TRUSTED = "noreply.sidep@enovacom.easycrypt.fr";

function mail(n, { sender = TRUSTED, subject } = {}) {
  const subj = subject ?? `[Projet SI-DEP] Certificat de test : 750712184 | 21062200${n} | NOM${n} | Prénom`;
  const raw = `From: ${sender}\r\nMessage-ID: <m${n}@enovacom.easycrypt.fr>\r\nSubject: ${subj}\r\n\r\ncorps ${n}\r\n`;
  return { id: 100 + n, headerMessageId: `m${n}@enovacom.easycrypt.fr`, subject: subj, author: `SI-DEP <${sender}>`, raw };
}

const folders = {
  inbox: [mail(1), mail(2), mail(3, { subject: "Réunion de service" }), mail(4)],
  "Certificats/2021": [mail(5), mail(6, { sender: "noreply.sidep@evil.example" }), mail(7)],
};
const ext = fakeExtension({ thunderbird: { folders, pageSize: 2 }, managed: {} });
globalThis.messenger = ext;
globalThis.browser = ext;

const pushed = [];
let helperUp = true;
globalThis.fetch = async (url, init = {}) => {
  if (!helperUp) throw new TypeError("NetworkError when attempting to fetch resource.");
  const path = new URL(url).pathname;
  if (path === "/api/v1/health") return helperResponse(200, { status: "ok", service: "sidep-helper", version: "0.1.0" });
  if (path === "/api/v1/messages") {
    const text = new TextDecoder().decode(init.body);
    pushed.push(text);
    const n = Number(/<m(\d+)@/.exec(text)[1]);
    return helperResponse(200, { results: [{ status: "new", certificate_id: n, reason: null }] });
  }
  const print = /^\/api\/v1\/certificates\/(\d+)\/print$/.exec(path);
  if (print) return helperResponse(200, { certificate: cert({ id: Number(print[1]), print_count: 1 }), job: `sidep-test-pdf-${print[1]}`, printer: "sidep-test-pdf" });
  const one = /^\/api\/v1\/certificates\/(\d+)$/.exec(path);
  if (one) return helperResponse(200, cert({ id: Number(one[1]) }));
  return helperResponse(404, { error: "not_found", message: "Adresse inconnue." });
};

await import("../src/background/thunderbird.js");

const pushedNumbers = () => pushed.map((text) => Number(/<m(\d+)@/.exec(text)[1])).sort((a, b) => a - b);

beforeEach(async () => {
  pushed.length = 0;
  helperUp = true;
  for (const key of Object.keys(ext.storage.local.data)) delete ext.storage.local.data[key];
  Object.assign(ext.storage.local.data, { token: "tok" });
  for (const key of Object.keys(ext.storage.managed.data)) delete ext.storage.managed.data[key];
});

test("listeners are registered at top level; new mail in all folders", () => {
  assert.equal(ext.messages.onNewMailReceived.listeners.length, 1);
  assert.deepEqual(ext.messages.onNewMailReceived.extra[0], [true]); // monitorAllFolders
  assert.equal(ext.messageDisplay.onMessagesDisplayed.listeners.length, 1);
  assert.equal(ext.runtime.onStartup.listeners.length, 1);
  assert.equal(ext.runtime.onInstalled.listeners.length, 1);
  assert.equal(ext.runtime.onMessage.listeners.length, 1);
});

test("new SI-DEP mail from the trusted sender is pushed raw, once", async () => {
  const list = ext.messages.pageOf([mail(1), mail(3, { subject: "Autre chose" }), mail(6, { sender: "x@evil.example" }), mail(4)]);
  await ext.messages.onNewMailReceived.fire({ id: "inbox" }, list);
  assert.deepEqual(pushedNumbers(), [1, 4]);
  assert.ok(pushed[0].startsWith("From: noreply.sidep@"));
  assert.deepEqual(Object.keys(ext.storage.local.data.pushedMessageIds).sort(), ["m1@enovacom.easycrypt.fr", "m4@enovacom.easycrypt.fr"]);
  assert.equal(ext.messages.rawCalls.at(-1).options.data_format, "File");
  await ext.messages.onNewMailReceived.fire({ id: "inbox" }, ext.messages.pageOf([mail(1), mail(4)]));
  assert.deepEqual(pushedNumbers(), [1, 4], "already pushed: not again");
});

test("« Indexer les messages existants » walks every folder, page by page, and skips what was pushed", async () => {
  await ext.storage.local.set({ pushedMessageIds: { "m2@enovacom.easycrypt.fr": Date.now() } });
  const answer = await ext.runtime.send({ type: "indexExisting" });
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.deepEqual(pushedNumbers(), [1, 4, 5, 7]);
  assert.equal(answer.data.seen, 5);
  assert.equal(answer.data.pushed, 4);
  assert.equal(answer.data.skipped, 1);
  assert.equal(answer.data.certificates, 4);
  assert.equal(answer.data.running, false);
  assert.deepEqual(ext.storage.local.data.indexStatus.pushed, 4);
  assert.ok(ext.messages.queries.every((q) => q.subject === "Projet SI-DEP" && q.folderId !== "account1://"));
  pushed.length = 0;
  const again = await ext.runtime.send({ type: "indexExisting" });
  assert.equal(again.data.pushed, 0);
  assert.equal(again.data.skipped, 5);
  assert.deepEqual(pushed, []);
});

test("chosen folders only", async () => {
  const answer = await ext.runtime.send({ type: "indexExisting", folderIds: ["Certificats/2021"] });
  assert.deepEqual(pushedNumbers(), [5, 7]);
  assert.equal(answer.data.folders, 1);
});

test("helper not running: the walk stops with the French message, nothing recorded", async () => {
  helperUp = false;
  const answer = await ext.runtime.send({ type: "indexExisting" });
  assert.equal(answer.ok, false);
  assert.equal(answer.data.error.code, "helper_not_running");
  assert.match(answer.data.error.text, /n'est pas lancé/);
  assert.equal(ext.storage.local.data.pushedMessageIds, undefined);
});

test("no token yet and no pairing host: the walk stops at once and says what to do", async () => {
  delete ext.storage.local.data.token;
  const answer = await ext.runtime.send({ type: "indexExisting" });
  assert.equal(answer.data.error.code, "not_paired");
  assert.match(answer.data.error.text, /Installez ou réparez sidep-helper/);
  assert.match(answer.data.error.text, /jeton/);
  assert.equal(answer.data.errors, 1, "one attempt, not one per message");
  assert.deepEqual(pushed, []);
});

test("start-up indexing only when autoIndexOnStartup is set (policy)", async () => {
  await ext.runtime.onStartup.fire();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(pushed, []);
  assert.equal(ext.messageDisplayAction.enabled.get("global"), false, "the action is enabled per message");
  ext.storage.managed.data.autoIndexOnStartup = true;
  await ext.runtime.onStartup.fire();
  for (let i = 0; i < 50 && !(ext.storage.local.data.indexStatus && !ext.storage.local.data.indexStatus.running); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(pushedNumbers(), [1, 2, 4, 5, 7]);
});

test("the message display action is enabled on SI-DEP messages only", async () => {
  await ext.messageDisplay.onMessagesDisplayed.fire({ id: 5 }, { id: null, messages: [mail(1)] });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(ext.messageDisplayAction.enabled.get(5), true);
  await ext.messageDisplay.onMessagesDisplayed.fire({ id: 5 }, { id: null, messages: [mail(3, { subject: "Bonjour" })] });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(ext.messageDisplayAction.enabled.get(5), false);
  await ext.messageDisplay.onMessagesDisplayed.fire({ id: 6 }, [mail(2)]); // array form (older releases)
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(ext.messageDisplayAction.enabled.get(6), true);
});

test("« Imprimer le certificat » pushes the displayed message and prints its certificate", async () => {
  const answer = await ext.runtime.send({ type: "printMessages", messageIds: [101] });
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.equal(answer.data.printed[0].job, "sidep-test-pdf-1");
  assert.deepEqual(pushedNumbers(), [1]);
  helperUp = false;
  const down = await ext.runtime.send({ type: "printMessages", messageIds: [101] });
  assert.equal(down.ok, false);
  assert.equal(down.error.code, "helper_not_running");
});

test("messages from elsewhere than the extension are ignored", async () => {
  const answer = await ext.runtime.send({ type: "indexExisting" }, { id: "another-extension" });
  assert.equal(answer, undefined);
});
