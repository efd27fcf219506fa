// Demo mode (« sidep-helper serve --demo »): the helper serves fictitious certificates from its own data
// folder and says so in /health ("demo": true) and on every response (X-Sidep-Helper-Demo: 1). The panel
// then shows a banner, so nobody takes a demo certificate for a patient's. Text only (textContent).

export const DEMO_HEADER = "X-Sidep-Helper-Demo";

/** True when the helper's health answer, or a response's headers, say it runs the demo. */
export function isDemo(health, headers) {
  if (health && health.demo === true) return true;
  return Boolean(headers && typeof headers.get === "function" && headers.get(DEMO_HEADER) === "1");
}

/** Shows (with the translated text) or hides the banner element. */
export function showDemoBanner(element, demo, t) {
  element.hidden = !demo;
  element.textContent = demo ? t("demoBanner") : "";
  if (demo) element.dataset.demo = "1";
  else delete element.dataset.demo;
}
