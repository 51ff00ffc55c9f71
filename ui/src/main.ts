// The shell: header (navigation, project switcher, time range, live updates, theme), the
// hash router, the token login, and live refresh (polling every 5 s while the tab is visible).
import "./app.css";
import { get, login, Project, Stats, Unauthorized } from "./api";
import { destroyAll } from "./charts";
import { clear, h } from "./dom";
import { errorsPage } from "./errors";
import { overviewPage } from "./overview";
import { servicePage } from "./service";
import { current, link, ranges, save, state } from "./state";
import { tracePage, tracesPage } from "./traces";

type Page = (main: HTMLElement, rs: ReturnType<typeof current>) => Promise<void>;

const PAGES: Record<string, Page> = {
  overview: overviewPage,
  service: servicePage,
  traces: tracesPage,
  trace: tracePage,
  errors: errorsPage,
};
/** Pages that refresh themselves while live updates are on. */
const LIVE = new Set(["overview", "service", "errors"]);

const REFRESH_MS = 5000;
let projects: Project[] = [];
let timer = 0;
let rendering = false;

function applyTheme() {
  const t = localStorage.getItem("obs.theme") ?? "auto";
  if (t === "auto") document.documentElement.removeAttribute("data-theme");
  else document.documentElement.setAttribute("data-theme", t);
  return t;
}

function header(): HTMLElement {
  const rs = current();
  const nav = (page: string, label: string, key: string) =>
    h("a", { href: link(page), class: rs.page === page || (page === "overview" && rs.page === "service") || (page === "traces" && rs.page === "trace") ? "active" : "", "aria-current": rs.page === page ? "page" : null, "aria-keyshortcuts": key, title: `${label} (${key})` }, label);
  const proj = h("select", { id: "project", "aria-label": "Project", onchange: (e: Event) => { state.project = (e.target as HTMLSelectElement).value; save(); location.hash = link("overview"); render(); } },
    projects.map((p) => h("option", { value: p.project, selected: p.project === state.project }, p.project)));
  const range = h("select", { id: "range", "aria-label": "Time range", onchange: (e: Event) => { state.rangeMs = Number((e.target as HTMLSelectElement).value); save(); render(); } },
    ranges().map((r) => h("option", { value: r.ms, selected: r.ms === state.rangeMs }, r.label)));
  const liveBox = h("input", { type: "checkbox", id: "live", checked: state.live, onchange: (e: Event) => { state.live = (e.target as HTMLInputElement).checked; save(); schedule(); } });
  const theme = localStorage.getItem("obs.theme") ?? "auto";
  const themeBtn = h("button", { type: "button", class: "ghost", "aria-label": `Theme: ${theme}`, title: "Theme: auto (follows the system), light, dark", onclick: () => {
    const next = { auto: "light", light: "dark", dark: "auto" }[applyTheme()] ?? "auto";
    localStorage.setItem("obs.theme", next);
    applyTheme();
    render();
  } }, theme === "auto" ? "◐ auto" : theme === "light" ? "☀ light" : "☾ dark");
  return h("header", { class: "top" },
    h("a", { class: "brand", href: link("overview") }, "obs-stack"),
    h("nav", { "aria-label": "Pages" }, nav("overview", "Overview", "1"), nav("traces", "Traces", "2"), nav("errors", "Errors", "3")),
    h("div", { class: "controls" },
      h("label", null, "Project ", proj),
      h("label", null, "Range ", range),
      h("label", { class: "live" }, liveBox, " Live"),
      themeBtn));
}

function loginPage(root: HTMLElement, wrong = false) {
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: true, "aria-describedby": "token-help", size: 40 });
  const msg = h("p", { class: "bad", role: "alert" }, wrong ? "That token was not accepted." : "");
  clear(root, h("main", { id: "main", class: "login" },
    h("h1", null, "obs-stack"),
    h("form", { onsubmit: async (e: Event) => {
      e.preventDefault();
      if (await login(input.value.trim())) boot();
      else loginPage(root, true);
    } },
      h("label", { for: "token" }, "Access token"),
      input,
      h("p", { id: "token-help", class: "muted" }, "The link `obs-stack up` prints carries it once; or run ", h("code", null, "obs-stack serve token"), "."),
      h("button", { type: "submit" }, "Sign in"),
      msg)));
  input.focus();
}

async function render(fromTimer = false) {
  if (rendering) return;
  rendering = true;
  const root = document.getElementById("app")!;
  const rs = current();
  const page = PAGES[rs.page] ?? overviewPage;
  try {
    if (!fromTimer) {
      destroyAll();
      clear(root, header(), h("main", { id: "main", tabindex: "-1" }, h("p", { class: "muted" }, "Loading…")));
    }
    const main = root.querySelector("main")!;
    const next = h("main", { id: "main", tabindex: "-1" });
    // build off-document, then swap, keeping the scroll position and the focused control
    const focusKey = (document.activeElement as HTMLElement | null)?.dataset?.key;
    const y = scrollY;
    const offscreen = h("div", { class: "offscreen", "aria-hidden": "true" }, next);
    document.body.appendChild(offscreen);
    await page(next, rs);
    destroyAll(); // the old page's charts; the new ones mount on the next frame
    main.replaceWith(next);
    offscreen.remove();
    scrollTo(0, y);
    if (focusKey) (next.querySelector(`[data-key="${CSS.escape(focusKey)}"]`) as HTMLElement | null)?.focus();
    document.title = `${next.querySelector("h1")?.textContent ?? "obs-stack"} · obs-stack`;
  } catch (e) {
    if (e instanceof Unauthorized) {
      loginPage(root);
    } else {
      const m = root.querySelector("main");
      if (m) clear(m, h("p", { class: "bad", role: "alert" }, `Could not load: ${(e as Error).message}`));
    }
  } finally {
    rendering = false;
    document.querySelectorAll(".offscreen").forEach((o) => o.remove());
  }
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (state.live && LIVE.has(PAGES[current().page] ? current().page : "overview")) {
    timer = setTimeout(() => {
      if (document.hidden) schedule();
      else render(true);
    }, REFRESH_MS);
  }
}

async function boot() {
  applyTheme();
  try {
    projects = await get<Project[]>("/api/v1/projects");
    const stats = await get<Stats>("/api/v1/stats");
    state.retentionMs = stats.retention_ms;
  } catch (e) {
    if (e instanceof Unauthorized) return loginPage(document.getElementById("app")!);
    clear(document.getElementById("app")!, h("p", { class: "bad", role: "alert" }, `The backend did not answer: ${(e as Error).message}`));
    return;
  }
  const fromUrl = current().params.get("project");
  if (fromUrl) state.project = fromUrl;
  if (!projects.some((p) => p.project === state.project)) state.project = projects[0]?.project ?? "";
  if (!ranges().some((r) => r.ms === state.rangeMs)) state.rangeMs = ranges()[Math.min(1, ranges().length - 1)].ms;
  save();
  render();
}

addEventListener("hashchange", () => render());
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => render());
addEventListener("keydown", (e) => {
  const t = e.target as HTMLElement;
  if (e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) return;
  const go = { "1": "overview", "2": "traces", "3": "errors" }[e.key];
  if (go) location.hash = link(go);
  if (e.key === "/") {
    const s = document.querySelector<HTMLElement>("[data-search]");
    if (s) { e.preventDefault(); s.focus(); }
  }
});
boot();
