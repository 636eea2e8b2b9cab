// The Tailor console: key entry, hash routing between four views, and their rendering.
// Every number comes from the /v1 API (see api.js); nothing is cached beyond the current view.

import { ApiError, api, apiKey } from "./api.js";
import { barChart, formats } from "./charts.js";
import { h, show } from "./dom.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["customer", "promotions", "messages", "models"];
const MAX_SLOTS_SERVED = 10;
const METRICS = [["ndcg", "NDCG"], ["precision", "Precision"], ["recall", "Recall"], ["coverage", "Coverage"]];

// ---------------------------------------------------------------- messages and errors

function flash(message, kind = "info") {
  const box = $("flash");
  show(box, message ? h("p", { class: `flash-${kind}` }, message) : null);
}

/** A readable explanation of an ApiError, saying what to do about 401 and 403. */
function explain(error, action = "see this") {
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

function errorBox(error, action) {
  if (error.status === 401) requireKey(explain(error));
  return h("div", { class: "notice notice-error", role: "alert" }, explain(error, action));
}

function loading(what) {
  return h("p", { class: "muted", role: "status" }, `Loading ${what}…`);
}

let fills = 0;

/** Fill ``container`` with what ``render`` builds, or with an explanation of the error. Only the latest
 * request for a container is shown, so a slow answer never replaces a newer one. */
async function fill(container, what, render) {
  const ticket = String(++fills);
  container.dataset.ticket = ticket;
  show(container, loading(what));
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

// ---------------------------------------------------------------- small formatting helpers

const dateTime = (value, zone = true) => {
  if (value == null) return "—";
  // Epoch seconds, or ISO 8601; timestamps of the data carry no offset and are UTC (not browser time).
  const iso = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(iso);
  return Number.isNaN(date.getTime()) ? String(value) : `${date.toISOString().slice(0, 16).replace("T", " ")}${zone ? " UTC" : ""}`;
};
const money = (value) => (value == null ? "—" : value.toLocaleString("en", { maximumFractionDigits: 2 }));
// An active promotion outside its window is not "active" to a marketer: it has ended, or is scheduled.
const shownStatus = (p, now = Date.now()) => {
  if (p.status !== "active") return p.status;
  if (Date.parse(p.ends_at) <= now) return "ended";
  if (Date.parse(p.starts_at) > now) return "scheduled";
  return "active";
};
const badge = (text, kind = "") => h("span", { class: `badge ${kind}` }, text);
const field = (term, ...value) => [h("dt", {}, term), h("dd", {}, ...value)];

function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, ...headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, cell)))))));
}

function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

// ---------------------------------------------------------------- customer

async function lookUpCustomer(customer) {
  const [recs, profile] = await Promise.allSettled([api.recommendations(customer), api.profile(customer)]);
  const serveArea = h("div", { class: "serve-result" });
  const serveButton = h("button", { type: "button", class: "button", id: "serve-button" },
    "Serve promotions and messages");
  serveButton.addEventListener("click", () => fill(serveArea, "promotions and messages", () => serve(customer)));
  return [
    h("div", { class: "grid customer" },
      profile.status === "fulfilled" ? profileCard(profile.value) : card("Profile", errorBox(profile.reason)),
      recs.status === "fulfilled" ? recommendationsCard(recs.value) : card("Recommendations", errorBox(recs.reason))),
    card("Promotions and message variants",
      h("p", {}, "Asking for them is a real serve: it counts an impression against the promotions’ caps and " +
        "budgets and records a bandit decision, exactly like a page view in the shop."),
      serveButton, serveArea),
  ];
}

function profileCard(p) {
  const since = p.days_since_last_purchase == null ? "" : ` (${Math.round(p.days_since_last_purchase)} days ago)`;
  return card("Profile",
    h("dl", { class: "facts" },
      field("Journey stage", badge(p.journey_stage, "stage")),
      field("Orders", formats.count(p.orders)),
      field("Spend", money(p.spend)),
      field("First purchase", dateTime(p.first_purchase)),
      field("Last purchase", dateTime(p.last_purchase), since),
      field("Country", p.country ?? "—"),
      field("In the model", p.known ? "yes" : "no (new or only live events)"),
      field("Live purchases / session items", `${p.live_purchases} / ${p.session_items}`)),
    p.top_categories.length ? h("h3", {}, "Top categories") : null,
    p.top_categories.length
      ? h("ul", { class: "chips" }, ...p.top_categories.map((c) => h("li", {}, `${c.category} (${c.orders})`)))
      : null,
    p.top_items.length ? h("h3", {}, "Top items") : null,
    p.top_items.length ? table("Top items", ["Item", "Title", "Orders"],
      p.top_items.map((i) => [i.item_id, i.title ?? "—", formats.count(i.orders)])) : null);
}

function recommendationsCard(r) {
  const categories = r.items.some((item) => item.category); // catalogues without categories: no empty column
  const headers = ["#", "Item", "Title", categories ? "Category" : null, "Price", "Score", "Reason"];
  const rows = r.items.map((item, index) => [String(index + 1), item.item_id, item.title ?? "—",
    categories ? item.category ?? "—" : null, money(item.price), item.score.toFixed(3), item.reason ?? "—"]);
  return card("Recommendations",
    h("p", { class: "meta" }, badge(r.source, "source"), ` model ${r.model_version}`),
    r.items.length
      ? table("Recommended items with reasons", headers.filter((x) => x !== null),
        rows.map((row) => row.filter((x) => x !== null)))
      : h("p", { class: "muted" }, "No recommendations."));
}

async function serve(customer) {
  const [promotions, slots] = await Promise.all([api.customerPromotions(customer), api.slots()]);
  const names = slots.slots.map((s) => s.slot).slice(0, MAX_SLOTS_SERVED);
  const messages = await Promise.allSettled(names.map((slot) => api.customerMessage(customer, slot)));
  return h("div", { class: "grid two" },
    h("div", {}, h("h3", {}, `Promotions (${promotions.source})`),
      promotions.promotions.length
        ? h("ul", { class: "offers" }, ...promotions.promotions.map((p) => h("li", {},
          h("strong", {}, p.name), ` — ${p.offer.text}`,
          h("div", { class: "muted" }, `score ${p.score.toFixed(3)} · ${p.reason}`))))
        : h("p", { class: "muted" }, "No promotion is live and allowed for this customer.")),
    h("div", {}, h("h3", {}, "Message variants"),
      names.length
        ? h("ul", { class: "offers" }, ...messages.map((result, index) => h("li", {},
          h("strong", {}, names[index]), " ",
          result.status === "fulfilled" ? messageLine(result.value) : explain(result.reason))))
        : h("p", { class: "muted" }, "No message slot is defined.")));
}

function messageLine(m) {
  const how = m.sticky ? "kept from an earlier decision" : `${m.policy}, p = ${m.propensity.toFixed(2)}`;
  const tone = m.variant.tone && m.variant.tone !== m.variant.id ? badge(m.variant.tone, "tone") : null;
  return [badge(m.variant.id), tone,
    h("div", {}, `“${m.variant.content}”`), h("div", { class: "muted" }, how)];
}

// ---------------------------------------------------------------- reports (promotions and message slots)

/** Impressions, clicks and conversions of report rows (promotions or variants), one group per row. */
const countsChart = (title, labels, rows) => barChart({
  title, categories: labels, format: formats.count,
  series: ["impressions", "clicks", "conversions"].map((key) => ({ name: key, values: rows.map((r) => r[key]) })),
});

/** Click and conversion rates of report rows with their 95% intervals. */
const ratesChart = (title, labels, rows) => barChart({
  title, categories: labels, format: formats.percent,
  series: [["click_rate", "click rate"], ["conversion_rate", "conversion rate"]].map(([key, name]) => ({
    name, values: rows.map((r) => r[key].value), low: rows.map((r) => r[key].low), high: rows.map((r) => r[key].high),
  })),
});

// ---------------------------------------------------------------- promotions

async function renderPromotions() {
  const { promotions } = await api.promotions();
  if (!promotions.length) return h("p", { class: "muted" }, "No promotions yet: create them with PUT /v1/promotions/{id}.");
  const settled = await Promise.allSettled(promotions.map((p) => api.promotionReport(p.promotion_id)));
  const reports = settled.map((r) => (r.status === "fulfilled" ? r.value : null));
  const shown = reports.filter(Boolean);
  const labels = shown.map((r) => r.name || r.promotion_id);
  return [
    h("div", { class: "grid two" },
      card("Reach", countsChart("Impressions, clicks and conversions per promotion", labels, shown)),
      card("Rates", ratesChart("Click and conversion rate per impression, with 95% intervals", labels, shown))),
    card("All promotions", table("Promotions",
      ["Promotion", "Status", "Runs", "Offer", "Weight", "Impressions", "Budget left"],
      promotions.map((p, index) => {
        const report = reports[index];
        const left = report?.budget ?? {};
        const budget = [left.impressions_left != null ? `${formats.count(left.impressions_left)} impressions` : null,
          left.redemptions_left != null ? `${formats.count(left.redemptions_left)} redemptions` : null]
          .filter(Boolean).join(", ") || "no budget";
        return [
          h("span", {}, h("strong", {}, p.name), h("div", { class: "muted" }, p.promotion_id)),
          h("span", {}, badge(shownStatus(p), `status-${shownStatus(p)}`), report?.live ? badge("live", "live") : null),
          `${dateTime(p.starts_at, false)} → ${dateTime(p.ends_at)}`,
          p.offer.text, String(p.weight), report ? formats.count(report.impressions) : "—", budget,
        ];
      }))),
  ];
}

// ---------------------------------------------------------------- message slots

async function renderMessages() {
  const { slots } = await api.slots();
  if (!slots.length) return h("p", { class: "muted" }, "No message slots yet: create them with PUT /v1/messages/{slot}.");
  const reports = await Promise.allSettled(slots.map((s) => api.slotReport(s.slot)));
  return slots.map((slot, index) => (reports[index].status === "fulfilled"
    ? slotCard(reports[index].value) : card(slot.slot, errorBox(reports[index].reason))));
}

function slotCard(report) {
  const variants = report.variants;
  const labels = variants.map((v) => (v.tone && v.tone !== v.id ? `${v.id} (${v.tone})` : v.id) +
    (v.removed ? " – removed" : ""));
  const ips = report.off_policy;
  const shares = report.policy;
  const estimates = [
    ["Learned policy (IPS)", ips.learned], ["Uniform random (IPS)", ips.uniform],
    ["Bandit share (observed)", shares.bandit_share.reward_rate],
    ["Uniform share (observed)", shares.uniform_share.reward_rate],
  ];
  return h("section", { class: "card" },
    h("h2", {}, report.slot, " ", badge(report.status, `status-${report.status}`)),
    h("p", { class: "meta" }, `exploration ${formats.percent(report.exploration)} · sticky ${report.sticky_days} days · ` +
      `${formats.count(ips.decisions)} decisions` + (ips.lift != null ? ` · lift over uniform ×${ips.lift.toFixed(2)}` : "")),
    h("div", { class: "grid two" },
      countsChart("Impressions, clicks and conversions per variant", labels, variants),
      ratesChart("Click and conversion rate per decision, 95% intervals", labels, variants),
      barChart({
        title: "Reward rate: learned policy vs uniform random, 95% intervals", format: formats.percent,
        categories: estimates.map(([name]) => name),
        series: [{
          name: "reward rate", values: estimates.map(([, e]) => e.value ?? null),
          low: estimates.map(([, e]) => e.low ?? null), high: estimates.map(([, e]) => e.high ?? null),
        }],
      })));
}

// ---------------------------------------------------------------- models

async function renderModels() {
  const listing = await api.models();
  const status = h("div", { id: "models-status", role: "status", "aria-live": "polite" });
  const rollback = h("button", { type: "button", class: "button", id: "rollback-button" },
    "Roll back to the previous version");
  rollback.addEventListener("click", () => changeModel(rollback, status, () => api.rollback(), "roll back the model"));
  const versions = listing.versions;
  const evaluated = versions.filter((v) => v.evaluation?.model);
  const ndcg = (view, who) => evaluated.map((v) => v.evaluation[who]?.[view]?.ndcg ?? null);
  return [
    h("div", { class: "toolbar" },
      h("p", {}, "Active: ", h("strong", { id: "active-version" }, listing.active ?? "none"),
        listing.serving && listing.serving !== listing.active ? ` (this server still serves ${listing.serving})` : ""),
      rollback),
    status,
    evaluated.length > 1 ? card("Versions compared", barChart({
      title: "NDCG on the holdout, overall and discovery, against the popularity baseline",
      categories: evaluated.map((v) => `${v.version} · ${v.algorithm}`), format: formats.decimal,
      label: (category) => category.replace(/^\S+-(\w+) · (.*)$/, "$2 …$1"), // "item-knn …00f8"
      series: [
        { name: "overall", values: ndcg("overall", "model") },
        { name: "discovery", values: ndcg("discovery", "model") },
        { name: "baseline overall", values: ndcg("overall", "baseline") },
        { name: "baseline discovery", values: ndcg("discovery", "baseline") },
      ],
    })) : null,
    ...versions.map((version) => versionCard(version, status)),
    card("History", table("Version history", ["When", "Action", "Version", "Previous"],
      listing.history.slice(0, 15).map((e) => [dateTime(e.at), e.action, e.version ?? "—", e.previous ?? "—"]))),
  ];
}

function versionCard(v, status) {
  const e = v.evaluation;
  const activate = h("button", { type: "button", class: "button primary", "data-activate": v.version,
    disabled: v.active }, v.active ? "Active" : "Activate");
  activate.addEventListener("click", () => changeModel(activate, status, () => api.activate(v.version),
    "activate a model"));
  const chart = (view) => barChart({
    title: `${view === "overall" ? "Overall" : "Discovery (items never bought before)"}` +
      ` at k=${e.k}: ${e.model.algorithm} vs popularity baseline`,
    categories: METRICS.map(([key, name]) => (key === "coverage" ? name : `${name}@${e.k}`)),
    format: formats.decimal,
    series: [
      { name: e.model.algorithm, values: METRICS.map(([key]) => e.model[view]?.[key] ?? null) },
      { name: `${e.baseline?.algorithm ?? "popular"} (baseline)`, values: METRICS.map(([key]) => e.baseline?.[view]?.[key] ?? null) },
    ],
  });
  const counts = v.counts ?? {};
  return h("section", { class: `card version${v.active ? " is-active" : ""}`, "data-version": v.version },
    h("div", { class: "view-head" },
      h("h2", {}, v.version, " ", v.active ? badge("active", "live") : null),
      activate),
    h("p", { class: "meta" }, `${v.algorithm ?? "?"} · trained ${dateTime(v.created_at)} · published ` +
      `${dateTime(v.published_at)} · ${formats.count(counts.customers)} customers × ${formats.count(counts.items)} items`),
    e?.model
      ? [h("p", { class: "meta" }, `Holdout: last ${e.holdout_days} days (from ${dateTime(e.cutoff)}), ` +
          `${formats.count(e.customers)} customers`),
        h("div", { class: "grid two" }, chart("overall"), chart("discovery"))]
      : h("p", { class: "muted" }, "Trained without an evaluation (--no-eval): no metrics to show."));
}

/** Run an admin action; on success reload the list, on 403 say clearly that an admin key is needed. */
async function changeModel(button, status, action, what) {
  button.disabled = true;
  try {
    const result = await action();
    flash(`Version ${result.version} is now active${result.serving === result.version ? " and served" : ""}.`, "ok");
    await loadView("models");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    show(status, h("div", { class: "notice notice-error", role: "alert" }, explain(error, what)));
    if (error.status === 401) requireKey(explain(error));
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- routing and key handling

const RENDERERS = { promotions: renderPromotions, messages: renderMessages, models: renderModels };

async function loadView(name) {
  const render = RENDERERS[name];
  if (render) await fill($(`${name}-result`), name, render);
}

function currentView() {
  const name = location.hash.slice(1);
  return VIEWS.includes(name) ? name : "customer";
}

function route() {
  if (!apiKey.get()) return;
  const name = currentView();
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  flash("");
  loadView(name);
}

function requireKey(message = "") {
  apiKey.clear();
  for (const view of VIEWS) $(`view-${view}`).hidden = true;
  $("nav").hidden = true;
  $("key-status").hidden = true;
  $("key-view").hidden = false;
  $("key-error").textContent = message;
  $("key-input").value = "";
  $("key-input").focus();
}

function enter() {
  $("key-view").hidden = true;
  $("nav").hidden = false;
  $("key-status").hidden = false;
  $("main").focus();
  route();
}

async function submitKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  apiKey.set(key);
  try {
    await api.promotions(); // the console's reading scope: refuse unknown and read-only keys up front
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401 || error.status === 403) {
      requireKey(explain(error, "use the console"));
      return;
    } // anything else (Redis down, ...) is shown by the views themselves
  }
  $("key-input").value = "";
  enter();
}

function start() {
  $("key-form").addEventListener("submit", submitKey);
  $("forget-key").addEventListener("click", () => requireKey());
  $("customer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const customer = $("customer-input").value.trim();
    if (customer) fill($("customer-result"), `customer ${customer}`, () => lookUpCustomer(customer));
  });
  for (const button of document.querySelectorAll("[data-refresh]")) {
    button.addEventListener("click", () => loadView(button.dataset.refresh));
  }
  window.addEventListener("hashchange", route);
  if (apiKey.get()) enter();
  else requireKey();
}

start();
