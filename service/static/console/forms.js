// Accessible forms and confirmations: labelled fields with their error text next to them (aria-invalid +
// aria-describedby), a form-level error summary that takes the focus, the API's 400 details mapped to the
// fields they name, and a native <dialog> to confirm an action.

import { ApiError } from "./api.js";
import { h, show } from "./dom.js";
import { explain, hooks } from "./ui.js";

let uid = 0;

/**
 * A labelled control in a wrapper with its hint and error text.
 * @param {string} label visible label
 * @param {object} attrs attributes of the control (name, type, value, required, …); ``paths`` (a list) names
 *   the API fields it stands for ("offer.text"), ``hint`` adds a description, ``tag`` picks textarea/select,
 *   ``options`` ([value, text] pairs) fills a select
 */
export function control(label, { paths = [], hint, tag = "input", options, value, ...attrs }) {
  const id = `f${++uid}`;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const node = h(tag, { id, ...attrs, "aria-describedby": [hintId, errorId].filter(Boolean).join(" "),
    "data-paths": paths.join(" ") });
  if (options) {
    for (const [optionValue, text] of options) {
      node.append(h("option", { value: optionValue, selected: optionValue === value }, text));
    }
  } else if (value != null) node.value = String(value);
  return h("div", { class: "form-field" },
    h("label", { for: id }, label, attrs.required ? h("span", { class: "required" }, " (required)") : null),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    node,
    h("p", { class: "error-text field-error", id: errorId }));
}

/** A form with an (initially empty) error summary, its fields and a submit button. */
export function form(title, children, submitLabel, onsubmit, extraButtons = []) {
  const summary = h("div", { class: "error-summary", tabindex: "-1", hidden: true });
  const node = h("form", { class: "card entity-form", novalidate: true, "aria-label": title },
    h("h2", {}, title), summary, ...children,
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "button primary" }, submitLabel),
      ...extraButtons));
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(node);
    const submit = node.querySelector('button[type="submit"]');
    submit.disabled = true;
    try {
      await onsubmit(node);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) hooks.requireKey(explain(error));
      else showErrors(node, error);
    } finally {
      submit.disabled = false;
    }
  });
  return node;
}

/** {"json": {"offer": {"text": ["…"]}, "items": {"0": ["…"]}}} -> [["offer.text", "…"], ["items.0", "…"]]. */
export function flattenDetails(details, prefix = "") {
  if (details == null) return [];
  if (typeof details === "string") return [[prefix, details]];
  if (Array.isArray(details)) {
    return details.every((d) => typeof d === "string") ? [[prefix, details.join(" ")]]
      : details.flatMap((d, i) => flattenDetails(d, prefix ? `${prefix}.${i}` : String(i)));
  }
  return Object.entries(details).flatMap(([key, value]) => {
    const inBody = !prefix && ["json", "query", "path"].includes(key); // the location is not a field
    return flattenDetails(value, inBody ? "" : prefix ? `${prefix}.${key}` : key);
  });
}

/** The control standing for ``path`` (or for its nearest parent: "variants.1.id", "variants.1", "variants"). */
function controlFor(formNode, path) {
  if (!path) return null;
  const controls = [...formNode.querySelectorAll("[data-paths]")];
  for (let parts = path.split("."); parts.length; parts = parts.slice(0, -1)) {
    const wanted = parts.join(".");
    const found = controls.find((c) => c.dataset.paths.split(" ").includes(wanted));
    if (found) return found;
  }
  return null;
}

export function clearErrors(formNode) {
  const summary = formNode.querySelector(".error-summary");
  summary.hidden = true;
  show(summary);
  for (const node of formNode.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of formNode.querySelectorAll(".field-error")) node.textContent = "";
}

/** Each message at its field and in the summary (links to the fields), then focus on the summary. */
export function showErrors(formNode, error) {
  const problems = error.status === 400 || error.status === 422 ? flattenDetails(error.details) : [];
  const items = [];
  for (const [path, message] of problems) {
    const target = controlFor(formNode, path);
    const text = target ? message : `${path || "request"}: ${message}`;
    if (target) {
      target.setAttribute("aria-invalid", "true");
      const slot = document.getElementById(`${target.id}-error`);
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      const label = formNode.querySelector(`label[for="${target.id}"]`)?.firstChild?.textContent ?? path;
      items.push(h("li", {}, h("a", { href: `#${target.id}`, onclick: (event) => {
        event.preventDefault();
        target.focus();
      } }, `${label}: ${text}`)));
    } else items.push(h("li", {}, text));
  }
  if (!items.length) items.push(h("li", {}, explain(error, "save this")));
  const summary = formNode.querySelector(".error-summary");
  show(summary, h("h3", {}, problems.length ? "Please correct the following" : "Not saved"), h("ul", {}, items));
  summary.setAttribute("role", "alert");
  summary.hidden = false;
  summary.focus();
}

/** Ask before doing something: a modal <dialog>; resolves true (confirmed) or false (cancelled, Escape). */
export function confirmAction(title, message, confirmLabel, { danger = false } = {}) {
  const opener = document.activeElement;
  const titleId = `d${++uid}`;
  const cancel = h("button", { type: "button", class: "button", value: "cancel" }, "Cancel");
  const ok = h("button", { type: "button", class: `button ${danger ? "danger" : "primary"}`, value: "ok" },
    confirmLabel);
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": titleId, "aria-describedby": `${titleId}-text` },
    h("h2", { id: titleId }, title), h("p", { id: `${titleId}-text` }, message),
    h("div", { class: "form-actions" }, cancel, ok));
  document.body.append(dialog);
  return new Promise((resolve) => {
    cancel.addEventListener("click", () => dialog.close("cancel"));
    ok.addEventListener("click", () => dialog.close("ok"));
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "ok";
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(confirmed);
    });
    dialog.showModal();
    cancel.focus(); // the safe choice first
  });
}

/** The words of a textarea or input: ids separated by commas, spaces or new lines. */
export const words = (value) => value.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);

/** A number input's value: null when empty, else a Number (NaN stays, for the API to name the field). */
export function numberOrNull(value) {
  const text = value.trim();
  return text === "" ? null : Number(text);
}
