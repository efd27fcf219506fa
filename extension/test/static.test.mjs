// Checks over the sources: translations complete, no markup injection, manifests consistent, build.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { inflateRawSync } from "node:zlib";
import { ROOT, messages } from "./helpers/fakes.mjs";

function files(dir, ext) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path, ext));
    else if (path.endsWith(ext)) out.push(path);
  }
  return out;
}

const SRC = join(ROOT, "src");
const fr = messages("fr");
const en = messages("en");

test("French and English have the same keys and placeholders", () => {
  assert.deepEqual(Object.keys(en).sort(), Object.keys(fr).sort());
  for (const key of Object.keys(fr)) {
    assert.deepEqual(en[key].placeholders || {}, fr[key].placeholders || {}, key);
    for (const name of fr[key].message.match(/\$[A-Z]+\$/g) || []) {
      assert.ok(en[key].message.includes(name), `${key}: ${name} missing in English`);
    }
  }
});

test("every translation key used by the pages and scripts exists", () => {
  const used = new Set();
  for (const path of files(SRC, ".html")) {
    for (const m of readFileSync(path, "utf8").matchAll(/data-i18n(?:-[a-z-]+)?="([A-Za-z0-9_]+)"/g)) used.add(m[1]);
  }
  for (const path of files(SRC, ".js")) {
    for (const m of readFileSync(path, "utf8").matchAll(/\bt\("([A-Za-z0-9_]+)"/g)) used.add(m[1]);
  }
  for (const path of files(SRC, ".json")) {
    for (const m of readFileSync(path, "utf8").matchAll(/__MSG_([A-Za-z0-9_]+)__/g)) used.add(m[1]);
  }
  const missing = [...used].filter((k) => !(k in fr));
  assert.deepEqual(missing, []);
  assert.ok(used.size > 60);
});

test("no markup from data: no innerHTML, no eval, no inline script or handler, no remote code", () => {
  for (const path of files(SRC, ".js")) {
    const text = readFileSync(path, "utf8");
    for (const bad of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout(\"", "import(\"http"]) {
      assert.ok(!text.includes(bad), `${relative(ROOT, path)} uses ${bad}`);
    }
  }
  for (const path of files(SRC, ".html")) {
    const text = readFileSync(path, "utf8");
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(text), `${relative(ROOT, path)} has an inline script`);
    assert.ok(!/\son[a-z]+=/.test(text), `${relative(ROOT, path)} has an inline handler`);
    assert.ok(!/(src|href)="https?:/.test(text), `${relative(ROOT, path)} loads remote code`);
  }
});

test("manifests: the files they name exist; minimal permissions", () => {
  const web = JSON.parse(readFileSync(join(SRC, "manifest.webmail.json"), "utf8"));
  const tb = JSON.parse(readFileSync(join(SRC, "manifest.thunderbird.json"), "utf8"));
  const named = (m) => [
    ...Object.values(m.icons), m.action.default_popup, m.options_ui.page, ...(m.background.scripts || []),
    m.background.service_worker, m.message_display_action?.default_popup, m.storage?.managed_schema,
    ...(m.content_scripts || []).flatMap((c) => [...c.js, ...(c.css || [])]),
  ].filter(Boolean);
  for (const path of [...named(web), ...named(tb)]) assert.ok(existsSync(join(ROOT, path)), path);
  assert.equal(web.background.service_worker, web.background.scripts[0]);
  assert.equal(web.browser_specific_settings.gecko.id, "sidep-helper@sidep-helper.local");
  assert.deepEqual(web.permissions, ["storage", "scripting", "nativeMessaging"]);
  assert.match(web.key, /^MII[A-Za-z0-9+/]+=*$/, "the public key that fixes the Chrome/Edge id");
  assert.deepEqual(web.host_permissions, ["http://127.0.0.1/*", "http://localhost/*", "https://mailiz.mssante.fr/*"]);
  assert.equal(web.content_scripts[0].all_frames, true);
  assert.equal(tb.browser_specific_settings.gecko.strict_min_version, "128.0");
  assert.deepEqual(tb.permissions, ["storage", "messagesRead", "accountsRead", "nativeMessaging"]);
  assert.deepEqual(tb.host_permissions, ["http://127.0.0.1/*", "http://localhost/*"]);
  assert.equal(tb.content_security_policy, undefined);
  assert.equal(web.content_security_policy, undefined);
});

function zipNames(path) {
  const data = readFileSync(path);
  const end = data.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = data.readUInt16LE(end + 10);
  let at = data.readUInt32LE(end + 16);
  const out = new Map();
  for (let i = 0; i < count; i++) {
    const method = data.readUInt16LE(at + 10);
    const size = data.readUInt32LE(at + 20);
    const nameLength = data.readUInt16LE(at + 28);
    const extra = data.readUInt16LE(at + 30) + data.readUInt16LE(at + 32);
    const name = data.subarray(at + 46, at + 46 + nameLength).toString("utf8");
    const local = data.readUInt32LE(at + 42);
    const start = local + 30 + data.readUInt16LE(local + 26) + data.readUInt16LE(local + 28);
    const body = data.subarray(start, start + size);
    out.set(name, method === 8 ? inflateRawSync(body) : body);
    at += 46 + nameLength + extra;
  }
  return out;
}

test("build: unpacked folders and packages with the manifest at their root", () => {
  execFileSync(process.execPath, [join(ROOT, "build"), "--quiet"], { cwd: ROOT });
  const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  for (const [pkg, folder] of [
    ["sidep-helper-webmail.zip", "webmail"],
    ["sidep-helper-firefox.xpi", "webmail"],
    ["sidep-helper-thunderbird.xpi", "thunderbird"],
  ]) {
    const entries = zipNames(join(ROOT, "dist", pkg));
    const manifest = JSON.parse(entries.get("manifest.json").toString("utf8"));
    assert.equal(manifest.version, version);
    assert.deepEqual(JSON.parse(readFileSync(join(ROOT, "dist", folder, "manifest.json"), "utf8")), manifest);
    for (const name of entries.keys()) assert.ok(existsSync(join(ROOT, "dist", folder, name)), `${pkg}: ${name}`);
    assert.ok(entries.has("_locales/fr/messages.json"));
    assert.ok(!entries.has("build") && ![...entries.keys()].some((n) => n.startsWith("test/") || n.startsWith("node_modules/")));
  }
  const web = zipNames(join(ROOT, "dist", "sidep-helper-webmail.zip"));
  assert.ok(web.has("src/content/roundcube.js") && !web.has("src/background/thunderbird.js"));
  const tb = zipNames(join(ROOT, "dist", "sidep-helper-thunderbird.xpi"));
  assert.ok(tb.has("src/background/thunderbird.js") && !tb.has("src/content/roundcube.js"));
});
