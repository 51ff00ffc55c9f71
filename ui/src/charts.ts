// uPlot wrappers: time-series charts and sparklines coloured from the theme's CSS variables.
// Every chart is registered so a page change destroys it and a resize fits it to its box.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";

const live = new Set<{ u: uPlot; box: HTMLElement; height: number }>();

export function destroyAll() {
  for (const c of live) c.u.destroy();
  live.clear();
}

addEventListener("resize", () => {
  for (const c of live) c.u.setSize({ width: Math.max(120, c.box.clientWidth), height: c.height });
});

export function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export interface Line {
  label: string;
  values: (number | null)[];
  color: string; // a CSS variable name (--c-…) or a colour
  fmt?: (v: number | null) => string;
  dash?: boolean;
}

function color(c: string) {
  return c.startsWith("--") ? css(c) : c;
}

/** A time chart with a legend; `xs` are unix ms. */
export function timeChart(title: string, xs: number[], lines: Line[], opts: { height?: number; yFmt?: (v: number) => string; min0?: boolean } = {}): HTMLElement {
  const box = h("div", { class: "chart" });
  const wrap = h("figure", { class: "panel chart-panel" }, h("figcaption", null, title), box);
  const height = opts.height ?? 170;
  if (xs.length === 0 || lines.every((l) => l.values.every((v) => v === null))) {
    box.appendChild(h("p", { class: "empty" }, "No data in this range."));
    return wrap;
  }
  const axis = css("--muted");
  const grid = css("--grid");
  const yFmt = opts.yFmt ?? ((v: number) => String(+v.toPrecision(3)));
  const o: uPlot.Options = {
    width: 400,
    height,
    legend: { live: true },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    scales: { x: { time: true }, y: { range: (_u, min, max) => [opts.min0 === false ? min : 0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 74, values: (_u, vs) => vs.map((v) => (v === null ? "" : yFmt(v))) },
    ],
    series: [
      {},
      ...lines.map((l) => ({
        label: l.label,
        stroke: color(l.color),
        width: 1.5,
        dash: l.dash ? [4, 4] : undefined,
        spanGaps: false,
        // isolated values (few points, or gaps around them) are drawn as dots
        points: { show: l.values.filter((v) => v !== null).length < 30, size: 5 },
        value: (_u: uPlot, v: number | null) => (l.fmt ? l.fmt(v) : v === null ? "–" : yFmt(v)),
      })),
    ],
  };
  const data = [xs.map((x) => x / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData;
  // mount after the box is in the document so it takes its real width
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    o.width = Math.max(120, box.clientWidth);
    const u = new uPlot(o, data, box);
    live.add({ u, box, height });
  });
  return wrap;
}

/** A small line without axes (the overview's per-service trends). */
export function sparkline(values: (number | null)[], xs: number[], colorVar: string, label: string): HTMLElement {
  const box = h("div", { class: "spark", role: "img", "aria-label": label });
  if (values.length < 2) {
    box.appendChild(h("span", { class: "muted" }, "–"));
    return box;
  }
  const o: uPlot.Options = {
    width: 110,
    height: 28,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: css(colorVar), width: 1.25, fill: css(colorVar) + "22", points: { show: false } }],
  };
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    const u = new uPlot(o, [xs.map((x) => x / 1000), values] as uPlot.AlignedData, box);
    live.add({ u, box: { clientWidth: 110 } as HTMLElement, height: 28 });
  });
  return box;
}
