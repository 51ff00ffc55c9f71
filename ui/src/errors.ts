// Errors: groups (type + message + where) with counts, first/last seen, the routes, and for
// one group the latest stack trace and sample traces.
import { ErrorGroup, get, Point, Service } from "./api";
import { Line, timeChart } from "./charts";
import { fmtAgo, h } from "./dom";
import { link, RouteState, state, window } from "./state";

export async function errorsPage(main: HTMLElement, rs: RouteState) {
  if (rs.arg) return errorGroup(main, rs.arg);
  const { from, to } = window();
  const project = state.project;
  const service = rs.params.get("service") ?? "";
  const step = Math.max(10_000, Math.round((to - from) / 60 / 10_000) * 10_000);
  const [groups, svcs] = await Promise.all([
    get<{ errors: ErrorGroup[] }>("/api/v1/errors", { project, from, to, service }),
    get<{ services: Service[] }>("/api/v1/services", { project, from, to }),
  ]);
  const failing = svcs.services.filter((s) => s.errors > 0 && (!service || s.name === service)).slice(0, 6);
  const series = await Promise.all(failing.map((s) => get<{ points: Point[] }>("/api/v1/series", { project, service: s.name, from, to, step }).then((r) => r.points)));
  main.appendChild(h("h1", null, service ? `Errors in ${service}` : "Errors"));
  if (failing.length) {
    const xs = [...new Set(series.flatMap((p) => p.map((x) => x.ts)))].sort((a, b) => a - b);
    const palette = ["--c-err", "--c-warn", "--c-p99", "--c-rate", "--c-p95", "--c-ok"];
    const lines: Line[] = failing.map((s, i) => {
      const m = new Map(series[i].map((p) => [p.ts, p.errors]));
      return { label: s.name, color: palette[i], values: xs.map((x) => m.get(x) ?? 0) };
    });
    main.appendChild(timeChart("Failed requests (5xx) over time", xs, lines, { height: 150 }));
  }
  if (!groups.errors.length) {
    main.appendChild(h("p", { class: "empty" }, "No errors in this range."));
    return;
  }
  const span = to - from;
  main.appendChild(h("div", { class: "table-wrap" }, h("table", { class: "errors", id: "errors" },
    h("caption", { class: "sr-only" }, "Error groups"),
    h("thead", null, h("tr", null, ["Error", "Count", "Seen (range)", "Last seen", "Services", "Routes"].map((c, i) => h("th", { scope: "col", class: i === 1 ? "num" : "" }, c)))),
    h("tbody", null, groups.errors.map((g) => h("tr", null,
      h("th", { scope: "row" }, h("a", { href: link("errors", g.id), "data-key": `err:${g.id}` }, h("strong", null, g.type || "error")), h("div", { class: "msg" }, g.message)),
      h("td", { class: "num" }, String(g.count)),
      h("td", { class: "barcell", title: `first ${new Date(g.first_seen).toLocaleString()}, last ${new Date(g.last_seen).toLocaleString()}` },
        h("span", { class: "bar err", style: `left:${clamp(((g.first_seen - from) / span) * 100)}%;width:${Math.max(1, clamp(((g.last_seen - Math.max(g.first_seen, from)) / span) * 100))}%` })),
      h("td", null, fmtAgo(g.last_seen)),
      h("td", null, g.services.map((s) => h("a", { href: link("service", s), class: "chip" }, s))),
      h("td", { class: "routes-cell" }, g.routes.slice(0, 3).join(", "), g.routes.length > 3 ? ` +${g.routes.length - 3}` : "")))))));
}

function clamp(v: number): number {
  return Math.round(Math.min(100, Math.max(0, v)) * 100) / 100;
}

async function errorGroup(main: HTMLElement, id: string) {
  const g = await get<ErrorGroup>(`/api/v1/errors/${encodeURIComponent(id)}`, { project: state.project });
  main.appendChild(h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: link("errors") }, "Errors"), " / "));
  main.appendChild(h("h1", null, g.type || "error"));
  main.appendChild(h("p", { class: "msg big" }, g.message));
  main.appendChild(h("dl", { class: "kpis" },
    h("div", { class: "kpi" }, h("dt", null, "Count"), h("dd", null, String(g.count))),
    h("div", { class: "kpi" }, h("dt", null, "First seen"), h("dd", null, new Date(g.first_seen).toLocaleString())),
    h("div", { class: "kpi" }, h("dt", null, "Last seen"), h("dd", null, `${new Date(g.last_seen).toLocaleString()} (${fmtAgo(g.last_seen)})`)),
    h("div", { class: "kpi" }, h("dt", null, "Services"), h("dd", null, g.services.map((s) => h("a", { href: link("service", s), class: "chip" }, s))))));
  main.appendChild(h("section", { "aria-labelledby": "st-h" }, h("h2", { id: "st-h" }, "Latest stack trace"),
    g.stack_trace ? h("pre", { class: "code stack", id: "stack" }, g.stack_trace) : h("p", { class: "muted" }, "No stack trace was recorded (the error came from a log line or a span status without an exception event).")));
  main.appendChild(h("section", { "aria-labelledby": "rt-h" }, h("h2", { id: "rt-h" }, "Routes"),
    g.routes.length ? h("ul", { class: "plain" }, g.routes.map((r) => h("li", null, h("a", { href: link("traces", "", { service: g.services[0], route: r.replace(/^[A-Z]+ /, ""), error: "true" }) }, r)))) : h("p", { class: "muted" }, "none recorded")));
  const samples = g.sample_trace_ids ?? [];
  main.appendChild(h("section", { "aria-labelledby": "sm-h" }, h("h2", { id: "sm-h" }, "Sample traces"),
    samples.length ? h("ul", { class: "plain mono" }, samples.map((t) => h("li", null, h("a", { href: link("trace", t) }, t)))) : h("p", { class: "muted" }, "none kept")));
}
