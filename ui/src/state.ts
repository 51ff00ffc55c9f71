// What the user chose: the project, the time range and live updates. The route and its
// parameters live in the location hash (so views can be bookmarked and the back button works);
// the project and range are remembered in localStorage.
export interface Range { label: string; ms: number }

export const RANGES: Range[] = [
  { label: "5 min", ms: 5 * 60_000 },
  { label: "15 min", ms: 15 * 60_000 },
  { label: "1 h", ms: 3_600_000 },
  { label: "6 h", ms: 6 * 3_600_000 },
  { label: "24 h", ms: 24 * 3_600_000 },
  { label: "7 d", ms: 7 * 24 * 3_600_000 },
  { label: "30 d", ms: 30 * 24 * 3_600_000 },
];

export const state = {
  project: localStorage.getItem("obs.project") ?? "",
  rangeMs: Number(localStorage.getItem("obs.range")) || 15 * 60_000,
  live: localStorage.getItem("obs.live") !== "0",
  retentionMs: 24 * 3_600_000,
};

export function save() {
  localStorage.setItem("obs.project", state.project);
  localStorage.setItem("obs.range", String(state.rangeMs));
  localStorage.setItem("obs.live", state.live ? "1" : "0");
}

/** The ranges offered: 5 min up to the server's retention (the last one is the retention). */
export function ranges(): Range[] {
  const out = RANGES.filter((r) => r.ms < state.retentionMs);
  const h = state.retentionMs / 3_600_000;
  out.push({ label: `all (${h >= 48 ? (h / 24).toFixed(0) + " d" : h.toFixed(0) + " h"})`, ms: state.retentionMs });
  return out;
}

/** from/to for queries, in unix ms; `to` is rounded to the second so repeated queries agree. */
export function window(): { from: number; to: number } {
  const to = Math.ceil(Date.now() / 1000) * 1000;
  const ms = Math.min(state.rangeMs, state.retentionMs);
  return { from: to - ms, to };
}

export interface RouteState { page: string; arg: string; params: URLSearchParams }

export function current(): RouteState {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const [page = "overview", ...rest] = path.split("/");
  return { page: page || "overview", arg: decodeURIComponent(rest.join("/")), params: new URLSearchParams(query) };
}

export function link(page: string, arg = "", params: Record<string, string | number | boolean | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "" && v !== false) q.set(k, String(v));
  const qs = q.toString();
  return `#/${page}${arg ? "/" + encodeURIComponent(arg) : ""}${qs ? "?" + qs : ""}`;
}
