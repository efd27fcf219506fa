// The panel's demo banner: shown only when the helper says it runs « serve --demo », as text.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DEMO_HEADER, isDemo, showDemoBanner } from "../src/shared/demo.js";
import { ROOT, messages } from "./helpers/fakes.mjs";

const fr = messages("fr");
const t = (key) => fr[key].message;

function element() {
  return { hidden: true, textContent: "", dataset: {} };
}

test("the health answer or the demo header turns demo mode on; nothing else does", () => {
  assert.equal(isDemo({ status: "ok", demo: true }), true);
  assert.equal(isDemo({ status: "ok", demo: false }), false);
  assert.equal(isDemo({ status: "ok" }), false);
  assert.equal(isDemo({ status: "ok", demo: "true" }), false); // only the JSON boolean counts
  assert.equal(isDemo(null), false);
  assert.equal(isDemo(null, new Headers({ [DEMO_HEADER]: "1" })), true);
  assert.equal(isDemo(null, new Headers({ "X-Sidep-Helper": "0.1.0" })), false);
});

test("the banner says « DÉMO — certificats fictifs » in demo mode and disappears otherwise", () => {
  const banner = element();
  showDemoBanner(banner, true, t);
  assert.equal(banner.hidden, false);
  assert.equal(banner.textContent, "DÉMO — certificats fictifs");
  assert.equal(banner.dataset.demo, "1");
  showDemoBanner(banner, false, t);
  assert.equal(banner.hidden, true);
  assert.equal(banner.textContent, "");
  assert.equal(banner.dataset.demo, undefined);
});

test("the panel has the banner, hidden by default, styled, and fills it from the health answer", () => {
  const html = readFileSync(join(ROOT, "src/panel/popup.html"), "utf8");
  assert.match(html, /<p id="demo-banner" class="demo-banner" role="status" hidden><\/p>/);
  assert.match(readFileSync(join(ROOT, "src/panel/popup.css"), "utf8"), /\.demo-banner \{/);
  const js = readFileSync(join(ROOT, "src/panel/popup.js"), "utf8");
  assert.match(js, /showDemoBanner\(\$\("demo-banner"\), isDemo\(health\), t\)/);
  assert.equal(messages("en").demoBanner.message, "DEMO — fictitious certificates");
});
