// Small, dependency-free SVG charts: horizontal grouped bars with optional 95% interval whiskers.
// Horizontal bars keep long labels (promotion names, variant ids, metric names) readable on narrow
// screens. Every chart comes with its numbers as a table (in a <details>) for screen readers and copying.

import { h } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, never fetched
const WIDTH = 540; // drawn at about this many CSS pixels: text stays near its nominal size
const LABEL_WIDTH = 170;
const VALUE_WIDTH = 62;
const BAR = 14;
const BAR_GAP = 3;
const GROUP_GAP = 14;
const AXIS_HEIGHT = 22;
const TOP = 6;

let chartCount = 0;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Axis ticks: about four round steps (1, 2, 2.5 or 5 times a power of ten; whole numbers for counts). */
function axis(extent, integer) {
  if (!(extent > 0)) return { top: 1, step: integer ? 1 : 0.25 };
  const raw = extent / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const steps = (integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10]).map((s) => s * power);
  let step = steps.find((s) => s >= raw) ?? 10 * power;
  if (integer) step = Math.max(1, Math.round(step));
  return { top: step * Math.ceil(extent / step - 1e-9), step };
}

function truncate(text, length = 24) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// Numbers for people, in the reader's locale (grouping, decimal sign, percent sign).
const countFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
const decimalFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 3, maximumFractionDigits: 3 });
const percentFormats = [1, 2].map((digits) => new Intl.NumberFormat(undefined, {
  style: "percent", maximumFractionDigits: digits }));

export const formats = {
  count: (value) => (value == null ? "n/a" : countFormat.format(value)),
  percent: (value) => (value == null ? "n/a" : percentFormats[Math.abs(value) < 0.1 ? 1 : 0].format(value)),
  decimal: (value) => (value == null ? "n/a" : decimalFormat.format(value)),
  number: (value) => (value == null ? "n/a" : numberFormat.format(value)),
};

/**
 * A grouped horizontal bar chart in a <figure>.
 * @param {object} spec
 * @param {string} spec.title caption
 * @param {string[]} spec.categories one group of bars per category (a row)
 * @param {{name: string, values: (number|null)[], low?: (number|null)[], high?: (number|null)[]}[]} spec.series
 * @param {(value: number|null) => string} [spec.format]
 * @param {number} [spec.max] axis maximum (default: a round number above every value and interval)
 * @param {(category: string) => string} [spec.label] short axis label (the full name stays in tooltips and the table)
 */
export function barChart({ title, categories, series, format = formats.decimal, max, label = truncate }) {
  const id = `chart-${++chartCount}`;
  const figure = h("figure", { class: "chart" }, h("figcaption", { id: `${id}-title` }, title));
  if (!categories.length) {
    figure.append(h("p", { class: "muted" }, "No data yet."));
    return figure;
  }
  // An interval belongs to an estimate: none is drawn (or counted in the axis) where there is no value,
  // e.g. a rate without impressions, whose interval would be the uninformative [0%, 100%].
  const intervalAt = (s, row) => (s.values[row] != null && s.low?.[row] != null && s.high?.[row] != null
    ? [s.low[row], s.high[row]] : null);
  const extent = Math.max(0, ...series.flatMap((s) => s.values.flatMap((v, row) => [v, intervalAt(s, row)?.[1]]))
    .filter((v) => v != null));
  const { top, step } = max ? { top: max, step: max / 4 } : axis(extent, format === formats.count);
  const plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const x = (value) => LABEL_WIDTH + (Math.max(0, Math.min(value, top)) / top) * plot;
  const groupHeight = series.length * (BAR + BAR_GAP) - BAR_GAP + GROUP_GAP;
  const height = TOP + categories.length * groupHeight + AXIS_HEIGHT;

  const root = svg("svg", {
    class: "chart-svg", viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-labelledby": `${id}-title`,
    preserveAspectRatio: "xMinYMin meet",
  });
  // Grid lines and tick labels at every step.
  const axisY = height - AXIS_HEIGHT + 4;
  for (let i = 0; i * step <= top * (1 + 1e-9); i++) {
    const value = i * step;
    root.append(svg("line", { class: "grid", x1: x(value), x2: x(value), y1: TOP, y2: axisY }));
    root.append(svg("text", { class: "tick", x: x(value), y: axisY + 14, "text-anchor": "middle" }, format(value)));
  }
  categories.forEach((category, row) => {
    const groupTop = TOP + row * groupHeight;
    const text = svg("text", {
      class: "label", x: LABEL_WIDTH - 8, y: groupTop + (groupHeight - GROUP_GAP) / 2 + 4, "text-anchor": "end",
    }, truncate(label(category)));
    text.append(svg("title", {}, category));
    root.append(text);
    series.forEach((s, index) => {
      const value = s.values[row];
      const y = groupTop + index * (BAR + BAR_GAP);
      const [low, high] = intervalAt(s, row) ?? [];
      const interval = low != null ? ` (95% interval ${format(low)} – ${format(high)})` : "";
      const group = svg("g", { class: `series-${index}` });
      group.append(svg("title", {}, `${category} · ${s.name}: ${format(value)}${interval}`));
      if (value != null) {
        group.append(svg("rect", {
          class: "bar", x: LABEL_WIDTH, y, width: Math.max(x(value) - LABEL_WIDTH, value > 0 ? 1 : 0), height: BAR,
          rx: 2,
        }));
      }
      let end = value == null ? LABEL_WIDTH : x(value);
      if (interval) {
        const mid = y + BAR / 2;
        group.append(svg("line", { class: "ci", x1: x(low), x2: x(high), y1: mid, y2: mid }));
        for (const at of [low, high]) {
          group.append(svg("line", { class: "ci", x1: x(at), x2: x(at), y1: mid - 4, y2: mid + 4 }));
        }
        end = Math.max(end, x(high));
      }
      group.append(svg("text", { class: "value", x: end + 5, y: y + BAR - 3 }, format(value)));
      root.append(group);
    });
  });
  root.append(svg("line", { class: "axis", x1: LABEL_WIDTH, x2: LABEL_WIDTH, y1: TOP - 2, y2: axisY }));

  const legend = h("ul", { class: "legend", "aria-hidden": "true" },
    ...series.map((s, index) => h("li", {}, h("span", { class: `swatch series-${index}` }), s.name)));
  figure.append(legend, root, dataTable(categories, series, format, intervalAt));
  return figure;
}

function dataTable(categories, series, format, intervalAt) {
  const head = h("tr", {}, h("th", { scope: "col" }, "Name"),
    ...series.map((s) => h("th", { scope: "col" }, s.name)));
  const rows = categories.map((category, row) => h("tr", {}, h("th", { scope: "row" }, category),
    ...series.map((s) => {
      const value = format(s.values[row]);
      const interval = intervalAt(s, row);
      return h("td", {}, interval ? `${value} [${format(interval[0])} – ${format(interval[1])}]` : value);
    })));
  return h("details", { class: "chart-data" }, h("summary", {}, "Show the numbers"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, ...rows))));
}
