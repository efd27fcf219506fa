// CRX3 packing (Chrome and Edge's signed extension format), with Node's crypto only.
//
// A .crx is: "Cr24", version 3 (uint32 LE), the header length (uint32 LE), the header (a CrxFileHeader
// protobuf), then the zip. The header holds the RSA public key (DER SubjectPublicKeyInfo) with an
// RSASSA-PKCS1-v1_5 SHA-256 signature, and the signed data: the crx id, the first 16 bytes of
// SHA-256(public key). What is signed: "CRX3 SignedData\0", the signed data's length (uint32 LE), the
// signed data, the zip.
import { createHash, createPrivateKey, createPublicKey, sign } from "node:crypto";

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited protobuf field (wire type 2). */
function field(number, bytes) {
  return Buffer.concat([varint(number * 8 + 2), varint(bytes.length), bytes]);
}

function uint32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** The public key (DER SubjectPublicKeyInfo) of a PEM private key. */
export function publicKeyDer(privatePem) {
  return createPublicKey(createPrivateKey(privatePem)).export({ type: "spki", format: "der" });
}

/** The Chrome/Edge id of a DER public key: SHA-256, first 32 hex digits written a-p. */
export function extensionId(publicDer) {
  const hex = createHash("sha256").update(publicDer).digest("hex").slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join("");
}

/** The .crx (Buffer) of `zipBytes`, signed with the PEM private key. */
export function crx3(zipBytes, privatePem) {
  const key = createPrivateKey(privatePem);
  const publicDer = createPublicKey(key).export({ type: "spki", format: "der" });
  const crxId = createHash("sha256").update(publicDer).digest().subarray(0, 16);
  const signedData = field(1, crxId);
  const toSign = Buffer.concat([Buffer.from("CRX3 SignedData\x00", "latin1"), uint32(signedData.length), signedData,
    Buffer.from(zipBytes)]);
  const signature = sign("sha256", toSign, key);
  const header = Buffer.concat([
    field(2, Buffer.concat([field(1, publicDer), field(2, signature)])), // sha256_with_rsa proof
    field(10000, signedData),
  ]);
  return Buffer.concat([Buffer.from("Cr24", "latin1"), uint32(3), uint32(header.length), header, Buffer.from(zipBytes)]);
}
