// The promotions view: reach and rate charts, the list with edit / pause / resume / delete, and the form
// that creates or edits a promotion (PUT /v1/promotions/{id}; a 400's details are shown at their fields).

import { ApiError, api } from "./api.js";
import { barChart, formats } from "./charts.js";
import { h, show } from "./dom.js";
import { eligibilityFields, eligibilitySummary, eligibilityValue } from "./eligibility.js";
import { confirmAction, control, form, numberOrNull, words } from "./forms.js";
import { $, badge, button, card, count, dateTime, errorBox, flash, hooks, shownStatus, table } from "./ui.js";

/** Impressions, clicks and conversions of report rows (promotions or variants), one group per row. */
export const countsChart = (title, labels, rows) => barChart({
  title, categories: labels, format: formats.count,
  series: ["impressions", "clicks", "conversions"].map((key) => ({ name: key, values: rows.map((r) => r[key]) })),
});

/** Click and conversion rates of report rows with their 95% intervals (none where nothing was shown). */
export const ratesChart = (title, labels, rows, shown = (r) => r.impressions > 0) => barChart({
  title, categories: labels, format: formats.percent,
  series: [["click_rate", "click rate"], ["conversion_rate", "conversion rate"]].map(([key, name]) => ({
    name,
    values: rows.map((r) => (shown(r) ? r[key].value : null)),
    low: rows.map((r) => (shown(r) ? r[key].low : null)),
    high: rows.map((r) => (shown(r) ? r[key].high : null)),
  })),
});

const utcInput = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16) : "");
const utcValue = (local) => (local ? `${local}:00+00:00` : null);

async function saved(message) {
  flash(message, "ok");
  await hooks.loadView("promotions");
  $("promotions-title").focus();
}

async function setStatus(promotion, status) {
  try {
    await api.putPromotion(promotion.promotion_id, { ...promotion, status });
    await saved(`Promotion “${promotion.name}” is now ${status}.`);
  } catch (error) {
    show($("promotion-form-area"), errorBox(error, "change promotions"));
  }
}

async function remove(promotion) {
  const sure = await confirmAction(`Delete “${promotion.name}”?`,
    "It stops being served at once. Its report stays readable through the API.", "Delete promotion",
    { danger: true });
  if (!sure) return;
  try {
    await api.deletePromotion(promotion.promotion_id);
    await saved(`Promotion “${promotion.name}” was deleted.`);
  } catch (error) {
    show($("promotion-form-area"), errorBox(error, "delete promotions"));
  }
}

/** The create / edit form: offer, targets, time window, weight, status, budget, eligibility and cap. */
function promotionForm(existing) {
  const p = existing ?? { status: "draft", weight: 1, offer: {}, items: [], categories: [] };
  const now = new Date();
  const fields = [
    control("Promotion ID", { name: "promotion_id", type: "text", required: true, value: existing?.promotion_id,
      readonly: Boolean(existing), paths: ["promotion_id"], hint: "letters, digits, - _ . (cannot change later)",
      autocomplete: "off", spellcheck: "false" }),
    control("Name", { name: "name", type: "text", required: true, value: p.name, paths: ["name"] }),
    control("Offer text", { name: "offer_text", type: "text", required: true, value: p.offer.text,
      paths: ["offer.text", "offer"] }),
    h("div", { class: "form-row" },
      control("Percent off", { name: "percent_off", type: "number", step: "any", value: p.offer.percent_off,
        paths: ["offer.percent_off"], hint: "0 to 100; or an amount off, not both" }),
      control("Amount off", { name: "amount_off", type: "number", step: "any", value: p.offer.amount_off,
        paths: ["offer.amount_off"] })),
    control("Items", { name: "items", tag: "textarea", rows: 2, value: p.items.join(", "), paths: ["items"],
      hint: "item ids separated by commas or spaces; leave items and categories empty for a site-wide offer" }),
    control("Categories", { name: "categories", type: "text", value: p.categories.join(", "),
      paths: ["categories"] }),
    h("div", { class: "form-row" },
      control("Starts (UTC)", { name: "starts_at", type: "datetime-local", required: true,
        value: utcInput(p.starts_at ?? now.toISOString()), paths: ["starts_at"] }),
      control("Ends (UTC)", { name: "ends_at", type: "datetime-local", required: true,
        value: utcInput(p.ends_at ?? new Date(now.getTime() + 14 * 86_400_000).toISOString()), paths: ["ends_at"] })),
    h("div", { class: "form-row" },
      control("Weight", { name: "weight", type: "number", step: "any", value: p.weight, paths: ["weight"],
        hint: "ranking multiplier, above 0" }),
      control("Status", { name: "status", tag: "select", value: p.status, paths: ["status"],
        options: [["draft", "draft"], ["active", "active"], ["paused", "paused"]] })),
    h("div", { class: "form-row" },
      control("Impression budget", { name: "budget_impressions", type: "number", step: "1", min: "0",
        value: p.budget?.impressions, paths: ["budget.impressions", "budget"] }),
      control("Redemption budget", { name: "budget_redemptions", type: "number", step: "1", min: "0",
        value: p.budget?.redemptions, paths: ["budget.redemptions"] })),
    eligibilityFields(p.eligibility, p.cap),
  ];
  const cancel = button("Cancel", () => {
    show($("promotion-form-area"));
    $("new-promotion").focus();
  });
  return form(existing ? `Edit promotion “${existing.name}”` : "New promotion", fields,
    "Save promotion", async (node) => {
      const v = (name) => node.elements[name].value;
      const id = v("promotion_id").trim();
      const budget = { impressions: numberOrNull(v("budget_impressions")),
        redemptions: numberOrNull(v("budget_redemptions")) };
      const body = {
        ...existing, name: v("name"), items: words(v("items")), categories: words(v("categories")),
        offer: { text: v("offer_text"), percent_off: numberOrNull(v("percent_off")),
          amount_off: numberOrNull(v("amount_off")) },
        starts_at: utcValue(v("starts_at")), ends_at: utcValue(v("ends_at")),
        weight: numberOrNull(v("weight")) ?? 1, status: v("status"),
        budget: budget.impressions == null && budget.redemptions == null ? null : budget,
        ...eligibilityValue(node),
      };
      if (!id) throw new ApiError(400, "invalid", "invalid", { json: { promotion_id: ["Required."] } });
      await api.putPromotion(id, body);
      await saved(`Promotion “${body.name}” saved.`);
    }, [cancel]);
}

function openForm(existing) {
  const area = $("promotion-form-area");
  show(area, promotionForm(existing));
  area.querySelector("input:not([readonly])").focus();
}

export async function renderPromotions() {
  const { promotions } = await api.promotions();
  const toolbar = h("div", { class: "toolbar" },
    button("New promotion", () => openForm(null), { id: "new-promotion", class: "button primary" }));
  const area = h("div", { id: "promotion-form-area" });
  if (!promotions.length) return [toolbar, area, h("p", { class: "muted" }, "No promotions yet.")];
  const settled = await Promise.allSettled(promotions.map((p) => api.promotionReport(p.promotion_id)));
  const reports = settled.map((r) => (r.status === "fulfilled" ? r.value : null));
  const shown = reports.filter(Boolean);
  const labels = shown.map((r) => r.name || r.promotion_id);
  return [
    toolbar, area,
    h("div", { class: "grid two" },
      card("Reach", countsChart("Impressions, clicks and conversions per promotion", labels, shown)),
      card("Rates", ratesChart("Click and conversion rate per impression, with 95% intervals", labels, shown))),
    card("All promotions", table("Promotions",
      ["Promotion", "Status", "Runs", "Offer", "Weight", "Impressions", "Budget left", "Actions"],
      promotions.map((p, index) => {
        const report = reports[index];
        const left = report?.budget ?? {};
        const budget = [left.impressions_left != null ? `${count(left.impressions_left)} impressions` : null,
          left.redemptions_left != null ? `${count(left.redemptions_left)} redemptions` : null]
          .filter(Boolean).join(", ") || "no budget";
        const status = shownStatus(p);
        const toggle = p.status === "active"
          ? button("Pause", () => setStatus(p, "paused"), { "aria-label": `Pause ${p.name}` })
          : button(p.status === "paused" ? "Resume" : "Activate", () => setStatus(p, "active"),
            { "aria-label": `${p.status === "paused" ? "Resume" : "Activate"} ${p.name}` });
        return [
          h("span", {}, h("strong", {}, p.name), h("div", { class: "muted" }, p.promotion_id),
            h("div", { class: "muted" }, `For ${eligibilitySummary(p.eligibility, p.cap)}`)),
          h("span", {}, badge(status, `status-${status}`), report?.live ? badge("live", "live") : null),
          `${dateTime(p.starts_at, false)} → ${dateTime(p.ends_at)}`,
          p.offer.text, formats.number(p.weight), report ? count(report.impressions) : "—", budget,
          h("span", { class: "actions" },
            button("Edit", () => openForm(p), { "aria-label": `Edit ${p.name}` }), toggle,
            button("Delete", () => remove(p), { class: "button danger", "aria-label": `Delete ${p.name}` })),
        ];
      }))),
  ];
}
