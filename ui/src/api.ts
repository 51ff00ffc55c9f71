// The documented JSON API of `obs-stack serve` (docs/serve.md), and nothing else. The token
// travels in the HttpOnly cookie the server sets; a 401 anywhere sends the user to the login.
export interface Project { project: string; ingest_key: string }
export interface Service {
  name: string; rps: number; calls: number; errors: number; error_rate: number;
  p50_ms: number | null; p95_ms: number | null; p99_ms: number | null;
  last_seen: number | null; language: string; sdk: string; sdk_version: string;
  agent: string; agent_version: string; source: "metrics" | "spans" | null;
}
export interface Route {
  route: string; method: string; calls: number; errors: number; rps: number;
  p50_ms: number | null; p95_ms: number | null; p99_ms: number | null;
  status_classes: Record<string, number>;
}
export interface Point {
  ts: number; calls: number; errors: number; by_class: Record<string, number>;
  p50_ms: number | null; p95_ms: number | null; p99_ms: number | null;
}
export interface Series { step: number; points: Point[] }
export interface TraceRow {
  trace_id: string; service: string; name: string; route: string; method: string;
  start_ms: number; duration_ms: number; span_count: number; error: boolean; http_status: number;
}
export interface SpanEvent { name?: string; time_unix_nano?: string | number; attributes?: Record<string, unknown> }
export interface Span {
  trace_id: string; span_id: string; parent_span_id: string; service: string; name: string;
  kind: string; start_ms: number; duration_ms: number; status: string; status_message: string;
  http_status: number; route: string; method: string; error: boolean;
  attributes: Record<string, unknown> | null; events: SpanEvent[] | null;
}
/** One page of a trace: the server bounds each answer (`truncated`, `next` → `after=`). */
export interface Trace { trace_id: string; span_count: number; returned: number; truncated: boolean; next: string | null; spans: Span[] }
export interface ErrorGroup {
  id: string; type: string; message: string; count: number; first_seen: number; last_seen: number;
  services: string[]; routes: string[]; stack_trace?: string | null; sample_trace_ids?: string[] | null;
}
export interface RuntimeSeries { service: string; name: string; unit: string; points: [number, number][] }
export interface Stats { retention_ms: number; oldest_data_ms: number | null; db_size_bytes: number; received: { spans: number } }

export interface Analysis {
  traces_analyzed: number;
  n_plus_one: { route: string; statement: string; times: number; trace_id: string }[];
  slowest_children: { route: string; span: string; share: number }[];
}

export class Unauthorized extends Error {}

type Q = Record<string, string | number | boolean | null | undefined>;

export async function get<T>(path: string, q: Q = {}): Promise<T> {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(q)) {
    if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, String(v));
  }
  const r = await fetch(u, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (r.status === 401) throw new Unauthorized("token required");
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body?.error ?? `HTTP ${r.status}`);
  return body as T;
}

/** Presents a token once as `?token=`; the server answers with the session cookie. */
export async function login(token: string): Promise<boolean> {
  const r = await fetch(`/api/v1/projects?token=${encodeURIComponent(token)}`, { credentials: "same-origin" });
  return r.ok;
}
