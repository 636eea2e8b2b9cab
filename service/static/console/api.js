// The Tailor API as the console uses it: the key kept in sessionStorage, JSON in and out, and the
// API's error envelope {"error": {"code", "message", "details"}} turned into an ApiError.

const KEY_NAME = "tailor.console.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_NAME),
  set: (key) => sessionStorage.setItem(KEY_NAME, key),
  clear: () => sessionStorage.removeItem(KEY_NAME),
};

/** Call the API on this origin with the session's key; resolves to the JSON body (null for 204), or to a
 * Blob when ``accept`` is not JSON (the audience as CSV). */
export async function request(method, path, body, accept = "application/json") {
  const headers = { Accept: accept };
  const key = apiKey.get();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network_error", `The server could not be reached (${error.message}).`, null);
  }
  if (response.status === 204) return null;
  if (response.ok && accept !== "application/json") return response.blob();
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = payload?.error ?? {};
    throw new ApiError(response.status, error.code ?? "error",
      error.message ?? `HTTP ${response.status}`, error.details ?? null);
  }
  return payload;
}

const segment = (value) => encodeURIComponent(value);

/** The endpoints the console reads and changes (see /openapi.json). Customer previews send preview=true:
 * they answer what the customer would see without counting an impression or recording a decision. */
export const api = {
  recommendations: (customer, n = 10) => request("GET", `/v1/customers/${segment(customer)}/recommendations?n=${n}`),
  profile: (customer) => request("GET", `/v1/customers/${segment(customer)}/profile`),
  previewPromotions: (customer, n = 3) =>
    request("GET", `/v1/customers/${segment(customer)}/promotions?n=${n}&preview=true`),
  previewMessage: (customer, slot) =>
    request("GET", `/v1/customers/${segment(customer)}/messages/${segment(slot)}?preview=true`),
  promotions: () => request("GET", "/v1/promotions"),
  promotion: (id) => request("GET", `/v1/promotions/${segment(id)}`),
  putPromotion: (id, body) => request("PUT", `/v1/promotions/${segment(id)}`, body),
  deletePromotion: (id) => request("DELETE", `/v1/promotions/${segment(id)}`),
  promotionReport: (id) => request("GET", `/v1/promotions/${segment(id)}/report`),
  slots: () => request("GET", "/v1/messages"),
  putSlot: (slot, body) => request("PUT", `/v1/messages/${segment(slot)}`, body),
  deleteSlot: (slot) => request("DELETE", `/v1/messages/${segment(slot)}`),
  slotReport: (slot) => request("GET", `/v1/messages/${segment(slot)}/report`),
  audience: (body) => request("POST", "/v1/audiences", body),
  audienceCsv: (body) => request("POST", "/v1/audiences", body, "text/csv"),
  models: () => request("GET", "/v1/models"),
  activate: (version) => request("PUT", "/v1/models/active", { version }),
  rollback: () => request("POST", "/v1/models/rollback"),
};
