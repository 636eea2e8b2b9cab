// The customer view: profile, recommendations with their reasons, and a preview (preview=true) of the
// promotions and message variants the customer would be shown, which counts no impression.

import { api } from "./api.js";
import { formats } from "./charts.js";
import { h } from "./dom.js";
import { badge, card, count, dateTime, errorBox, explain, field, fill, money, table } from "./ui.js";

const MAX_SLOTS_SERVED = 10;

export async function lookUpCustomer(customer) {
  const [recs, profile] = await Promise.allSettled([api.recommendations(customer), api.profile(customer)]);
  const serveArea = h("div", { class: "serve-result" });
  const serveButton = h("button", { type: "button", class: "button", id: "preview-button" },
    "Preview promotions and messages");
  serveButton.addEventListener("click", () => fill(serveArea, "promotions and messages", () => preview(customer)));
  return [
    h("div", { class: "grid customer" },
      profile.status === "fulfilled" ? profileCard(profile.value) : card("Profile", errorBox(profile.reason)),
      recs.status === "fulfilled" ? recommendationsCard(recs.value) : card("Recommendations", errorBox(recs.reason))),
    card("Promotions and message variants",
      h("p", {}, "A preview: what this customer would be shown now. It counts no impression, uses no cap or " +
        "budget and records no decision (the shop’s own requests do)."),
      serveButton, serveArea),
  ];
}

function profileCard(p) {
  const since = p.days_since_last_purchase == null ? "" : ` (${Math.round(p.days_since_last_purchase)} days ago)`;
  return card("Profile",
    h("dl", { class: "facts" },
      field("Journey stage", badge(p.journey_stage, "stage")),
      field("Orders", count(p.orders)),
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
      p.top_items.map((i) => [i.item_id, i.title ?? "—", count(i.orders)])) : null);
}

function recommendationsCard(r) {
  const categories = r.items.some((item) => item.category); // catalogues without categories: no empty column
  const headers = ["#", "Item", "Title", categories ? "Category" : null, "Price", "Score", "Reason"];
  const rows = r.items.map((item, index) => [String(index + 1), item.item_id, item.title ?? "—",
    categories ? item.category ?? "—" : null, money(item.price), formats.decimal(item.score), item.reason ?? "—"]);
  return card("Recommendations",
    h("p", { class: "meta" }, badge(r.source, "source"), ` model ${r.model_version}`),
    r.items.length
      ? table("Recommended items with reasons", headers.filter((x) => x !== null),
        rows.map((row) => row.filter((x) => x !== null)), { stacked: true })
      : h("p", { class: "muted" }, "No recommendations."));
}

async function preview(customer) {
  const [promotions, slots] = await Promise.all([api.previewPromotions(customer), api.slots()]);
  const names = slots.slots.map((s) => s.slot).slice(0, MAX_SLOTS_SERVED);
  const messages = await Promise.allSettled(names.map((slot) => api.previewMessage(customer, slot)));
  return h("div", { class: "grid two" },
    h("div", {}, h("h3", {}, `Promotions (${promotions.source})`),
      promotions.promotions.length
        ? h("ul", { class: "offers" }, ...promotions.promotions.map((p) => h("li", {},
          h("strong", {}, p.name), ` — ${p.offer.text}`,
          h("div", { class: "muted" }, `score ${formats.decimal(p.score)} · ${p.reason}`))))
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

