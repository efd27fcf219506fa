// What an SI-DEP certificate message looks like, for the content script and the Thunderbird
// background. Written without import/export so that the same file is a classic content script and
// an ES module imported for its effect: it defines globalThis.SidepMessage.
//
// Subject (from the SI-DEP guide):
//   [Projet SI-DEP] Certificat de test : {FINESS} | {dossier} | {Nom} | {Prénom}
"use strict";
(function (root) {
  const SUBJECT_RE = /\[\s*Projet\s+SI-DEP\s*\]\s*Certificat\s+de\s+test\s*:/i;
  const TRUSTED_SENDERS = ["noreply.sidep@enovacom.easycrypt.fr"];

  /** True when the subject is an SI-DEP certificate's (anywhere in the text: Roundcube prefixes "Objet"). */
  function isCertificateSubject(subject) {
    return SUBJECT_RE.test(String(subject == null ? "" : subject).replace(/\s+/g, " "));
  }

  /** {finess, dossier, lastName, firstName} from the subject, or null. */
  function parseSubject(subject) {
    const text = String(subject == null ? "" : subject).replace(/\s+/g, " ");
    const m = SUBJECT_RE.exec(text);
    if (!m) return null;
    const parts = text.slice(m.index + m[0].length).split("|").map((s) => s.trim());
    if (parts.length < 4) return null;
    return { finess: parts[0], dossier: parts[1], lastName: parts[2], firstName: parts.slice(3).join(" | ") };
  }

  /** The bare address of a From value: "SI-DEP <noreply.sidep@…>" -> "noreply.sidep@…". */
  function senderAddress(author) {
    const text = String(author == null ? "" : author);
    const angle = /<([^<>@\s]+@[^<>\s]+)>/.exec(text);
    const bare = angle ? angle[1] : (/([^\s<>"']+@[^\s<>"']+)/.exec(text) || [])[1];
    return bare ? bare.toLowerCase() : "";
  }

  /** True when the author is one of the trusted senders (default: SI-DEP's). */
  function isTrustedSender(author, trusted) {
    const list = (trusted && trusted.length ? trusted : TRUSTED_SENDERS).map((s) => String(s).toLowerCase());
    const address = senderAddress(author);
    return address !== "" && list.includes(address);
  }

  root.SidepMessage = Object.freeze({
    TRUSTED_SENDERS: Object.freeze(TRUSTED_SENDERS.slice()),
    isCertificateSubject,
    parseSubject,
    senderAddress,
    isTrustedSender,
  });
})(globalThis);
