// The webmail background: helper requests for content scripts, extra webmail hosts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cert, fakeExtension, helperResponse } from "./helpers/fakes.mjs";

const ext = fakeExtension({ local: { token: "tok", webmailHosts: ["https://webmail.labo.fr", "https://autre.fr"] },
  granted: ["https://webmail.labo.fr/*"] });
globalThis.chrome = ext;
const calls = [];
let mode = "ok";
globalThis.fetch = async (url, init = {}) => {
  calls.push({ url, init });
  if (mode === "down") throw new TypeError("Failed to fetch");
  if (mode === "other") return helperResponse(200, "<html></html>", { helper: false, type: "text/html" });
  const path = new URL(url).pathname;
  if (path === "/api/v1/messages") {
    return helperResponse(200, { results: [mode === "untrusted"
      ? { status: "quarantined", certificate_id: null, reason: "untrusted_sender" }
      : { status: "new", certificate_id: 9, reason: null }] });
  }
  if (path === "/api/v1/certificates/9/print") {
    if (mode === "noprinter") return helperResponse(503, { error: "no_printer", message: "Aucune imprimante n'est configurée." });
    return helperResponse(200, { certificate: cert({ id: 9, print_count: 1 }), job: "q-3", printer: "q" });
  }
  if (path === "/api/v1/certificates/9") return helperResponse(200, cert({ id: 9, print_count: 2 }));
  return helperResponse(404, { error: "not_found", message: "?" });
};

const { syncContentScripts } = await import("../src/background/webmail.js");
const fromContent = { id: "test-extension", tab: { id: 3 }, url: "https://mailiz.mssante.fr/?_task=mail" };
const raw = Buffer.from("From: noreply.sidep@enovacom.easycrypt.fr\r\nSubject: x\r\n\r\nbody").toString("base64");

test("a content script pushes the displayed message; the helper's answer names the certificate", async () => {
  mode = "ok";
  const answer = await ext.runtime.send({ type: "pushMessage", raw }, fromContent);
  assert.equal(answer.ok, true);
  assert.equal(answer.data.certificateId, 9);
  assert.equal(answer.data.stateText, "imprimé (2 fois)");
  const post = calls.find((c) => c.url.endsWith("/api/v1/messages"));
  assert.equal(new TextDecoder().decode(post.init.body), Buffer.from(raw, "base64").toString());
  assert.equal(post.init.headers["Content-Type"], "message/rfc822");
});

test("then prints it", async () => {
  mode = "ok";
  const answer = await ext.runtime.send({ type: "print", id: 9 }, fromContent);
  assert.deepEqual([answer.ok, answer.data.job], [true, "q-3"]);
});

test("failures come back as French sentences", async () => {
  mode = "down";
  let answer = await ext.runtime.send({ type: "print", id: 9 }, fromContent);
  assert.equal(answer.error.code, "helper_not_running");
  assert.match(answer.error.text, /sidep-helper n'est pas lancé/);
  mode = "other";
  answer = await ext.runtime.send({ type: "print", id: 9 }, fromContent);
  assert.match(answer.error.text, /autre programme/);
  mode = "noprinter";
  answer = await ext.runtime.send({ type: "print", id: 9 }, fromContent);
  assert.equal(answer.error.code, "no_printer");
  assert.match(answer.error.text, /Impossible d'imprimer : Aucune imprimante/);
  mode = "untrusted";
  answer = await ext.runtime.send({ type: "pushMessage", raw }, fromContent);
  assert.equal(answer.ok, true);
  assert.equal(answer.data.certificateId, null);
  assert.match(answer.data.reasonText, /quarantaine.*expéditeur/);
});

test("content scripts may only push and print", async () => {
  mode = "ok";
  assert.equal(await ext.runtime.send({ type: "certificate", id: 9 }, fromContent), undefined);
  const page = await ext.runtime.send({ type: "certificate", id: 9 }, { id: "test-extension" });
  assert.equal(page.ok, true);
  assert.equal(await ext.runtime.send({ type: "print", id: 9 }, { id: "other-extension", tab: { id: 1 } }), undefined);
});

test("the content script is registered on the granted extra webmail hosts only", async () => {
  const matches = await syncContentScripts();
  assert.deepEqual(matches, ["https://webmail.labo.fr/*"]);
  assert.equal(ext.scripting.registered.length, 1);
  const [script] = ext.scripting.registered;
  assert.equal(script.allFrames, true);
  assert.deepEqual(script.js, ["src/shared/sidep.js", "src/content/roundcube-lib.js", "src/content/roundcube.js"]);
  await ext.storage.local.set({ webmailHosts: [] });
  assert.deepEqual(await syncContentScripts(), []);
  assert.equal(ext.scripting.registered.length, 0);
});
