import assert from "node:assert/strict";
import { test } from "node:test";
import { HelperClient, HelperError, errorMessage, normalizeHelperUrl } from "../src/shared/api.js";
import { cert, fakeFetch, fr, helperResponse } from "./helpers/fakes.mjs";

const BASE = "http://127.0.0.1:51789";
const client = (fetch, token = "secret-token", extra = {}) => new HelperClient({ baseUrl: BASE, token, fetch, ...extra });

async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof HelperError, `not a HelperError: ${error}`);
    return error;
  }
  assert.fail("no error");
}

test("search sends the token in the Authorization header, never in the address", async () => {
  const fetch = fakeFetch(() => helperResponse(200, { results: [cert()], total: 1 }));
  const answer = await client(fetch).search({ q: "dupont marie", site: "750712184", limit: 5, status: "to_deliver" });
  assert.equal(answer.total, 1);
  const [{ url, init }] = fetch.calls;
  const parsed = new URL(url);
  assert.equal(parsed.origin + parsed.pathname, `${BASE}/api/v1/certificates`);
  assert.equal(parsed.searchParams.get("q"), "dupont marie");
  assert.equal(parsed.searchParams.get("site"), "750712184");
  assert.equal(parsed.searchParams.get("limit"), "5");
  assert.equal(parsed.searchParams.get("status"), "to_deliver");
  assert.ok(!url.includes("secret-token"));
  assert.equal(init.headers.Authorization, "Bearer secret-token");
  assert.equal(init.method, "GET");
  assert.equal(init.credentials, "omit");
});

test("health needs no token", async () => {
  const fetch = fakeFetch(() => helperResponse(200, { status: "ok", service: "sidep-helper", version: "0.1.0" }));
  const health = await client(fetch, "").health();
  assert.equal(health.version, "0.1.0");
  assert.equal(fetch.calls[0].init.headers.Authorization, undefined);
});

test("connection refused is helper_not_running", async () => {
  const fetch = fakeFetch(() => {
    throw new TypeError("Failed to fetch");
  });
  const error = await failure(client(fetch).search({ q: "x" }));
  assert.equal(error.code, "helper_not_running");
});

test("waiting asks for one site's list (or all sites' without a site), token in the header", async () => {
  const fetch = fakeFetch(() => helperResponse(200, { site: "750712184", name: "", total: 0, results: [], sites: [] }));
  await client(fetch).waiting({ site: "750712184", limit: 200 });
  await client(fetch).waiting();
  const [one, all] = fetch.calls.map((c) => new URL(c.url));
  assert.equal(one.pathname, "/api/v1/report/waiting");
  assert.equal(one.searchParams.get("site"), "750712184");
  assert.equal(one.searchParams.get("limit"), "200");
  assert.equal(all.searchParams.has("site"), false);
  assert.equal(all.searchParams.get("limit"), "100");
  assert.equal(fetch.calls[0].init.headers.Authorization, "Bearer secret-token");
});

test("a helper that never answers times out as helper_not_running", async () => {
  const fetch = (url, init) => new Promise((_, reject) => {
    init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
  });
  const started = Date.now();
  const error = await failure(client(fetch, "t", { timeoutMs: 50 }).search({ q: "x" }));
  assert.equal(error.code, "helper_not_running");
  assert.ok(Date.now() - started < 2000);
});

test("an answer without the X-Sidep-Helper header is another program", async () => {
  for (const status of [200, 401, 404, 500]) {
    const fetch = fakeFetch(() => helperResponse(status, "<html>hello</html>", { helper: false, type: "text/html" }));
    const error = await failure(client(fetch).search({ q: "x" }));
    assert.equal(error.code, "other_program", `status ${status}`);
  }
  const fetch = fakeFetch(() => helperResponse(200, { status: "ok" }, { helper: false }));
  assert.equal((await failure(client(fetch).health())).code, "other_program");
});

test("HTTP errors become stable codes, with the helper's French message", async () => {
  const cases = [
    [401, { error: "unauthorized", message: "Jeton absent ou invalide" }, "wrong_token"],
    [403, { error: "forbidden_origin", message: "Origine non autorisée." }, "forbidden"],
    [404, { error: "not_found", message: "Certificat introuvable" }, "not_found"],
    [503, { error: "no_printer", message: "Aucune imprimante configurée." }, "no_printer"],
    [502, { error: "print_failed", message: "lp a échoué" }, "print_failed"],
    [500, { error: "internal", message: "Erreur interne du service ; voir le journal." }, "http_error"],
    [400, { error: "bad_parameter", message: "Paramètre de recherche invalide." }, "http_error"],
  ];
  for (const [status, body, code] of cases) {
    const fetch = fakeFetch(() => helperResponse(status, body));
    const error = await failure(client(fetch).print(3));
    assert.equal(error.code, code, `status ${status}`);
    assert.equal(error.status, status);
    assert.equal(error.serverMessage, body.message);
  }
});

test("no token configured: not_configured before any request", async () => {
  const fetch = fakeFetch(() => helperResponse(200, {}));
  const error = await failure(client(fetch, "  ").search({ q: "x" }));
  assert.equal(error.code, "not_configured");
  assert.equal(fetch.calls.length, 0);
});

test("a helper address off the loopback is refused", async () => {
  for (const bad of ["https://127.0.0.1:51789", "http://example.org:51789", "http://127.0.0.1:51789/x?token=1", "ftp://localhost"]) {
    assert.equal(normalizeHelperUrl(bad), null, bad);
    const fetch = fakeFetch(() => helperResponse(200, {}));
    const error = await failure(new HelperClient({ baseUrl: bad, token: "t", fetch }).search({ q: "x" }));
    assert.equal(error.code, "bad_address");
    assert.equal(fetch.calls.length, 0);
  }
  assert.equal(normalizeHelperUrl("http://127.0.0.1:51789/"), "http://127.0.0.1:51789");
  assert.equal(normalizeHelperUrl("localhost:6000"), "http://localhost:6000");
  assert.equal(normalizeHelperUrl(" http://[::1]:51789 "), "http://[::1]:51789");
});

test("print, delivered (initials), undo and status use the right methods and bodies", async () => {
  const fetch = fakeFetch((url, init) => {
    if (url.endsWith("/print")) return helperResponse(200, { certificate: cert({ print_count: 1 }), job: "q-12", printer: "q" });
    if (url.endsWith("/status")) return helperResponse(200, { counts: { certificates: 3 } });
    return helperResponse(200, cert({ delivered_at: init.method === "POST" ? "2024-01-02T10:00:00" : null }));
  });
  const c = client(fetch);
  assert.equal((await c.print(7)).job, "q-12");
  await c.delivered(7, "  MB  ");
  await c.delivered(7, "");
  await c.undoDelivered(7);
  await c.status();
  const [print, delivered, deliveredEmpty, undo, status] = fetch.calls;
  assert.equal(print.init.method, "POST");
  assert.equal(print.url, `${BASE}/api/v1/certificates/7/print`);
  assert.equal(print.init.headers["Content-Type"], "application/json");
  assert.equal(delivered.init.body, JSON.stringify({ initials: "MB" }));
  assert.equal(deliveredEmpty.init.body, "{}");
  assert.equal(undo.init.method, "DELETE");
  assert.equal(undo.url, `${BASE}/api/v1/certificates/7/delivered`);
  assert.equal(status.url, `${BASE}/api/v1/status`);
});

test("pushMessage posts the raw bytes as message/rfc822", async () => {
  const fetch = fakeFetch(() => helperResponse(200, { results: [{ status: "new", certificate_id: 4, reason: null }] }));
  const raw = new TextEncoder().encode("Subject: x\r\n\r\nbody");
  const answer = await client(fetch).pushMessage(raw);
  assert.equal(answer.results[0].certificate_id, 4);
  const { url, init } = fetch.calls[0];
  assert.equal(url, `${BASE}/api/v1/messages`);
  assert.equal(init.method, "POST");
  assert.equal(init.headers["Content-Type"], "message/rfc822");
  assert.equal(init.body, raw);
});

test("pdfUrl names the PDF route; pdfBlob fetches it with the token", async () => {
  const fetch = fakeFetch(() => helperResponse(200, "%PDF-1.4", { type: "application/pdf" }));
  const c = client(fetch);
  assert.equal(c.pdfUrl(12), `${BASE}/api/v1/certificates/12/pdf`);
  const blob = await c.pdfBlob(12);
  assert.equal(await blob.text(), "%PDF-1.4");
  assert.equal(fetch.calls[0].init.headers.Authorization, "Bearer secret-token");
  await assert.rejects(() => c.print("12; rm -rf"), (e) => e.code === "not_found");
});

test("every error code has a French sentence", () => {
  const url = "http://127.0.0.1:51789";
  const say = (code, extra = {}) => errorMessage(new HelperError(code, extra), fr, { url });
  assert.match(say("helper_not_running"), /sidep-helper n'est pas lancé/);
  assert.match(say("helper_not_running"), /127\.0\.0\.1:51789/);
  assert.match(say("other_program"), /autre programme/);
  assert.match(say("wrong_token"), /[Jj]eton/);
  assert.match(say("not_configured"), /jeton/);
  assert.match(say("no_printer", { message: "Aucune imprimante configurée." }), /Impossible d'imprimer : Aucune imprimante configurée\./);
  assert.match(say("no_printer"), /aucune imprimante/);
  assert.match(say("not_found"), /introuvable/);
  assert.match(say("http_error", { message: "Erreur interne du service ; voir le journal." }), /Erreur interne/);
  assert.match(say("bad_address", { message: "http://x" }), /invalide/);
  for (const code of ["forbidden", "print_failed"]) assert.ok(say(code, { message: "m" }).length > 5);
});
