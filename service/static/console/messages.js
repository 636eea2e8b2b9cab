// The message-slot view: each slot's report (variants, rates, learned policy vs uniform), and the form that
// creates or edits a slot (PUT /v1/messages/{slot}) with its variants; delete asks first.

import { ApiError, api } from "./api.js";
import { barChart, formats } from "./charts.js";
import { h, show } from "./dom.js";
import { confirmAction, control, form, numberOrNull } from "./forms.js";
import { countsChart, ratesChart } from "./promotions.js";
import { $, badge, button, card, count, errorBox, flash, hooks } from "./ui.js";

const MIN_VARIANTS = 2;
const MAX_VARIANTS = 20;

async function saved(message) {
  flash(message, "ok");
  await hooks.loadView("messages");
  $("messages-title").focus();
}

function variantFieldset(index, variant = {}) {
  return h("fieldset", { class: "variant" },
    h("legend", {}, `Variant ${index + 1}`),
    h("div", { class: "form-row" },
      control("Variant ID", { name: "variant_id", type: "text", required: true, value: variant.id,
        paths: [`variants.${index}.id`, `variants.${index}`], autocomplete: "off", spellcheck: "false" }),
      control("Tone", { name: "variant_tone", type: "text", value: variant.tone, paths: [`variants.${index}.tone`],
        hint: "value, quality, urgency, …" })),
    control("Content", { name: "variant_content", tag: "textarea", rows: 2, required: true, value: variant.content,
      paths: [`variants.${index}.content`], hint: "placeholders such as {top_category|our best sellers}" }));
}

function slotForm(existing) {
  const variants = existing?.variants ?? [{}, {}];
  const list = h("div", { class: "variants" }, ...variants.map((v, i) => variantFieldset(i, v)));
  const add = button("Add a variant", () => {
    const index = list.children.length;
    if (index >= MAX_VARIANTS) return;
    list.append(variantFieldset(index));
    list.lastElementChild.querySelector("input").focus();
  });
  const removeLast = button("Remove the last variant", () => {
    if (list.children.length > MIN_VARIANTS) list.lastElementChild.remove();
  });
  const cancel = button("Cancel", () => {
    show($("slot-form-area"));
    $("new-slot").focus();
  });
  const fields = [
    control("Slot", { name: "slot", type: "text", required: true, value: existing?.slot, readonly: Boolean(existing),
      paths: ["slot"], hint: "where the message shows, e.g. homepage-banner (cannot change later)",
      autocomplete: "off", spellcheck: "false" }),
    h("div", { class: "form-row" },
      control("Exploration", { name: "exploration", type: "number", step: "any", min: "0", max: "1",
        value: existing?.exploration ?? 0.1, paths: ["exploration"], hint: "share of random decisions, 0 to 1" }),
      control("Sticky days", { name: "sticky_days", type: "number", step: "any", min: "0",
        value: existing?.sticky_days ?? 7, paths: ["sticky_days"], hint: "0: decide afresh every time" })),
    h("div", { "data-paths": "variants", tabindex: "-1", id: "variants-group", class: "variants-group",
      role: "group", "aria-label": "Variants", "aria-describedby": "variants-group-error" },
      list, h("p", { class: "error-text field-error", id: "variants-group-error" })),
    h("div", { class: "form-actions" }, add, removeLast),
  ];
  return form(existing ? `Edit message slot “${existing.slot}”` : "New message slot", fields, "Save message slot",
    async (node) => {
      const slot = node.elements.slot.value.trim();
      if (!slot) throw new ApiError(400, "invalid", "invalid", { json: { slot: ["Required."] } });
      const body = {
        exploration: numberOrNull(node.elements.exploration.value) ?? 0.1,
        sticky_days: numberOrNull(node.elements.sticky_days.value) ?? 7,
        variants: [...list.children].map((set) => {
          const value = (name) => set.querySelector(`[name="${name}"]`).value.trim();
          return { id: value("variant_id"), content: value("variant_content"), tone: value("variant_tone") || null };
        }),
      };
      await api.putSlot(slot, body);
      await saved(`Message slot “${slot}” saved.`);
    }, [cancel]);
}

function openForm(existing) {
  show($("slot-form-area"), slotForm(existing));
  $("slot-form-area").querySelector("input:not([readonly])").focus();
}

async function remove(slot) {
  const sure = await confirmAction(`Delete message slot “${slot.slot}”?`,
    "The slot stops answering at once; its report stays readable through the API.", "Delete message slot",
    { danger: true });
  if (!sure) return;
  try {
    await api.deleteSlot(slot.slot);
    await saved(`Message slot “${slot.slot}” was deleted.`);
  } catch (error) {
    show($("slot-form-area"), errorBox(error, "delete message slots"));
  }
}

export async function renderMessages() {
  const { slots } = await api.slots();
  const toolbar = h("div", { class: "toolbar" },
    button("New message slot", () => openForm(null), { id: "new-slot", class: "button primary" }));
  const area = h("div", { id: "slot-form-area" });
  if (!slots.length) return [toolbar, area, h("p", { class: "muted" }, "No message slots yet.")];
  const reports = await Promise.allSettled(slots.map((s) => api.slotReport(s.slot)));
  return [toolbar, area, ...slots.map((slot, index) => (reports[index].status === "fulfilled"
    ? slotCard(slot, reports[index].value) : card(slot.slot, errorBox(reports[index].reason))))];
}

function slotCard(slot, report) {
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
  const measured = [ips.decisions, ips.decisions, shares.bandit_share.decisions, shares.uniform_share.decisions];
  return h("section", { class: "card slot", "data-slot": report.slot },
    h("div", { class: "view-head" },
      h("h2", {}, report.slot, " ", badge(report.status, `status-${report.status}`)),
      h("span", { class: "actions" },
        button("Edit", () => openForm(slot), { "aria-label": `Edit ${report.slot}` }),
        button("Delete", () => remove(slot), { class: "button danger", "aria-label": `Delete ${report.slot}` }))),
    h("p", { class: "meta" }, `exploration ${formats.percent(report.exploration)} · sticky ` +
      `${formats.number(report.sticky_days)} days · ${count(ips.decisions)} decisions` +
      (ips.lift != null ? ` · lift over uniform ×${formats.number(ips.lift)}` : "")),
    h("div", { class: "grid two" },
      countsChart("Impressions, clicks and conversions per variant", labels, variants),
      ratesChart("Click and conversion rate per decision, 95% intervals", labels, variants, (v) => v.decisions > 0),
      barChart({
        title: "Reward rate: learned policy vs uniform random, 95% intervals", format: formats.percent,
        categories: estimates.map(([name]) => name),
        series: [{
          name: "reward rate", values: estimates.map(([, e], i) => (measured[i] > 0 ? e.value ?? null : null)),
          low: estimates.map(([, e]) => e.low ?? null), high: estimates.map(([, e]) => e.high ?? null),
        }],
      })));
}
