// The models view: the active version, every published version's holdout metrics against the popularity
// baseline, and activate / roll back (scope admin), each confirmed in a dialog first.

import { ApiError, api } from "./api.js";
import { barChart, formats } from "./charts.js";
import { h, show } from "./dom.js";
import { confirmAction } from "./forms.js";
import { badge, card, count, dateTime, explain, flash, hooks, table } from "./ui.js";

const METRICS = [["ndcg", "NDCG"], ["precision", "Precision"], ["recall", "Recall"], ["coverage", "Coverage"]];

export async function renderModels() {
  const listing = await api.models();
  const status = h("div", { id: "models-status", role: "status", "aria-live": "polite" });
  const rollback = h("button", { type: "button", class: "button", id: "rollback-button" },
    "Roll back to the previous version");
  rollback.addEventListener("click", async () => {
    const sure = await confirmAction("Roll back the model?",
      "Every API process goes back to the previously active version within seconds.", "Roll back");
    if (sure) await changeModel(rollback, status, () => api.rollback(), "roll back the model");
  });
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
  activate.addEventListener("click", async () => {
    const sure = await confirmAction(`Activate version ${v.version}?`,
      `Every API process serves ${v.version} (${v.algorithm ?? "?"}) within seconds; you can roll back later.`,
      "Activate");
    if (sure) await changeModel(activate, status, () => api.activate(v.version), "activate a model");
  });
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
      `${dateTime(v.published_at)} · ${count(counts.customers)} customers × ${count(counts.items)} items`),
    e?.model
      ? [h("p", { class: "meta" }, `Holdout: last ${e.holdout_days} days (from ${dateTime(e.cutoff)}), ` +
          `${count(e.customers)} customers`),
        h("div", { class: "grid two" }, chart("overall"), chart("discovery"))]
      : h("p", { class: "muted" }, "Trained without an evaluation (--no-eval): no metrics to show."));
}

/** Run an admin action; on success reload the list, on 403 say clearly that an admin key is needed. */
async function changeModel(button, status, action, what) {
  button.disabled = true;
  try {
    const result = await action();
    flash(`Version ${result.version} is now active${result.serving === result.version ? " and served" : ""}.`, "ok");
    await hooks.loadView("models");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    show(status, h("div", { class: "notice notice-error", role: "alert" }, explain(error, what)));
    if (error.status === 401) hooks.requireKey(explain(error));
    button.disabled = false;
  }
}

