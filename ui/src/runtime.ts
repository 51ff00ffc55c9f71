// Reading runtime series (agents' runtime metrics and `up`'s container stats) for the panels
// and the alerts. Series names are `<metric>{attr=value,…}` as the backend stores them.
import { get, RuntimeSeries, Service } from "./api";

export interface Defaults { [key: string]: { latency_p95?: number; error_rate?: number; slo?: number } }

let defaults: Defaults | null = null;

/** The smart defaults (templates/defaults/frameworks.yaml, served by ui.rs with the UI). */
export async function smartDefaults(): Promise<Defaults> {
  if (!defaults) {
    defaults = await fetch("/assets/defaults.json").then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  }
  return defaults!;
}

export function defaultsFor(d: Defaults, s: Service): { latencyMs: number; errorRate: number; key: string } {
  const lang = s.language === "nodejs" ? "node" : s.language;
  const key = d[lang] ? lang : "default";
  const v = { ...(d.default ?? {}), ...(d[key] ?? {}) };
  return { latencyMs: (v.latency_p95 ?? 0.5) * 1000, errorRate: v.error_rate ?? 0.05, key };
}

export function base(name: string): string {
  const i = name.indexOf("{");
  return i < 0 ? name : name.slice(0, i);
}

export function attrs(name: string): string {
  const i = name.indexOf("{");
  return i < 0 ? "" : name.slice(i + 1, -1);
}

export function toMs(v: number, unit: string): number {
  return unit === "s" ? v * 1000 : unit === "ns" ? v / 1e6 : unit === "us" ? v / 1000 : v;
}

export function last(s: RuntimeSeries): number | null {
  return s.points.length ? s.points[s.points.length - 1][1] : null;
}

/** Node.js event-loop delay in ms (p99, else max, else mean), latest point. */
export function eventLoopDelayMs(series: RuntimeSeries[]): number | null {
  const loop = series.filter((s) => base(s.name).startsWith("nodejs.eventloop.delay"));
  for (const want of [".p99", ".max", ".mean", ""]) {
    const s = loop.find((s) => base(s.name) === "nodejs.eventloop.delay" + want);
    if (s && s.points.length) return toMs(last(s)!, s.unit);
  }
  return null;
}

/** Memory use over limit (0..1), from container stats or OTel container metrics. */
export function memoryRatio(series: RuntimeSeries[]): { used: number; limit: number } | null {
  const mem = series.filter((s) => /^container(_stats)?\.memory/.test(base(s.name)));
  const limit = mem.find((s) => /limit/.test(s.name));
  const used = mem.find((s) => !/limit|percent|ratio|utilization/.test(s.name));
  const l = limit && last(limit);
  const u = used && last(used);
  if (!l || u === null || u === undefined || l <= 0) return null;
  return { used: u, limit: l };
}

export interface Alert { service: string; what: string; detail: string }

export async function alertsFor(project: string, to: number): Promise<Alert[]> {
  const from = to - 5 * 60_000;
  const [svc, rt, d] = await Promise.all([
    get<{ services: Service[] }>("/api/v1/services", { project, from, to }),
    get<{ series: RuntimeSeries[] }>("/api/v1/runtime", { project, from, to }),
    smartDefaults(),
  ]);
  const out: Alert[] = [];
  for (const s of svc.services) {
    const def = defaultsFor(d, s);
    if (s.calls >= 10 && s.error_rate > def.errorRate) {
      out.push({ service: s.name, what: "error rate", detail: `${(s.error_rate * 100).toFixed(1)}% of requests failed in the last 5 min (default threshold ${(def.errorRate * 100).toFixed(0)}% for ${def.key})` });
    }
    if (s.calls >= 10 && s.p95_ms !== null && s.p95_ms > def.latencyMs) {
      out.push({ service: s.name, what: "latency", detail: `p95 ${s.p95_ms.toFixed(0)} ms over the last 5 min (objective ${def.latencyMs.toFixed(0)} ms for ${def.key})` });
    }
  }
  const bySvc = new Map<string, RuntimeSeries[]>();
  for (const r of rt.series) bySvc.set(r.service, [...(bySvc.get(r.service) ?? []), r]);
  for (const [service, series] of bySvc) {
    const m = memoryRatio(series);
    if (m && m.used / m.limit > 0.9) {
      out.push({ service, what: "memory", detail: `${((m.used / m.limit) * 100).toFixed(0)}% of its ${(m.limit / 2 ** 20).toFixed(0)} MiB limit` });
    }
    const loop = eventLoopDelayMs(series);
    if (loop !== null && loop > 50) {
      out.push({ service, what: "event loop", detail: `Node.js event-loop delay ${loop.toFixed(0)} ms (over 50 ms blocks every request)` });
    }
  }
  return out;
}
