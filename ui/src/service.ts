// Service: RED over time, the route table (sortable), runtime panels for its language and the
// container's stats.
import { Analysis, get, Point, Route, RuntimeSeries, Service } from "./api";
import { Line, timeChart } from "./charts";
import { clear, fmtBytes, fmtMs, fmtNum, fmtPct, h } from "./dom";
import { attrs, base, toMs } from "./runtime";
import { link, RouteState, state, window } from "./state";

type Key = "route" | "calls" | "rps" | "errors" | "error_rate" | "p50_ms" | "p95_ms" | "p99_ms";
const COLS: [Key, string][] = [
  ["route", "Route"], ["calls", "Calls"], ["rps", "Req/s"], ["errors", "Errors"], ["error_rate", "Error %"],
  ["p50_ms", "p50"], ["p95_ms", "p95"], ["p99_ms", "p99"],
];
const CLASS_COLORS: Record<string, string> = { "2xx": "--c-ok", "3xx": "--c-rate", "4xx": "--c-warn", "5xx": "--c-err" };

/** Runtime metric families shown first for each language (the rest follow, by name). */
const PREFERRED: Record<string, string[]> = {
  nodejs: ["nodejs.eventloop.delay", "nodejs.eventloop.utilization", "v8js.memory.heap.used", "v8js.gc.duration"],
  java: ["jvm.memory.used", "jvm.gc.duration", "jvm.thread.count", "jvm.cpu.recent_utilization"],
  python: ["process.runtime.cpython.memory", "process.runtime.cpython.gc_count", "cpython.gc"],
};

export async function servicePage(main: HTMLElement, rs: RouteState) {
  const service = rs.arg;
  const { from, to } = window();
  const project = state.project;
  const step = Math.max(10_000, Math.round((to - from) / 90 / 10_000) * 10_000);
  const [svcs, routes, series, rt] = await Promise.all([
    get<{ services: Service[] }>("/api/v1/services", { project, from, to }),
    get<{ routes: Route[] }>("/api/v1/routes", { project, service, from, to }),
    get<{ points: Point[]; step: number }>("/api/v1/series", { project, service, from, to, step }),
    get<{ series: RuntimeSeries[] }>("/api/v1/runtime", { project, service, from, to }),
  ]);
  const s = svcs.services.find((x) => x.name === service);
  main.appendChild(h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: link("overview") }, "Overview"), " / "));
  main.appendChild(h("h1", null, service));
  if (s) {
    main.appendChild(h("dl", { class: "kpis" },
      kpi("Requests/s", fmtNum(s.rps, 2)), kpi("Calls", fmtNum(s.calls, 0)), kpi("Error %", fmtPct(s.error_rate)),
      kpi("p50", fmtMs(s.p50_ms)), kpi("p95", fmtMs(s.p95_ms)), kpi("p99", fmtMs(s.p99_ms)),
      kpi("Language", s.language || "unknown"), kpi("Data from", s.source ?? "–"),
      h("div", { class: "kpi-links" }, h("a", { href: link("traces", "", { service }) }, "Traces →"), h("a", { href: link("errors", "", { service }) }, "Errors →"))));
  }
  // RED over time
  const pts = fillGaps(series.points, series.step, from, to);
  const xs = pts.map((p) => p.ts);
  const secs = series.step / 1000;
  const classes = [...new Set(series.points.flatMap((p) => Object.keys(p.by_class)))].sort();
  main.appendChild(h("section", { class: "grid3", "aria-label": "Requests, errors and latency over time" },
    timeChart("Requests/s by status", xs, classes.map((c): Line => ({ label: c, color: CLASS_COLORS[c] ?? "--muted", values: pts.map((p) => (p.calls === null ? null : (p.by_class[c] ?? 0) / secs)) }))),
    timeChart("Error %", xs, [{ label: "5xx", color: "--c-err", values: pts.map((p) => (p.calls ? (p.errors / p.calls) * 100 : null)), fmt: (v) => (v === null ? "–" : v.toFixed(1) + "%") }], { yFmt: (v) => v + "%" }),
    timeChart("Latency", xs, [
      { label: "p50", color: "--c-p50", values: pts.map((p) => p.p50_ms), fmt: fmtMs },
      { label: "p95", color: "--c-p95", values: pts.map((p) => p.p95_ms), fmt: fmtMs },
      { label: "p99", color: "--c-p99", values: pts.map((p) => p.p99_ms), fmt: fmtMs, dash: true },
    ], { yFmt: (v) => fmtMs(v) })));
  // routes
  const table = h("div", { class: "table-wrap" });
  const sortKey = (rs.params.get("sort") as Key) || "calls";
  const dir = rs.params.get("dir") === "asc" ? 1 : -1;
  routeTable(table, routes.routes, service, sortKey, dir, rs);
  main.appendChild(h("section", { "aria-labelledby": "routes-h" },
    h("h2", { id: "routes-h" }, `Routes (${routes.routes.length})`),
    h("p", { class: "muted small" }, "Sort by any column: calls for the top routes, p95 for the slowest, errors for the failing ones."),
    table));
  // analysis over the stored traces (the replay burst is the CLI's: `obs-stack analyze`)
  const out = h("div", { class: "analysis", "aria-live": "polite" });
  const run = async () => {
    clear(out, h("p", { class: "muted" }, "Analysing the stored traces…"));
    try {
      const a = await get<Analysis>("/api/v1/analysis", { project, service, from, to });
      const items = [
        ...a.n_plus_one.map((n) => h("li", { class: "finding" }, h("strong", null, "N+1 "), `${n.route} runs `, h("code", null, n.statement), ` ${n.times} times per request — `, h("a", { href: link("trace", n.trace_id) }, "a trace"))),
        ...a.slowest_children.map((c) => h("li", null, h("strong", null, "Slowest part "), `of ${c.route}: `, h("code", null, c.span), ` (${Math.round(c.share * 100)}% of the request)`)),
      ];
      clear(out,
        h("p", { class: "muted small" }, `${a.traces_analyzed} traces analysed.`),
        items.length ? h("ul", { class: "findings" }, items) : h("p", { class: "empty" }, "No findings: no repeated queries, no dominant child span."),
        h("p", { class: "muted small" }, "For a fresh burst of the real GET requests seen here, replayed to the container: ", h("code", null, `obs-stack analyze ${service}`)));
    } catch (e) {
      clear(out, h("p", { class: "error" }, String(e)));
    }
  };
  main.appendChild(h("section", { "aria-labelledby": "an-h" },
    h("h2", { id: "an-h" }, "Analysis"),
    h("button", { type: "button", id: "run-analysis", onclick: () => void run() }, "Run analysis"),
    out));
  // runtime and container
  const runtime = rt.series.filter((r) => !/^(container|container_stats|http_check)\./.test(r.name));
  const container = rt.series.filter((r) => /^(container|container_stats|http_check)\./.test(r.name));
  main.appendChild(h("section", { "aria-labelledby": "rt-h" },
    h("h2", { id: "rt-h" }, `Runtime${s?.language ? " (" + s.language + ")" : ""}`),
    runtime.length ? h("div", { class: "grid3" }, panels(runtime, s?.language ?? "")) : h("p", { class: "empty" }, "No runtime metrics: the agent sends them when its runtime instrumentation is on (Node.js event loop and heap, JVM memory, GC and threads, process CPU and memory).")));
  main.appendChild(h("section", { "aria-labelledby": "ct-h" },
    h("h2", { id: "ct-h" }, "Container"),
    container.length ? h("div", { class: "grid3" }, panels(container, "")) : h("p", { class: "empty" }, "No container stats: `obs-stack up` pushes them for the containers it runs.")));
}

function kpi(label: string, value: string) {
  return h("div", { class: "kpi" }, h("dt", null, label), h("dd", null, value));
}

/** One point per step over the range, so gaps show as gaps rather than straight lines. */
function fillGaps(points: Point[], step: number, from: number, to: number): (Omit<Point, "calls"> & { calls: number | null })[] {
  if (points.length > 2000 || step <= 0) return points;
  const by = new Map(points.map((p) => [p.ts, p]));
  const out = [];
  for (let t = Math.floor(from / step) * step; t < to; t += step) {
    out.push(by.get(t) ?? { ts: t, calls: null, errors: 0, by_class: {}, p50_ms: null, p95_ms: null, p99_ms: null });
  }
  return out;
}

function routeTable(box: HTMLElement, routes: Route[], service: string, key: Key, dir: number, rs: RouteState) {
  const val = (r: Route, k: Key): number | string => (k === "route" ? r.route : k === "error_rate" ? (r.calls ? r.errors / r.calls : 0) : (r[k] ?? -1));
  const sorted = [...routes].sort((a, b) => {
    const x = val(a, key), y = val(b, key);
    return (typeof x === "string" ? x.localeCompare(String(y)) : x - (y as number)) * dir || b.calls - a.calls;
  });
  const head = COLS.map(([k, label]) => {
    const active = k === key;
    return h("th", { scope: "col", class: k === "route" ? "" : "num", "aria-sort": active ? (dir > 0 ? "ascending" : "descending") : "none" },
      h("button", { type: "button", class: "sort", "data-key": `sort:${k}`, onclick: () => {
        const nd = active ? -dir : k === "route" ? 1 : -1;
        const p = new URLSearchParams(rs.params);
        p.set("sort", k);
        p.set("dir", nd > 0 ? "asc" : "desc");
        history.replaceState(null, "", `#/service/${encodeURIComponent(service)}?${p}`);
        rs.params = p;
        routeTable(box, routes, service, k, nd, rs);
        (box.querySelector(`[data-key="sort:${k}"]`) as HTMLElement | null)?.focus();
      } }, label, active ? (dir > 0 ? " ▲" : " ▼") : ""));
  });
  const body = sorted.map((r) => h("tr", null,
    h("th", { scope: "row" }, h("a", { href: link("traces", "", { service, route: r.route }), "data-key": `route:${r.method} ${r.route}`, title: "Traces of this route" }, h("span", { class: "method" }, r.method), " ", r.route)),
    h("td", { class: "num" }, fmtNum(r.calls, 0)),
    h("td", { class: "num" }, fmtNum(r.rps, 2)),
    h("td", { class: r.errors ? "num bad" : "num" }, fmtNum(r.errors, 0)),
    h("td", { class: "num" }, fmtPct(r.calls ? r.errors / r.calls : 0)),
    h("td", { class: "num" }, fmtMs(r.p50_ms)),
    h("td", { class: "num" }, fmtMs(r.p95_ms)),
    h("td", { class: "num" }, fmtMs(r.p99_ms))));
  clear(box, routes.length
    ? h("table", { class: "routes", id: "routes" }, h("caption", { class: "sr-only" }, "Routes"), h("thead", null, h("tr", null, head)), h("tbody", null, body))
    : h("p", { class: "empty" }, "No requests in this range."));
}

function panels(series: RuntimeSeries[], language: string): HTMLElement[] {
  const fams = new Map<string, RuntimeSeries[]>();
  for (const s of series) fams.set(base(s.name), [...(fams.get(base(s.name)) ?? []), s]);
  const pref = PREFERRED[language] ?? [];
  const rank = (n: string) => {
    const i = pref.findIndex((p) => n.startsWith(p));
    return i < 0 ? 100 : i;
  };
  const names = [...fams.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, 24);
  const palette = ["--c-rate", "--c-p95", "--c-ok", "--c-warn", "--c-p99", "--c-err"];
  return names.map((n) => {
    const group = fams.get(n)!.slice(0, 6);
    const unit = group[0].unit;
    const isTime = ["s", "ms", "ns", "us"].includes(unit);
    const isBytes = unit === "By";
    const xs = [...new Set(group.flatMap((g) => g.points.map((p) => p[0])))].sort((a, b) => a - b);
    const lines: Line[] = group.map((g, i) => {
      const m = new Map(g.points);
      return {
        label: attrs(g.name).replace(/^[^=]*\./, "") || n.split(".").pop()!,
        color: palette[i % palette.length],
        values: xs.map((x) => (m.has(x) ? (isTime ? toMs(m.get(x)!, unit) : m.get(x)!) : null)),
      };
    });
    const yFmt = isTime ? (v: number) => fmtMs(v) : isBytes ? (v: number) => fmtBytes(v) : (v: number) => fmtNum(v);
    return timeChart(n + (isTime ? " (ms)" : isBytes ? "" : unit && unit !== "1" ? ` (${unit})` : ""), xs, lines.map((l) => ({ ...l, fmt: (v) => (v === null ? "–" : yFmt(v)) })), { height: 140, yFmt });
  });
}
