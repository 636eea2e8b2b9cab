// The audience builder: one targeting (items, categories, a promotion, look-alikes of seed customers, or
// customers due to re-order), a size, a preview of the best customers, and the whole audience as a CSV file
// (POST /v1/audiences with Accept: text/csv, saved from a Blob: nothing leaves this origin).

import { ApiError, api } from "./api.js";
import { formats } from "./charts.js";
import { h, show } from "./dom.js";
import { control, form, numberOrNull, words } from "./forms.js";
import { card, count, flash, table } from "./ui.js";

const TARGETINGS = [
  ["items", "Customers likely to buy these items"],
  ["categories", "Customers likely to buy in these categories"],
  ["promotion_id", "The audience of a promotion"],
  ["lookalike", "Customers who buy like these customers (look-alikes)"],
  ["due_for_reorder", "Customers due to re-order"],
];
const PREVIEW_ROWS = 20;

/** The request body from the form, or a 400-like error naming the field that is missing. */
function body(node) {
  const kind = node.elements.targeting.value;
  const targets = node.elements.targets.value;
  const request = { size: numberOrNull(node.elements.size.value), min_score: numberOrNull(node.elements.min_score.value) };
  if (kind === "due_for_reorder") request.due_for_reorder = true;
  else if (kind === "promotion_id") request.promotion_id = targets.trim() || null;
  else request[kind] = words(targets).length ? words(targets) : null;
  if (kind !== "due_for_reorder" && !targets.trim()) {
    throw new ApiError(400, "invalid", "invalid", { json: { [kind]: ["Required for this targeting."] } });
  }
  return request;
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function renderAudiences() {
  const result = h("div", { id: "audience-preview", "aria-live": "polite" });
  let wanted = "preview";
  const csvButton = h("button", { type: "submit", class: "button", id: "audience-csv",
    onclick: () => { wanted = "csv"; } }, "Download CSV");
  const fields = [
    control("Targeting", { name: "targeting", tag: "select", value: "items", options: TARGETINGS,
      paths: ["due_for_reorder", "_schema"] }),
    control("Targets", { name: "targets", tag: "textarea", rows: 3,
      paths: ["items", "categories", "promotion_id", "lookalike"],
      hint: "item ids, categories, one promotion id or seed customer ids, separated by commas or spaces " +
        "(not needed for customers due to re-order)" }),
    h("div", { class: "form-row" },
      control("Size", { name: "size", type: "number", min: "1", step: "1", value: 100, paths: ["size"],
        hint: "at most this many customers" }),
      control("Minimum score", { name: "min_score", type: "number", step: "any", paths: ["min_score"],
        hint: "optional" })),
  ];
  const node = form("Build an audience", fields, "Preview audience", async (formNode) => {
    const mode = wanted;
    wanted = "preview";
    const request = body(formNode);
    if (mode === "csv") {
      download(await api.audienceCsv(request), "audience.csv");
      flash("The audience was downloaded as audience.csv.", "ok");
      return;
    }
    const answer = await api.audience(request);
    show(result, card(`Audience: ${count(answer.size)} customers`,
      h("p", { class: "meta" }, `model ${answer.model_version} · purchases since its data count, ` +
        "a few seconds after they arrive" +
        (answer.size > PREVIEW_ROWS ? ` · the best ${PREVIEW_ROWS} shown; the CSV has them all` : "")),
      answer.customers.length
        ? table("Audience preview", ["Customer", "Score", "Reason"], answer.customers.slice(0, PREVIEW_ROWS)
          .map((c) => [c.customer_id, formats.decimal(c.score), c.reason]), { stacked: true })
        : h("p", { class: "muted" }, "No customer matches.")));
  }, [csvButton]);
  // The submit button pressed last decides between the preview and the CSV (Enter previews).
  node.querySelector('button[type="submit"]:not(#audience-csv)').addEventListener("click", () => { wanted = "preview"; });
  return [node, result];
}
