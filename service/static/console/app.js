// The Tailor console: key entry and hash routing between its views (each in its own module).
// Every number comes from the /v1 API (see api.js); nothing is cached beyond the current view.

import { ApiError, api, apiKey } from "./api.js";
import { renderAudiences } from "./audiences.js";
import { lookUpCustomer } from "./customer.js";
import { renderMessages } from "./messages.js";
import { renderModels } from "./models.js";
import { renderPromotions } from "./promotions.js";
import { $, explain, fill, flash, hooks } from "./ui.js";

const VIEWS = ["customer", "promotions", "messages", "audiences", "models"];

// ---------------------------------------------------------------- routing and key handling

const RENDERERS = { promotions: renderPromotions, messages: renderMessages, audiences: renderAudiences,
  models: renderModels };

async function loadView(name) {
  const render = RENDERERS[name];
  if (render) await fill($(`${name}-result`), name, render);
}
hooks.loadView = loadView;

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
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close("cancel");
  apiKey.clear();
  for (const view of VIEWS) $(`view-${view}`).hidden = true;
  $("nav").hidden = true;
  $("key-status").hidden = true;
  $("key-view").hidden = false;
  $("key-error").textContent = message;
  $("key-input").value = "";
  $("key-input").focus();
}

hooks.requireKey = requireKey;

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
