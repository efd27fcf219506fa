import assert from "node:assert/strict";
import { test } from "node:test";
import "../src/shared/sidep.js";
import "../src/content/roundcube-lib.js";

const { isCertificateSubject, parseSubject, isTrustedSender, senderAddress } = globalThis.SidepMessage;
const rc = globalThis.SidepRoundcube;

test("SI-DEP certificate subjects are recognised, as Roundcube shows them too", () => {
  const subject = "[Projet SI-DEP] Certificat de test : 750712184 | 2106221234 | LEFÈVRE | Émilie";
  assert.ok(isCertificateSubject(subject));
  assert.ok(isCertificateSubject(`Objet${subject}`)); // elastic: <span class="voice">Objet</span>
  assert.ok(isCertificateSubject("[Projet SI-DEP]  Certificat de test  :\n 750712184 | 1 | A | B"));
  assert.ok(isCertificateSubject("[projet si-dep] certificat de test : x"));
  for (const other of ["Certificat de test", "[Projet SI-DEP] Compte rendu", "Réunion SI-DEP", "", null]) {
    assert.ok(!isCertificateSubject(other), String(other));
  }
});

test("subject fields", () => {
  assert.deepEqual(parseSubject("[Projet SI-DEP] Certificat de test : 750712184 | A2106220042 | D'ALMEIDA | João"), {
    finess: "750712184", dossier: "A2106220042", lastName: "D'ALMEIDA", firstName: "João",
  });
  assert.equal(parseSubject("[Projet SI-DEP] Certificat de test : incomplet"), null);
  assert.equal(parseSubject("autre"), null);
});

test("trusted sender: SI-DEP's address only, by default", () => {
  assert.ok(isTrustedSender("noreply.sidep@enovacom.easycrypt.fr"));
  assert.ok(isTrustedSender("SI-DEP <NoReply.SIDEP@enovacom.easycrypt.fr>"));
  assert.ok(!isTrustedSender("noreply.sidep@enovacom-easycrypt.fr.evil.example"));
  assert.ok(!isTrustedSender("\"noreply.sidep@enovacom.easycrypt.fr\" <pirate@evil.example>"));
  assert.ok(!isTrustedSender(""));
  assert.ok(isTrustedSender("x <labo@test.fr>", ["labo@test.fr"]));
  assert.equal(senderAddress("A <b@c.d>"), "b@c.d");
});

test("Roundcube: the displayed message from the address (show page, preview frame)", () => {
  assert.deepEqual(rc.refFromUrl("https://mailiz.mssante.fr/?_task=mail&_mbox=INBOX&_uid=42&_action=show"),
    { uid: "42", mbox: "INBOX", action: "show" });
  assert.deepEqual(
    rc.refFromUrl("https://webmail.example.fr/roundcube/?_task=mail&_caps=pdf%3D1&_uid=7&_mbox=Certificats%2FSI-DEP&_framed=1&_action=preview"),
    { uid: "7", mbox: "Certificats/SI-DEP", action: "preview" },
  );
  assert.equal(rc.refFromUrl("https://mailiz.mssante.fr/?_task=mail&_mbox=INBOX"), null);
  assert.equal(rc.refFromUrl("https://mailiz.mssante.fr/?_uid=1%27%3Balert(1)"), null);
  assert.equal(rc.refFromUrl("pas une adresse"), null);
});

test("Roundcube: the displayed message from rcmail.set_env in the inline script", () => {
  const script = 'var rcmail = new rcube_webmail();\nrcmail.set_env({"task":"mail","action":"show","uid":"315","mailbox":"Bo\\u00eete \\"SI-DEP\\"","compose_extwin":false});';
  assert.deepEqual(rc.refFromScripts(["", "var x = 1;", script]), { uid: "315", mbox: 'Boîte "SI-DEP"', action: "show" });
  assert.deepEqual(rc.refFromScripts(['rcmail.set_env({"uid":12,"mailbox":"INBOX"})']), { uid: "12", mbox: "INBOX", action: "" });
  assert.equal(rc.refFromScripts(['rcmail.set_env({"task":"mail"})']), null);
  assert.deepEqual(rc.messageRef("https://h/?_task=mail", [script]).uid, "315");
});

test("Roundcube: the raw source address is same-origin viewsource", () => {
  const url = rc.viewSourceUrl("https://webmail.example.fr/roundcube/?_task=mail&_uid=7&_mbox=INBOX&_action=preview&_framed=1",
    { uid: "7", mbox: "Archives/2021" });
  assert.equal(url, "https://webmail.example.fr/roundcube/?_task=mail&_action=viewsource&_uid=7&_mbox=Archives%2F2021");
});

test("bytes to base64, in chunks", () => {
  const bytes = new Uint8Array(100000).map((_, i) => i % 256);
  assert.equal(rc.bytesToBase64(bytes), Buffer.from(bytes).toString("base64"));
  assert.equal(rc.bytesToBase64(new Uint8Array()), "");
});
