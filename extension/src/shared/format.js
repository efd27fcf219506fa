// Formatting for the panel: French dates, state and result labels, homonyms, debounce.
// Pure functions; the words come from t(key, substitutions) (see i18n.js).

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?/;

/** "1980-02-01" or "1980-02-01T10:12:00" -> "01/02/1980" (the date as written: no time zone shift). */
export function frDate(value) {
  const m = DATE_RE.exec(String(value ?? ""));
  return m ? `${m[3]}/${m[2]}/${m[1]}` : "";
}

/** "2021-06-22T10:12:00" -> "10:12" ("" without a time). */
export function frTime(value) {
  const m = DATE_RE.exec(String(value ?? ""));
  return m && m[4] !== undefined ? `${m[4]}:${m[5]}` : "";
}

/** "2021-06-22T10:12:00" -> "22/06/2021 à 10:12" (with t("dateAtTime")). */
export function frDateTime(value, t) {
  const date = frDate(value);
  const time = frTime(value);
  if (!date) return "";
  return time ? t("dateAtTime", [date, time]) : date;
}

/** When it arrived and how long it has waited: "01/12/2026 (il y a 2 jours)", "(hier)", "(aujourd'hui)". */
export function receivedLabel(value, t, now = new Date()) {
  const m = DATE_RE.exec(String(value ?? ""));
  if (!m) return "";
  const day = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const days = Math.round((today - day) / 86400000);
  const date = frDate(value);
  if (days <= 0) return t("receivedToday", [date]);
  if (days === 1) return t("receivedYesterday", [date]);
  return t("receivedDaysAgo", [date, String(days)]);
}

/** ``delivered_by`` of a certificate handed over at another desk (helper/index/imapstate.py REMOTE_DESK). */
export const DELIVERED_ELSEWHERE = "autre poste";

/** The hand-over state: delivered, printed n times, or new. */
export function stateLabel(cert, t) {
  if (cert.delivered_at) {
    const when = frDateTime(cert.delivered_at, t);
    // handed over at another desk, seen through the mailbox's shared $SidepRemis keyword (issue 10)
    if (cert.delivered_by === DELIVERED_ELSEWHERE) return t("stateDeliveredElsewhere", [when]);
    return cert.delivered_by ? t("stateDeliveredBy", [when, cert.delivered_by]) : t("stateDelivered", [when]);
  }
  const count = Number(cert.print_count) || 0;
  if (count > 0) return count === 1 ? t("statePrintedOnce") : t("statePrinted", [String(count)]);
  return t("stateNew");
}

/** The machine name of the state, for styling: "delivered", "printed", "new". */
export function stateKind(cert) {
  if (cert.delivered_at) return "delivered";
  return Number(cert.print_count) > 0 ? "printed" : "new";
}

/** All the labels to show: the hand-over state, and "superseded" when a newer certificate exists. */
export function stateLabels(cert, t) {
  const labels = [stateLabel(cert, t)];
  if (cert.superseded) labels.push(t("stateSuperseded"));
  return labels;
}

const OUTCOME_KEYS = {
  positive: "resultPositive",
  negative: "resultNegative",
  inconclusive: "resultInconclusive",
};

/** "Négatif", "Positif", "Ininterprétable", or the result as SI-DEP wrote it. */
export function resultLabel(cert, t) {
  const key = OUTCOME_KEYS[cert.outcome];
  if (key) return t(key);
  return cert.result ? String(cert.result) : t("resultUnknown");
}

export function sexLabel(sex, t) {
  if (sex === "F") return t("sexF");
  if (sex === "M") return t("sexM");
  return t("sexUnknown");
}

/** "750712184" + "Site des Lilas" -> "750712184 (Site des Lilas)". */
export function siteLabel(cert) {
  const finess = cert.site_finess || "";
  return cert.site_name ? `${finess} (${cert.site_name})` : finess;
}

const FOLD_SPECIAL = { Œ: "OE", œ: "oe", Æ: "AE", æ: "ae", ß: "ss", Ø: "O", ø: "o" };

/** "Lefèvre  d'Émilie" -> "LEFEVRE D EMILIE": no accents, upper case, words only. */
export function foldName(text) {
  return String(text ?? "")
    .replace(/[ŒœÆæßØø]/g, (c) => FOLD_SPECIAL[c])
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toUpperCase()
    .replace(/[^A-Z0-9]+/g, " ")
    .trim();
}

/**
 * Ids of the results that have a homonym in the list: same folded last and first names,
 * another birth date. Both (all) of them are flagged: the secretary must check the birth date.
 */
export function homonymIds(results) {
  const byName = new Map();
  for (const cert of results) {
    const key = `${foldName(cert.last_name)}|${foldName(cert.first_name)}`;
    if (!byName.has(key)) byName.set(key, []);
    byName.get(key).push(cert);
  }
  const flagged = new Set();
  for (const group of byName.values()) {
    const births = new Set(group.map((c) => c.birth_date || ""));
    if (births.size > 1) for (const cert of group) flagged.add(cert.id);
  }
  return flagged;
}

/**
 * What the panel says when a search finds nothing: the helper's `purged` answer (the dossier was
 * deleted at the end of its retention, or had expired on arrival) sends the secretary to the
 * mailbox; otherwise the usual spelling hint, or "nothing yet" for an empty query.
 */
export function emptyMessage(answer, q, t) {
  const days = answer && answer.purged && Number.isInteger(answer.purged.retention_days)
    ? answer.purged.retention_days : null;
  if (q && days !== null) return t("nothingPurged", [String(days)]);
  return q ? t("nothingFound", [q]) : t("nothingYet");
}

/** A dossier number as a barcode scanner types it: optional letter, then digits. */
export function looksLikeDossier(query) {
  return /^[A-Za-z]?\d{6,}$/.test(String(query ?? "").trim());
}

/** fn delayed until `ms` without a new call; .flush() runs a pending call now, .cancel() drops it. */
export function debounce(fn, ms = 200, timers = globalThis) {
  let timer = null;
  let pending = null;
  const debounced = (...args) => {
    pending = args;
    if (timer !== null) timers.clearTimeout(timer);
    timer = timers.setTimeout(() => {
      timer = null;
      const call = pending;
      pending = null;
      fn(...call);
    }, ms);
  };
  debounced.flush = () => {
    if (timer === null) return false;
    timers.clearTimeout(timer);
    timer = null;
    const call = pending;
    pending = null;
    fn(...call);
    return true;
  };
  debounced.cancel = () => {
    if (timer !== null) timers.clearTimeout(timer);
    timer = null;
    pending = null;
  };
  debounced.pending = () => timer !== null;
  return debounced;
}
