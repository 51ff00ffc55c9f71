// Overview: every service of the project, its rate, errors and p95 with sparklines, what
// instruments it, whether it is reporting, and a banner with what is over its defaults.
import { get, Point, RuntimeSeries, Service } from "./api";
import { sparkline } from "./charts";
import { fmtAgo, fmtMs, fmtNum, fmtPct, h } from "./dom";
import { alertsFor, base, last } from "./runtime";
import { link, state, window } from "./state";

export async function overviewPage(main: HTMLElement) {
  const { from, to } = window();
  const project = state.project;
  const step = Math.max(10_000, Math.round((to - from) / 30 / 10_000) * 10_000);
  const [svc, rt, alerts] = await Promise.all([
    get<{ services: Service[] }>("/api/v1/services", { project, from, to }),
    get<{ series: RuntimeSeries[] }>("/api/v1/runtime", { project, from: to - 5 * 60_000, to }),
    alertsFor(project, to),
  ]);
  const series = await Promise.all(
    svc.services.map((s) => get<{ points: Point[] }>("/api/v1/series", { project, service: s.name, from, to, step }).then((r) => r.points)),
  );
  main.appendChild(h("h1", null, `Services in ${project}`));
  if (alerts.length) {
    main.appendChild(h("section", { class: "banner", role: "status", "aria-label": "Alerts" },
      h("strong", null, `${alerts.length} alert${alerts.length > 1 ? "s" : ""}`),
      h("ul", null, alerts.map((a) => h("li", null, h("a", { href: link("service", a.service) }, a.service), ` — ${a.what}: ${a.detail}`)))));
  }
  if (!svc.services.length) {
    main.appendChild(h("p", { class: "empty" }, "No service has reported in this range. Instrument one with ", h("code", null, "obs-stack up"), " or point an OpenTelemetry SDK at this server."));
    return;
  }
  const rows = svc.services.map((s, i) => {
    const pts = series[i];
    const xs = pts.map((p) => p.ts);
    const secs = step / 1000;
    const mine = rt.series.filter((r) => r.service === s.name);
    return h("tr", null,
      h("th", { scope: "row" }, h("a", { href: link("service", s.name), "data-key": `svc:${s.name}` }, s.name)),
      h("td", { class: "num" }, fmtNum(s.rps, 2), h("span", { class: "unit" }, "/s")),
      h("td", null, sparkline(pts.map((p) => p.calls / secs), xs, "--c-rate", `requests per second for ${s.name}`)),
      h("td", { class: s.error_rate > 0.05 ? "num bad" : "num" }, fmtPct(s.error_rate)),
      h("td", null, sparkline(pts.map((p) => (p.calls ? p.errors / p.calls : null)), xs, "--c-err", `error rate for ${s.name}`)),
      h("td", { class: "num" }, fmtMs(s.p95_ms)),
      h("td", null, sparkline(pts.map((p) => p.p95_ms), xs, "--c-p95", `p95 latency for ${s.name}`)),
      h("td", null, s.language || h("span", { class: "muted" }, "unknown"), s.sdk && s.sdk !== "opentelemetry" ? h("div", { class: "muted small" }, s.sdk) : null),
      h("td", null, instrumentation(s)),
      h("td", null, containerState(s, mine)),
    );
  });
  main.appendChild(h("div", { class: "table-wrap" }, h("table", { class: "services" },
    h("caption", { class: "sr-only" }, "Services"),
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Service"), h("th", { scope: "col", class: "num" }, "Req/s"), h("th", { scope: "col" }, ""),
      h("th", { scope: "col", class: "num" }, "Errors"), h("th", { scope: "col" }, ""),
      h("th", { scope: "col", class: "num" }, "p95"), h("th", { scope: "col" }, ""),
      h("th", { scope: "col" }, "Language"), h("th", { scope: "col" }, "Instrumented by"), h("th", { scope: "col" }, "Container"))),
    h("tbody", null, rows))));
}

function instrumentation(s: Service): HTMLElement {
  if (s.agent) return h("span", { class: "tag ok", title: `data from ${s.source ?? "nothing yet"}` }, `agent ${s.agent}${s.agent_version ? " " + s.agent_version : ""}`);
  if (s.sdk) return h("span", { class: "tag ok", title: `data from ${s.source ?? "nothing yet"}` }, `SDK ${s.sdk_version || s.sdk}`);
  return h("span", { class: "tag warn", title: "no in-process agent: container metrics and HTTP checks only" }, "fallback");
}

function containerState(s: Service, rt: RuntimeSeries[]): HTMLElement {
  const up = rt.find((r) => base(r.name) === "http_check.up");
  const cpu = rt.find((r) => /^container(_stats)?\.cpu/.test(base(r.name)));
  const mem = rt.find((r) => /^container(_stats)?\.memory/.test(base(r.name)) && !/limit/.test(r.name));
  const parts: (HTMLElement | string)[] = [];
  const fresh = s.last_seen !== null && Date.now() - s.last_seen < 120_000;
  if (up && last(up) === 0) parts.push(h("span", { class: "tag bad" }, "down"));
  else parts.push(h("span", { class: fresh ? "tag ok" : "tag warn", title: `last data ${fmtAgo(s.last_seen)}` }, fresh ? "reporting" : `silent ${fmtAgo(s.last_seen)}`));
  if (cpu && last(cpu) !== null) parts.push(h("span", { class: "muted small" }, ` cpu ${fmtNum(last(cpu)!, 1)}${cpu.unit === "1" ? "" : " " + cpu.unit}`));
  if (mem && last(mem) !== null) parts.push(h("span", { class: "muted small" }, ` mem ${(last(mem)! / 2 ** 20).toFixed(0)} MiB`));
  return h("span", null, parts);
}
