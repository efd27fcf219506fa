import assert from "node:assert/strict";
import { test } from "node:test";
import {
  debounce, emptyMessage, foldName, frDate, frDateTime, frTime, homonymIds, looksLikeDossier, receivedLabel,
  resultLabel, sexLabel,
  siteLabel, stateKind, stateLabel, stateLabels,
} from "../src/shared/format.js";
import { cert, fr } from "./helpers/fakes.mjs";

test("dates are French and never shifted by a time zone", () => {
  assert.equal(frDate("1980-02-01"), "01/02/1980");
  assert.equal(frDate("2021-06-22T23:59:00"), "22/06/2021");
  assert.equal(frDate("2021-06-22T23:59:00+02:00"), "22/06/2021");
  assert.equal(frTime("2021-06-22T07:05:33"), "07:05");
  assert.equal(frTime("2021-06-22"), "");
  assert.equal(frDateTime("2021-06-22T07:05:33", fr), "22/06/2021 à 07:05");
  assert.equal(frDateTime("2021-06-22", fr), "22/06/2021");
  assert.equal(frDate(null), "");
  assert.equal(frDate("n'importe quoi"), "");
});

test("state labels: nouveau, imprimé (n fois), remis le … par …, remplacé", () => {
  assert.equal(stateLabel(cert(), fr), "nouveau");
  assert.equal(stateKind(cert()), "new");
  assert.equal(stateLabel(cert({ print_count: 1, printed_at: "2024-01-02T10:00:00" }), fr), "imprimé (1 fois)");
  assert.equal(stateLabel(cert({ print_count: 3 }), fr), "imprimé (3 fois)");
  assert.equal(stateKind(cert({ print_count: 3 })), "printed");
  const delivered = cert({ print_count: 1, delivered_at: "2024-01-02T10:05:00", delivered_by: "MB" });
  assert.equal(stateLabel(delivered, fr), "remis le 02/01/2024 à 10:05 par MB");
  assert.equal(stateKind(delivered), "delivered");
  assert.equal(stateLabel(cert({ delivered_at: "2024-01-02T10:05:00" }), fr), "remis le 02/01/2024 à 10:05");
  const elsewhere = cert({ delivered_at: "2024-01-02T10:05:00", delivered_by: "autre poste" });
  assert.equal(stateLabel(elsewhere, fr), "remis (autre poste) le 02/01/2024 à 10:05");
  assert.deepEqual(stateLabels(cert({ superseded: true }), fr), ["nouveau", "remplacé par un certificat plus récent"]);
});

test("result, sex and site labels", () => {
  assert.equal(resultLabel(cert({ outcome: "negative" }), fr), "Négatif");
  assert.equal(resultLabel(cert({ outcome: "positive" }), fr), "Positif");
  assert.equal(resultLabel(cert({ outcome: "inconclusive" }), fr), "Ininterprétable");
  assert.equal(resultLabel(cert({ outcome: "unknown", result: "Douteux" }), fr), "Douteux");
  assert.equal(resultLabel(cert({ outcome: "unknown", result: null }), fr), "Non précisé");
  assert.equal(sexLabel("F", fr), "F");
  assert.equal(sexLabel(null, fr), "?");
  assert.equal(siteLabel(cert()), "750712184 (Site des Lilas)");
  assert.equal(siteLabel(cert({ site_name: null })), "750712184");
});

test("names are folded: accents, case, punctuation, ligatures", () => {
  assert.equal(foldName("Lefèvre"), "LEFEVRE");
  assert.equal(foldName("D'ALMEIDA"), "D ALMEIDA");
  assert.equal(foldName("  Jean-Pierre  "), "JEAN PIERRE");
  assert.equal(foldName("CŒUR"), "COEUR");
  assert.equal(foldName("Zoé"), foldName("ZOE"));
});

test("homonyms: same folded names with another birth date flag all of them", () => {
  const results = [
    cert({ id: 1, last_name: "MARTIN", first_name: "Émilie", birth_date: "1980-02-01" }),
    cert({ id: 2, last_name: "Martin", first_name: "Emilie", birth_date: "1991-07-14" }),
    cert({ id: 3, last_name: "MARTIN", first_name: "Emilie", birth_date: "1980-02-01" }), // same person again
    cert({ id: 4, last_name: "MARTIN", first_name: "Paul", birth_date: "1950-01-01" }),
    cert({ id: 5, last_name: "DURAND", first_name: "Léa", birth_date: "2000-01-01" }),
    cert({ id: 6, last_name: "DURAND", first_name: "Lea", birth_date: "2000-01-01" }),
  ];
  assert.deepEqual([...homonymIds(results)].sort(), [1, 2, 3]);
  assert.equal(homonymIds([]).size, 0);
});

test("dossier numbers as a scanner types them", () => {
  assert.ok(looksLikeDossier("2106221234"));
  assert.ok(looksLikeDossier("A2106220042"));
  assert.ok(!looksLikeDossier("dupont"));
  assert.ok(!looksLikeDossier("01/02/1980"));
});

test("debounce waits for the last call; flush runs it now; cancel drops it", () => {
  const timers = new Map();
  let next = 1;
  const clock = {
    setTimeout: (fn) => { timers.set(next, fn); return next++; },
    clearTimeout: (id) => timers.delete(id),
  };
  const calls = [];
  const run = () => { for (const [id, fn] of [...timers]) { timers.delete(id); fn(); } };
  const d = debounce((x) => calls.push(x), 200, clock);
  d(1); d(2); d(3);
  assert.equal(timers.size, 1);
  assert.ok(d.pending());
  run();
  assert.deepEqual(calls, [3]);
  d(4);
  assert.equal(d.flush(), true);
  assert.deepEqual(calls, [3, 4]);
  assert.equal(d.flush(), false);
  d(5); d.cancel();
  run();
  assert.deepEqual(calls, [3, 4]);
  assert.ok(!d.pending());
});

test("nothing found: a purged dossier sends the secretary to the mailbox (helper's `purged` answer)", () => {
  const purged = { results: [], total: 0, total_exact: true, purged: { retention_days: 90 } };
  const said = emptyMessage(purged, "2610044297", fr);
  assert.match(said, /supprimé automatiquement après 90 jours/);
  assert.match(said, /boîte aux lettres MSSanté/);
  assert.doesNotMatch(said, /orthographe/);
  assert.match(emptyMessage({ results: [], total: 0 }, "martin", fr), /Vérifiez l'orthographe/);
  assert.equal(emptyMessage({ purged: { retention_days: "<b>" } }, "x", fr), emptyMessage({}, "x", fr));
  assert.equal(emptyMessage(purged, "", fr), emptyMessage({}, "", fr));
});

test("the « À remettre » list says when a certificate arrived and how long it has waited", () => {
  const now = new Date(2026, 11, 3, 0, 30); // 3 December 2026, just after midnight, local time
  assert.equal(receivedLabel("2026-12-03T00:10:00", fr, now), "03/12/2026 (aujourd'hui)");
  assert.equal(receivedLabel("2026-12-02T23:59:00", fr, now), "02/12/2026 (hier)");
  assert.equal(receivedLabel("2026-11-30T08:00:00", fr, now), "30/11/2026 (il y a 3 jours)");
  assert.equal(receivedLabel("2026-02-27T08:00:00", fr, new Date(2026, 2, 30, 12)), "27/02/2026 (il y a 31 jours)");
  assert.equal(receivedLabel("", fr, now), "");
});
