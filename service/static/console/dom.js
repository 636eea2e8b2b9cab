// A tiny element builder. Text always goes in as text nodes (never innerHTML), so names and contents
// that marketers or customers typed can never inject markup.

/**
 * h("a", {href: "#x", class: "c"}, "text", child) -> HTMLElement.
 * Attributes: strings are set as attributes; true sets a boolean attribute, false/null/undefined skip it;
 * functions under "on…" names become event listeners (no inline handlers: CSP allows none).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function" && name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false && value != null) {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace the children of ``node``. */
export function show(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child != null && child !== false));
}
