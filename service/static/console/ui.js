// What every view shares: the flash line, error explanations, loading containers, tables, cards and the
// people-friendly formats of dates, prices and counts.

import { ApiError } from "./api.js";
import { formats } from "./charts.js";
import { h, show } from "./dom.js";

export const $ = (id) => document.getElementById(id);

/** Set by app.js: back to the key form (after a 401), and reload a view (after a change). */
export const hooks = { requireKey: () => {}, loadView: async () => {} };

export function flash(message, kind = "info") {
  show($("flash"), message ? h("p", { class: `flash-${kind}` }, message) : null);
}

/** A readable explanation of an ApiError, saying what to do about 401 and 403. */
export function explain(error, action = "see this") {
  if (error.status === 401) return `The API key was refused (${error.message}). Enter a valid key.`;
  if (error.status === 403) {
    const needed = error.details?.required_scope ?? "a higher";
    const held = error.details?.key_scope;
    return `Your API key ${held ? `has scope “${held}” and ` : ""}cannot ${action}: ` +
      `this needs scope “${needed}”. Ask for a key with that scope.`;
  }
  if (error.status === 0) return error.message;
  return `${error.message} (HTTP ${error.status}${error.code ? `, ${error.code}` : ""})`;
}

export function errorBox(error, action) {
  if (error.status === 401) hooks.requireKey(explain(error));
  return h("div", { class: "notice notice-error", role: "alert" }, explain(error, action));
}

let fills = 0;

/** Fill ``container`` with what ``render`` builds, or with an explanation of the error. Only the latest
 * request for a container is shown, so a slow answer never replaces a newer one. */
export async function fill(container, what, render) {
  const ticket = String(++fills);
  container.dataset.ticket = ticket;
  show(container, h("p", { class: "muted", role: "status" }, `Loading ${what}…`));
  container.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await render();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    content = errorBox(error, `see ${what}`);
  }
  if (container.dataset.ticket !== ticket) return;
  show(container, content);
  container.removeAttribute("aria-busy");
}

// ---------------------------------------------------------------- formats

export const dateTime = (value, zone = true) => {
  if (value == null) return "—";
  // Epoch seconds, or ISO 8601; timestamps of the data carry no offset and are UTC (not browser time).
  const iso = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(iso);
  return Number.isNaN(date.getTime()) ? String(value) : `${date.toISOString().slice(0, 16).replace("T", " ")}${zone ? " UTC" : ""}`;
};
const priceFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
/** A price: two decimals with the reader's grouping (the catalogue carries no currency). */
export const money = (value) => (value == null ? "—" : priceFormat.format(value));
export const count = formats.count;

// An active promotion outside its window is not "active" to a marketer: it has ended, or is scheduled.
export const shownStatus = (p, now = Date.now()) => {
  if (p.status !== "active") return p.status;
  if (Date.parse(p.ends_at) <= now) return "ended";
  if (Date.parse(p.starts_at) > now) return "scheduled";
  return "active";
};

// ---------------------------------------------------------------- building blocks

export const badge = (text, kind = "") => h("span", { class: `badge ${kind}` }, text);
export const field = (term, ...value) => [h("dt", {}, term), h("dd", {}, ...value)];

/** A table whose caption names it; ``stacked`` tables turn each row into a card on narrow screens (every
 * cell then shows its column's name, from data-label). */
export function table(caption, headers, rows, { stacked = false } = {}) {
  return h("div", { class: `table-wrap${stacked ? " stacked" : ""}` }, h("table", {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, ...headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {},
      ...cells.map((cell, index) => h("td", { "data-label": headers[index] }, cell)))))));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", class: "button", ...attrs, onclick }, label);
}
