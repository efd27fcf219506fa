#!/usr/bin/env node
// Draws the extension icons (icons/icon-{16,32,48,128}.png): a blue rounded square with a white
// certificate sheet and a check mark. Run once when the drawing changes; the PNGs are committed.
import { writeFileSync, mkdirSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const CRC = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
function png(size, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0)),
  ]);
}
// colour of the unit-square point (u, v) in [0, 1): null = transparent
function paint(u, v) {
  const r = 0.2, inset = (a) => Math.min(a, 1 - a);
  const cx = inset(u), cy = inset(v);
  if (cx < r && cy < r && Math.hypot(r - cx, r - cy) > r) return null; // rounded corners
  // check mark (green disc, bottom right)
  const d = Math.hypot(u - 0.72, v - 0.72);
  if (d < 0.2) {
    const onCheck = distSeg(u, v, 0.62, 0.72, 0.69, 0.79) < 0.035 || distSeg(u, v, 0.69, 0.79, 0.83, 0.63) < 0.035;
    return onCheck ? [255, 255, 255] : [46, 139, 87];
  }
  // sheet with a folded corner
  if (u > 0.22 && u < 0.68 && v > 0.16 && v < 0.84 && !(u - 0.55 > v - 0.16 + 0.0 && v < 0.29)) {
    for (const y of [0.36, 0.48, 0.6]) if (Math.abs(v - y) < 0.035 && u > 0.3 && u < (y === 0.6 ? 0.5 : 0.6)) return [29, 79, 145];
    return [255, 255, 255];
  }
  return [29, 79, 145];
}
function distSeg(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}
mkdirSync(join(root, "icons"), { recursive: true });
for (const size of [16, 32, 48, 128]) {
  const S = 4; // supersampling
  const out = Buffer.alloc(size * size * 4);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    let r = 0, g = 0, b = 0, a = 0;
    for (let j = 0; j < S; j++) for (let i = 0; i < S; i++) {
      const c = paint((x + (i + 0.5) / S) / size, (y + (j + 0.5) / S) / size);
      if (c) { r += c[0]; g += c[1]; b += c[2]; a += 1; }
    }
    const o = (y * size + x) * 4;
    if (a) { out[o] = r / a; out[o + 1] = g / a; out[o + 2] = b / a; out[o + 3] = (255 * a) / (S * S); }
  }
  writeFileSync(join(root, "icons", `icon-${size}.png`), png(size, out));
}
