// Client of the sidep-helper local API (helper/openapi.json).
//
// Pure: the network is an injected `fetch`, so the error classification is unit tested.
// Every failure becomes a HelperError with a stable `code` that the UI maps to a French message:
//   helper_not_running  nothing answers (connection refused, timeout)
//   other_program       something answers, but without the X-Sidep-Helper header
//   wrong_token         401
//   forbidden           403 (origin or host refused by the helper)
//   no_printer          503 no_printer
//   print_failed        502 print_failed
//   confirmation_required 409 confirmation_required (barcode mismatch or invalid signature)
//   not_found           404
//   not_configured      no token in the settings yet
//   not_paired          no token, and the pairing host (shared/pairing.js) is absent or refused
//   bad_address         the helper address is not a loopback http:// address
//   http_error          anything else (the helper's French message is kept)

export const VERSION_HEADER = "X-Sidep-Helper";
export const DEFAULT_HELPER_URL = "http://127.0.0.1:51789";

const TIMEOUT_MS = 8000;
const SLOW_TIMEOUT_MS = 90000; // printing and pushing a 50 MB message may take a while

export class HelperError extends Error {
  constructor(code, { status = 0, message = "", serverCode = "", cause } = {}) {
    super(message || code);
    this.name = "HelperError";
    this.code = code;
    this.status = status;
    this.serverMessage = message;
    this.serverCode = serverCode;
    if (cause) this.cause = cause;
  }
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** "http://127.0.0.1:51789/" -> "http://127.0.0.1:51789"; null when not a loopback http address. */
export function normalizeHelperUrl(value) {
  const text = String(value ?? "").trim();
  if (!text) return null;
  let url;
  try {
    url = new URL(text.includes("://") ? text : `http://${text}`);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" || !LOOPBACK_HOSTS.has(url.hostname)) return null;
  if (url.username || url.password || url.search || url.hash) return null;
  if (url.pathname !== "/" && url.pathname !== "") return null;
  return `${url.protocol}//${url.host}`;
}

export class HelperClient {
  /**
   * @param {{baseUrl?: string, token?: string, fetch?: typeof fetch, timeoutMs?: number}} options
   */
  constructor({ baseUrl = DEFAULT_HELPER_URL, token = "", fetch: fetchImpl, timeoutMs = TIMEOUT_MS } = {}) {
    this.baseUrl = normalizeHelperUrl(baseUrl);
    this.rawBaseUrl = String(baseUrl ?? "");
    this.token = String(token ?? "").trim();
    this.fetchImpl = fetchImpl || globalThis.fetch.bind(globalThis);
    this.timeoutMs = timeoutMs;
  }

  /** GET /health: no token needed; tells the helper from another program on the port. */
  async health() {
    return this.#json("GET", "/api/v1/health", { auth: false });
  }

  async search({ q = "", site = "", limit = 20, status = "all" } = {}) {
    const params = new URLSearchParams();
    params.set("q", String(q).slice(0, 200));
    if (site) params.set("site", site);
    params.set("limit", String(limit));
    if (status && status !== "all") params.set("status", status);
    return this.#json("GET", `/api/v1/certificates?${params}`);
  }

  /** The « À remettre » list: certificates not handed over, oldest first, and the site directory. */
  async waiting({ site = "", limit = 100 } = {}) {
    const params = new URLSearchParams();
    if (site) params.set("site", site);
    params.set("limit", String(limit));
    return this.#json("GET", `/api/v1/report/waiting?${params}`);
  }

  async certificate(id) {
    return this.#json("GET", `/api/v1/certificates/${certId(id)}`);
  }

  /** The address of the PDF. It needs the Authorization header: fetch it with pdfBlob(). */
  pdfUrl(id) {
    return `${this.#base()}/api/v1/certificates/${certId(id)}/pdf`;
  }

  async pdfBlob(id) {
    const response = await this.#request("GET", `/api/v1/certificates/${certId(id)}/pdf`, {});
    return response.blob();
  }

  /** Print; `confirmUnverified` is the secretary's explicit confirmation for a certificate whose
   * barcode disagrees with the mail or whose signature is invalid (refused with 409 without it). */
  async print(id, { confirmUnverified = false } = {}) {
    const options = { slow: true };
    if (confirmUnverified) options.json = { confirm_unverified: true };
    return this.#json("POST", `/api/v1/certificates/${certId(id)}/print`, options);
  }

  async delivered(id, initials) {
    const text = String(initials ?? "").trim().slice(0, 12);
    const body = text ? { initials: text } : {};
    return this.#json("POST", `/api/v1/certificates/${certId(id)}/delivered`, { json: body });
  }

  async undoDelivered(id) {
    return this.#json("DELETE", `/api/v1/certificates/${certId(id)}/delivered`);
  }

  /** POST the raw bytes of one message (Uint8Array, ArrayBuffer or Blob) to /messages. */
  async pushMessage(rawBytes) {
    return this.#json("POST", "/api/v1/messages", {
      body: rawBytes,
      contentType: "message/rfc822",
      slow: true,
    });
  }

  async status() {
    return this.#json("GET", "/api/v1/status");
  }

  #base() {
    if (!this.baseUrl) throw new HelperError("bad_address", { message: this.rawBaseUrl });
    return this.baseUrl;
  }

  async #json(method, path, options = {}) {
    const response = await this.#request(method, path, options);
    try {
      return await response.json();
    } catch (cause) {
      throw new HelperError("http_error", { status: response.status, message: "Réponse illisible.", cause });
    }
  }

  async #request(method, path, { auth = true, json, body, contentType, slow = false }) {
    const base = this.#base();
    if (auth && !this.token) throw new HelperError("not_configured");
    const headers = { Accept: "application/json" };
    if (auth) headers.Authorization = `Bearer ${this.token}`;
    let payload;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    } else if (body !== undefined) {
      headers["Content-Type"] = contentType;
      payload = body;
    } else if (method === "POST") {
      headers["Content-Type"] = "application/json";
      payload = "{}";
    }
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    const timer = controller
      ? setTimeout(() => controller.abort(), slow ? Math.max(this.timeoutMs, SLOW_TIMEOUT_MS) : this.timeoutMs)
      : null;
    let response;
    try {
      response = await this.fetchImpl(base + path, {
        method,
        headers,
        body: payload,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
        referrerPolicy: "no-referrer",
        signal: controller?.signal,
      });
    } catch (cause) {
      // Refused, reset, unreachable, aborted by our timeout: nothing usable answers.
      throw new HelperError("helper_not_running", { cause });
    } finally {
      if (timer) clearTimeout(timer);
    }
    return classify(response);
  }
}

function certId(id) {
  const n = Number(id);
  if (!Number.isSafeInteger(n) || n < 0) throw new HelperError("not_found", { message: String(id) });
  return n;
}

async function classify(response) {
  if (!response.headers || !response.headers.get(VERSION_HEADER)) {
    throw new HelperError("other_program", { status: response.status });
  }
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const message = body && typeof body.message === "string" ? body.message : "";
  const serverCode = body && typeof body.error === "string" ? body.error : "";
  const details = { status: response.status, message, serverCode };
  if (response.status === 401) throw new HelperError("wrong_token", details);
  if (response.status === 403) throw new HelperError("forbidden", details);
  if (response.status === 404) throw new HelperError("not_found", details);
  if (response.status === 503 && (serverCode === "no_printer" || !serverCode)) throw new HelperError("no_printer", details);
  if (response.status === 502 && serverCode === "print_failed") throw new HelperError("print_failed", details);
  if (response.status === 409 && serverCode === "confirmation_required") {
    throw new HelperError("confirmation_required", details);
  }
  throw new HelperError("http_error", details);
}

/** The French (or English) sentence for a HelperError, with `t(key, substitutions)` from i18n.js. */
export function errorMessage(error, t, { url = "" } = {}) {
  const code = error && error.code ? error.code : "http_error";
  const server = (error && error.serverMessage) || "";
  switch (code) {
    case "helper_not_running":
      return t("errorNotRunning", [url || DEFAULT_HELPER_URL]);
    case "other_program":
      return t("errorOtherProgram", [url || DEFAULT_HELPER_URL]);
    case "wrong_token":
      return t("errorWrongToken");
    case "not_configured":
      return t("errorNotConfigured");
    case "not_paired":
      return t("errorNotPaired");
    case "forbidden":
      return t("errorForbidden", [server]);
    case "bad_address":
      return t("errorBadAddress", [server || url]);
    case "no_printer":
      return t("errorNoPrinter", [server || t("errorNoPrinterDefault")]);
    case "print_failed":
      return t("errorPrintFailed", [server]);
    case "not_found":
      return t("errorNotFound");
    case "confirmation_required":
      return t("errorConfirmationRequired");
    default:
      return t("errorHttp", [server || String((error && error.status) || (error && error.message) || "")]);
  }
}
