// Traces: search (service, route, status, error, duration) and the trace waterfall with each
// span's duration, attributes, DB statements and exception events.
import { get, Service, Span, Trace, TraceRow } from "./api";
import { clear, fmtMs, fmtTime, h } from "./dom";
import { link, RouteState, state, window } from "./state";

export async function tracesPage(main: HTMLElement, rs: RouteState) {
  const { from, to } = window();
  const project = state.project;
  const p = rs.params;
  const q = {
    project, from, to,
    service: p.get("service") ?? "",
    route: p.get("route") ?? "",
    status: p.get("status") ?? "",
    error: p.get("error") ?? "",
    min_duration_ms: p.get("min") ?? "",
    limit: 100,
  };
  const [svcs, res] = await Promise.all([
    get<{ services: Service[] }>("/api/v1/services", { project, from, to }),
    get<{ traces: TraceRow[] }>("/api/v1/traces", q),
  ]);
  main.appendChild(h("h1", null, "Traces"));
  const form = h("form", { class: "filters", role: "search", onsubmit: (e: Event) => {
    e.preventDefault();
    const f = new FormData(form);
    const params: Record<string, string> = {};
    for (const [k, v] of f.entries()) if (String(v)) params[k] = String(v);
    location.hash = link("traces", "", params);
  } },
    field("Service", h("select", { name: "service", id: "f-service" }, h("option", { value: "" }, "all (root spans)"), svcs.services.map((s) => h("option", { value: s.name, selected: s.name === q.service }, s.name)))),
    field("Route", h("input", { name: "route", id: "f-route", value: q.route, placeholder: "/orders/{id}", "data-search": true, size: 18 })),
    field("Status", h("input", { name: "status", id: "f-status", value: q.status, inputmode: "numeric", pattern: "[0-9]{3}", size: 4, placeholder: "500" })),
    field("Outcome", h("select", { name: "error", id: "f-error" }, h("option", { value: "" }, "any"), h("option", { value: "true", selected: q.error === "true" }, "errors"), h("option", { value: "false", selected: q.error === "false" }, "no errors"))),
    field("Min duration (ms)", h("input", { name: "min", id: "f-min", value: q.min_duration_ms, inputmode: "decimal", size: 6 })),
    h("button", { type: "submit" }, "Search"),
    h("a", { href: link("traces"), class: "ghost-link" }, "Reset"));
  main.appendChild(form);
  if (!res.traces.length) {
    main.appendChild(h("p", { class: "empty" }, "No trace matches in this range."));
    return;
  }
  const max = Math.max(...res.traces.map((t) => t.duration_ms));
  main.appendChild(h("div", { class: "table-wrap" }, h("table", { class: "traces", id: "traces" },
    h("caption", { class: "sr-only" }, "Traces found"),
    h("thead", null, h("tr", null, ["Start", "Service", "Request", "Status", "Spans", "Duration", ""].map((c, i) => h("th", { scope: "col", class: i === 3 || i === 4 || i === 5 ? "num" : "" }, c)))),
    h("tbody", null, res.traces.map((t) => h("tr", { class: t.error ? "is-error" : "" },
      h("td", null, fmtTime(t.start_ms)),
      h("td", null, t.service),
      h("th", { scope: "row" }, h("a", { href: link("trace", t.trace_id), "data-key": `trace:${t.trace_id}` }, t.method ? h("span", { class: "method" }, t.method) : null, " ", t.route || t.name)),
      h("td", { class: t.error ? "num bad" : "num" }, t.http_status || (t.error ? "error" : "–")),
      h("td", { class: "num" }, t.span_count),
      h("td", { class: "num" }, fmtMs(t.duration_ms)),
      h("td", { class: "barcell" }, h("span", { class: t.error ? "bar err" : "bar", style: `width:${Math.max(1, (t.duration_ms / max) * 100).toFixed(1)}%` }))))))));
}

function field(label: string, input: HTMLElement) {
  return h("label", null, h("span", null, label), input);
}

interface Node { span: Span; depth: number }

function order(spans: Span[]): Node[] {
  const ids = new Set(spans.map((s) => s.span_id));
  const kids = new Map<string, Span[]>();
  const roots: Span[] = [];
  for (const s of spans) {
    const parent = s.parent_span_id && /[^0]/.test(s.parent_span_id) && ids.has(s.parent_span_id) ? s.parent_span_id : "";
    if (!parent) roots.push(s);
    else kids.set(parent, [...(kids.get(parent) ?? []), s]);
  }
  const out: Node[] = [];
  const walk = (s: Span, depth: number) => {
    out.push({ span: s, depth });
    for (const k of (kids.get(s.span_id) ?? []).sort((a, b) => a.start_ms - b.start_ms)) walk(k, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.start_ms - b.start_ms)) walk(r, 0);
  return out;
}

function statement(s: Span): string | null {
  const a = s.attributes ?? {};
  const v = a["db.query.text"] ?? a["db.statement"];
  return typeof v === "string" ? v : null;
}

/** Pages of a trace the browser keeps at most: past that, the page says how many it shows. */
const MAX_SPANS_SHOWN = 10_000;

export async function tracePage(main: HTMLElement, rs: RouteState) {
  const first = await get<Trace>(`/api/v1/traces/${encodeURIComponent(rs.arg)}`, { project: state.project });
  renderTrace(main, first, first.spans);
}

function renderTrace(main: HTMLElement, t: Trace, spans: Span[]) {
  clear(main);
  const nodes = order(spans);
  // a loop, not Math.min(...spans): spreading thousands of arguments overflows the stack
  let start = Infinity;
  let end = -Infinity;
  for (const s of spans) {
    start = Math.min(start, s.start_ms);
    end = Math.max(end, s.start_ms + s.duration_ms);
  }
  const total = Math.max(end - start, 0.001);
  const root = nodes[0]?.span;
  main.appendChild(h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: link("traces") }, "Traces"), " / "));
  main.appendChild(h("h1", null, root ? `${root.service}: ${root.name}` : "Trace"));
  main.appendChild(h("p", { class: "muted" }, `${t.span_count} spans · ${fmtMs(total)} · trace ${t.trace_id} · started ${new Date(start).toLocaleString()}`));
  if (spans.length < t.span_count) {
    const more = t.next && spans.length < MAX_SPANS_SHOWN
      ? h("button", { type: "button", id: "trace-more", onclick: async () => {
          const page = await get<Trace>(`/api/v1/traces/${encodeURIComponent(t.trace_id)}`, { project: state.project, after: t.next });
          renderTrace(main, page, spans.concat(page.spans));
        } }, `Load the next ${Math.min(t.span_count - spans.length, 1000).toLocaleString()} spans`)
      : null;
    main.appendChild(h("p", { class: "banner", id: "trace-truncated", role: "status" },
      `Showing the first ${spans.length.toLocaleString()} of ${t.span_count.toLocaleString()} spans: large traces are sent in pages. `, more));
  }
  const detail = h("section", { class: "panel span-detail", id: "span-detail", "aria-live": "polite" });
  const rows = nodes.map(({ span: s, depth }) => {
    const left = ((s.start_ms - start) / total) * 100;
    const width = Math.max(0.3, (s.duration_ms / total) * 100);
    const stmt = statement(s);
    const exc = (s.events ?? []).some((e) => e.name === "exception");
    const row = h("li", { class: `span${s.error ? " is-error" : ""}`, "data-span": s.span_id },
      h("button", { type: "button", class: "span-row", "aria-controls": "span-detail", "data-key": `span:${s.span_id}`, onclick: () => select(s, row) },
        h("span", { class: "span-name", style: `padding-left:${depth * 14}px` },
          h("span", { class: `kind kind-${s.kind}` }, s.kind === "server" ? "S" : s.kind === "client" ? "C" : s.kind === "internal" ? "I" : s.kind[0]?.toUpperCase() ?? "?"),
          " ", h("span", { class: "svc" }, s.service), " ", s.name,
          exc ? h("span", { class: "tag bad" }, "exception") : null,
          stmt ? h("code", { class: "stmt" }, stmt) : null),
        h("span", { class: "track" }, h("span", { class: s.error ? "bar err" : s.kind === "client" ? "bar client" : "bar", style: `left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%` }),
          h("span", { class: left + width > 85 ? "dur inside" : "dur", style: left + width > 85 ? `right:${Math.max(0, 100 - left - width).toFixed(2)}%` : `left:${(left + width).toFixed(2)}%` }, fmtMs(s.duration_ms)))));
    return row;
  });
  main.appendChild(h("div", { class: "waterfall-head" }, h("span", null, "Span"), h("span", { class: "scale" }, h("span", null, "0"), h("span", null, fmtMs(total / 2)), h("span", null, fmtMs(total)))));
  main.appendChild(h("ol", { class: "waterfall", id: "waterfall", "aria-label": "Spans, in start order" }, rows));
  main.appendChild(detail);
  function select(s: Span, row: HTMLElement) {
    main.querySelectorAll(".span.selected").forEach((r) => r.classList.remove("selected"));
    row.classList.add("selected");
    spanDetail(detail, s);
  }
  // open on the first span with an exception, else the first error, else the root
  const first = nodes.find((n) => (n.span.events ?? []).some((e) => e.name === "exception")) ?? nodes.find((n) => n.span.error) ?? nodes[0];
  if (first) select(first.span, rows[nodes.indexOf(first)]);
}

function spanDetail(box: HTMLElement, s: Span) {
  const attrs = Object.entries(s.attributes ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const stmt = statement(s);
  clear(box,
    h("h2", null, s.name),
    h("p", { class: "muted" }, `${s.service} · ${s.kind} · ${fmtMs(s.duration_ms)} · status ${s.status}${s.status_message ? ": " + s.status_message : ""}${s.http_status ? " · HTTP " + s.http_status : ""}`),
    stmt ? [h("h3", null, "DB statement"), h("pre", { class: "code" }, stmt)] : null,
    (s.events ?? []).map((e) => {
      const a = e.attributes ?? {};
      const stack = a["exception.stacktrace"];
      return h("div", { class: e.name === "exception" ? "event exception" : "event" },
        h("h3", null, e.name === "exception" ? `Exception: ${String(a["exception.type"] ?? "")}` : `Event: ${e.name ?? ""}`),
        a["exception.message"] ? h("p", null, String(a["exception.message"])) : null,
        typeof stack === "string" ? h("pre", { class: "code stack" }, stack) : null,
        e.name !== "exception" ? kv(Object.entries(a)) : null);
    }),
    h("h3", null, "Attributes"),
    attrs.length ? kv(attrs) : h("p", { class: "muted" }, "none"));
}

function kv(entries: [string, unknown][]) {
  return h("table", { class: "kv" }, h("tbody", null, entries.map(([k, v]) => h("tr", null, h("th", { scope: "row" }, k), h("td", null, typeof v === "string" ? v : JSON.stringify(v))))));
}
