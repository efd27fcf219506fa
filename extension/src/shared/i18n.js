// Translation helpers. The strings live in _locales/<lang>/messages.json (French by default).
//
// t(key, substitutions) behaves like chrome.i18n.getMessage; makeTranslator() gives the same from a
// parsed messages.json (unit tests, and a fallback when the i18n API is missing).

/** A t() function over a parsed messages.json (Chrome's format, with named placeholders). */
export function makeTranslator(messages) {
  return (key, substitutions = []) => {
    const entry = messages[key];
    if (!entry) return "";
    const subs = Array.isArray(substitutions) ? substitutions : [substitutions];
    const placeholders = entry.placeholders || {};
    return entry.message
      .replace(/\$([A-Za-z0-9_@]+)\$/g, (whole, name) => {
        const ph = placeholders[name.toLowerCase()];
        if (!ph) return whole;
        return ph.content.replace(/\$(\d)/g, (_m, n) => String(subs[Number(n) - 1] ?? ""));
      })
      .replace(/\$\$/g, "$");
  };
}

/** The browser's own i18n (chrome.i18n / browser.i18n). */
export function browserTranslator(api = globalThis.browser ?? globalThis.chrome) {
  return (key, substitutions = []) => {
    const subs = (Array.isArray(substitutions) ? substitutions : [substitutions]).map((s) => String(s ?? ""));
    return api.i18n.getMessage(key, subs) || key;
  };
}

/**
 * Fill the static text of a page: data-i18n (text), data-i18n-placeholder, data-i18n-title,
 * data-i18n-aria-label. Text only (textContent / attributes), never markup.
 */
export function localizePage(root, t) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, data] of [
    ["placeholder", "i18nPlaceholder"],
    ["title", "i18nTitle"],
    ["aria-label", "i18nAriaLabel"],
  ]) {
    for (const el of root.querySelectorAll(`[data-${attr === "aria-label" ? "i18n-aria-label" : `i18n-${attr}`}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
}
