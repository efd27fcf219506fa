// Helper calls made on behalf of content scripts and extension pages, through runtime messaging.
// Shared by the webmail background (service worker / event page) and the Thunderbird one.

import { errorMessage } from "../shared/api.js";
import { stateLabel } from "../shared/format.js";
import { browserTranslator } from "../shared/i18n.js";
import { PairedHelper } from "../shared/pairing.js";
import { loadSettings } from "../shared/settings.js";

const ext = globalThis.browser ?? globalThis.chrome;

export const t = browserTranslator(ext);

export async function helperClient() {
  const { values } = await loadSettings(ext.storage);
  return { client: new PairedHelper(ext), settings: values }; // pairs with the host when needed
}

export function base64ToBytes(text) {
  const binary = atob(String(text));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A JSON-safe answer for a failure: {ok: false, error: {code, status, text}}. */
export function failure(error, url) {
  const code = (error && error.code) || "extension";
  const text = error && error.code ? errorMessage(error, t, { url }) : String((error && error.message) || error);
  return { ok: false, error: { code, status: (error && error.status) || 0, text } };
}

const REASON_KEYS = {
  untrusted_sender: "reasonUntrustedSender",
  too_large: "reasonTooLarge",
};

/** Push one raw message; answers the certificate it carries (if any, with its state when `details`). */
export async function pushRaw(client, bytes, { details = true } = {}) {
  const answer = await client.pushMessage(bytes);
  const outcome = (answer.results || []).find((r) => r.certificate_id != null) || (answer.results || [])[0] || {};
  const data = {
    status: outcome.status || "ignored",
    certificateId: outcome.certificate_id ?? null,
    reason: outcome.reason ?? null,
    reasonText: "",
    certificate: null,
    stateText: "",
  };
  if (data.certificateId == null) {
    data.reasonText = outcome.status === "quarantined"
      ? t("reasonQuarantined", [t(REASON_KEYS[outcome.reason] || "reasonMalformed")])
      : t("contentNotCertificate");
  } else if (details) {
    try {
      data.certificate = await client.certificate(data.certificateId);
      data.stateText = stateLabel(data.certificate, t);
    } catch {
      data.certificate = null;
    }
  }
  return data;
}

const HANDLERS = {
  async pushMessage(client, message) {
    return pushRaw(client, base64ToBytes(message.raw));
  },
  async print(client, message) {
    const answer = await client.print(message.id);
    return { job: answer.job, printer: answer.printer, certificate: answer.certificate };
  },
  async certificate(client, message) {
    return client.certificate(message.id);
  },
  async health(client) {
    return client.health();
  },
};

export function isHelperRequest(message) {
  return Boolean(message && typeof message.type === "string" && Object.hasOwn(HANDLERS, message.type));
}

/** Run a helper request; never throws. */
export async function handleHelperRequest(message) {
  let url = "";
  try {
    const { client, settings } = await helperClient();
    url = settings.helperUrl;
    const data = await HANDLERS[message.type](client, message);
    return { ok: true, data };
  } catch (error) {
    return failure(error, url);
  }
}
