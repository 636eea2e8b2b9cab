// Who may see a promotion and how often: the eligibility rules (journey stages, countries, minimum orders
// and spend, an allow-list of customers) and the frequency cap, as form fields and back as the API's
// `eligibility` and `cap` objects. Empty fields mean "no rule", so a new promotion reaches everyone.

import { h } from "./dom.js";
import { control, numberOrNull, words } from "./forms.js";

/** The API's journey stages (service.domain.profile.STAGES), in the order a customer passes them. */
export const STAGES = ["new", "first-time buyer", "repeat", "lapsed"];

let uid = 0;

/** Checkboxes in a fieldset; the first box carries ``paths`` so the API's errors land at the group. */
function checkboxes(legend, { name, options, checked, paths, hint }) {
  const base = `c${++uid}`;
  const errorId = `${base}-0-error`;
  const hintId = `${base}-hint`;
  const boxes = options.map((option, index) => {
    const id = `${base}-${index}`;
    return h("label", { class: "check", for: id },
      h("input", { type: "checkbox", id, name, value: option, checked: checked.includes(option),
        "aria-describedby": index === 0 ? `${hintId} ${errorId}` : hintId,
        "data-paths": index === 0 ? paths.join(" ") : null }),
      ` ${option}`);
  });
  return h("fieldset", { class: "checks" }, h("legend", {}, legend),
    h("p", { class: "hint", id: hintId }, hint), h("div", { class: "check-row" }, boxes),
    h("p", { class: "error-text field-error", id: errorId }));
}

/** Comma-separated values that may contain spaces ("United Kingdom, EIRE"). */
const listOrNull = (value) => {
  const list = value.split(",").map((part) => part.trim()).filter(Boolean);
  return list.length ? list : null;
};

/** The form fields of ``eligibility`` and ``cap`` (either may be missing or null). */
export function eligibilityFields(eligibility, cap) {
  const e = eligibility ?? {};
  return h("fieldset", { class: "group" }, h("legend", {}, "Who sees it, and how often"),
    checkboxes("Journey stages", { name: "journey_stages", options: STAGES, checked: e.journey_stages ?? [],
      paths: ["eligibility.journey_stages", "eligibility"], hint: "none ticked: every stage" }),
    control("Countries", { name: "countries", type: "text", value: (e.countries ?? []).join(", "),
      paths: ["eligibility.countries"], hint: "separated by commas, as in the data (United Kingdom, EIRE); empty: all" }),
    h("div", { class: "form-row" },
      control("Minimum orders", { name: "min_orders", type: "number", step: "1", min: "0", value: e.min_orders,
        paths: ["eligibility.min_orders"] }),
      control("Minimum spend", { name: "min_spend", type: "number", step: "any", min: "0", value: e.min_spend,
        paths: ["eligibility.min_spend"] })),
    control("Only these customers", { name: "customers", tag: "textarea", rows: 2,
      value: (e.customers ?? []).join(", "), paths: ["eligibility.customers"],
      hint: "customer ids separated by commas or spaces; empty: everyone the rules above admit" }),
    h("div", { class: "form-row" },
      control("Cap: impressions", { name: "cap_impressions", type: "number", step: "1", min: "1",
        value: cap?.impressions, paths: ["cap.impressions", "cap"],
        hint: "at most this many impressions per customer…" }),
      control("Cap: days", { name: "cap_days", type: "number", step: "any", min: "0", value: cap?.days,
        paths: ["cap.days"], hint: "…within this many days; both empty: no cap" })));
}

/** ``{eligibility, cap}`` as the API takes them, read from the fields ``eligibilityFields`` made. */
export function eligibilityValue(formNode) {
  const v = (name) => formNode.elements[name].value;
  const stages = [...formNode.querySelectorAll('input[name="journey_stages"]:checked')].map((box) => box.value);
  const customers = words(v("customers"));
  const eligibility = Object.fromEntries(Object.entries({
    journey_stages: stages.length ? stages : null,
    countries: listOrNull(v("countries")),
    min_orders: numberOrNull(v("min_orders")),
    min_spend: numberOrNull(v("min_spend")),
    customers: customers.length ? customers : null,
  }).filter(([, value]) => value != null));
  const impressions = numberOrNull(v("cap_impressions"));
  const days = numberOrNull(v("cap_days"));
  const cap = impressions == null && days == null ? null : { impressions, days };
  return { eligibility, cap };
}

/** One line for the list: "repeat, lapsed · United Kingdom · ≥ 2 orders · 3 per 7 days", or "everyone". */
export function eligibilitySummary(eligibility, cap) {
  const e = eligibility ?? {};
  const parts = [
    e.journey_stages?.length ? e.journey_stages.join(", ") : null,
    e.countries?.length ? e.countries.join(", ") : null,
    e.min_orders != null ? `≥ ${e.min_orders} orders` : null,
    e.min_spend != null ? `≥ ${e.min_spend} spent` : null,
    e.customers?.length ? `${e.customers.length} listed customers` : null,
    cap ? `${cap.impressions} per ${cap.days} days` : null,
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : "everyone";
}
