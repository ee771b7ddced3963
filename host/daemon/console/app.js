"use strict";

// Every admin API path the console calls, in the OpenAPI template form of
// docs/API.md. Paths are only ever built from these with path(); query
// strings are added by path() too, never written into a literal.
const API = {
  session: "/api/session",
  overview: "/api/overview",
  plugins: "/api/plugins",
  connection: "/api/connections/{name}",
  connectionAuthorize: "/api/connections/{name}/authorize",
  pipelines: "/api/pipelines",
  pipelineRun: "/api/pipelines/{name}/run",
  pipelinePause: "/api/pipelines/{name}/pause",
  pipelineResume: "/api/pipelines/{name}/resume",
  runs: "/api/runs",
  run: "/api/runs/{id}",
  runStop: "/api/runs/{id}/stop",
  errors: "/api/errors",
  dlq: "/api/dlq",
  deadLetter: "/api/dlq/{id}",
  dlqReplay: "/api/dlq/{id}/replay",
  dlqDiscard: "/api/dlq/{id}/discard",
  conflicts: "/api/conflicts",
  conflict: "/api/conflicts/{id}",
  conflictResolve: "/api/conflicts/{id}/resolve",
  identity: "/api/identity",
  hosts: "/api/hosts",
  audit: "/api/audit",
  auditExport: "/api/audit/export",
  map: "/api/map",
  alertChannels: "/api/alerts/channels",
  alertChannelTest: "/api/alerts/channels/{name}/test",
  alertRules: "/api/alerts/rules",
  alertIncidents: "/api/alerts/incidents",
  connections: "/api/connections",
  survey: "/api/survey",
  reviews: "/api/reviews",
  review: "/api/reviews/{id}",
  reviewAccept: "/api/reviews/{id}/accept",
  reviewReject: "/api/reviews/{id}/reject",
};

const TOKEN_KEY = "nexo.token";
const REFRESH_MS = 5000;
const RUN_STATUSES = ["running", "succeeded", "failed", "interrupted", "cancelled"];
// Record outcomes in the order a sync produces them; `conflicts` is the Counts key of `conflict`.
const OUTCOMES = ["created", "matched", "updated", "unchanged", "skipped", "deleted", "failed", "quarantined", "conflict"];
const COUNT_OF = { conflict: "conflicts" };

/* ---------- requests ---------- */

function path(template, params = {}, query = {}) {
  const p = template.replace(/\{(\w+)\}/g, (_, k) => {
    if (params[k] === undefined || params[k] === null) throw new Error(`missing path parameter ${k}`);
    return encodeURIComponent(String(params[k]));
  });
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  const s = qs.toString();
  return s ? `${p}?${s}` : p;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function request(method, url, body, token = sessionStorage.getItem(TOKEN_KEY)) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (_) {
    throw new ApiError(0, "Cannot reach the Nexo daemon. Is `nexo serve` still running?");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    const msg = data && typeof data.error === "string" ? data.error : `${method} ${url.split("?")[0]} failed with HTTP ${res.status}`;
    throw new ApiError(res.status, msg);
  }
  return data;
}

// All view calls go through here so an expired or revoked token always lands on the login form.
async function api(method, url, body) {
  try {
    return await request(method, url, body);
  } catch (e) {
    if (e.status === 401) {
      e.handled = true;
      signOut(`Signed out: ${e.message}`);
    }
    throw e;
  }
}
const get = (url) => api("GET", url);
const post = (url, body) => api("POST", url, body);

/* ---------- DOM helpers (text only ever goes in as text nodes) ---------- */

const $ = (sel) => document.querySelector(sel);

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}
function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
}
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}
function svg(tag, attrs, ...kids) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

// Class names derived from data are reduced to a safe token.
const tok = (s) => String(s ?? "unknown").toLowerCase().replace(/[^a-z0-9-]/g, "-");
const badge = (status, text) => h("span", { class: `badge st-${tok(status)}` }, text ?? status ?? "unknown");
const muted = (text) => h("span", { class: "muted" }, text);
const mono = (text, title) => h("span", { class: "mono", title }, text);
const empty = (text, attrs) => h("div", Object.assign({ class: "empty" }, attrs), text);
const runLink = (id) => h("a", { class: "run-link", href: `#/runs/${encodeURIComponent(id)}` }, `#${id}`);
const pipelineLink = (name) => h("a", { href: `#/runs?${new URLSearchParams({ pipeline: name })}` }, name);

// Backtick-quoted parts of plain-language text (capabilities) become <code>.
function richText(text) {
  return String(text).split("`").map((part, i) => (i % 2 ? h("code", null, part) : part));
}

function table(headers, rows, cls) {
  return h("div", { class: "table-wrap" },
    h("table", { class: `grid ${cls || ""}` },
      h("thead", null, h("tr", null, headers.map((x) =>
        Array.isArray(x) ? h("th", { class: x[1] }, x[0]) : h("th", null, x)))),
      h("tbody", null, rows)));
}

function panel(title, aside, ...body) {
  return h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", null, title), aside ? h("div", { class: "panel-aside" }, aside) : null),
    body);
}

function field(label, control) {
  return h("label", { class: "field" }, h("span", null, label), control);
}

function select(id, options, value, onChange) {
  const s = h("select", { id }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  s.addEventListener("change", () => onChange(s.value));
  return s;
}

function button(text, attrs, onClick) {
  const b = h("button", Object.assign({ type: "button", class: "btn" }, attrs), text);
  if (onClick) b.addEventListener("click", () => onClick(b));
  return b;
}

// Disables the button while the request is in flight so a double click cannot act twice.
async function act(btn, fn) {
  btn.disabled = true;
  try {
    await fn();
  } catch (e) {
    fail(e);
  } finally {
    btn.disabled = false;
  }
}

/* ---------- formatting ---------- */

const numFmt = new Intl.NumberFormat();
const num = (n) => (n === null || n === undefined ? "–" : numFmt.format(n));
const dtFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });

function ago(d) {
  const s = Math.round((d.getTime() - Date.now()) / 1000);
  const a = Math.abs(s);
  let t;
  if (a < 45) return s > 0 ? "in a moment" : "just now";
  if (a < 5400) t = `${Math.round(a / 60)} min`;
  else if (a < 129600) t = `${Math.round(a / 3600)} h`;
  else t = `${Math.round(a / 86400)} d`;
  return s > 0 ? `in ${t}` : `${t} ago`;
}

// Shows local time (or relative), with the exact UTC instant on hover.
function when(iso, relative) {
  if (!iso) return muted("–");
  const d = new Date(iso);
  if (isNaN(d)) return h("span", null, iso);
  const abs = dtFmt.format(d);
  return h("time", { datetime: iso, title: `${abs} · ${iso}` }, relative ? ago(d) : abs);
}

// Log lines only need the time of day; the date is in the run header.
function clock(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d)) return h("span", null, iso || "");
  const t = d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  return h("time", { datetime: iso, title: `${dtFmt.format(d)} · ${iso}` }, t);
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} m`;
}

const pct = (rate) => `${Math.round((rate || 0) * 1000) / 10}%`;

// Payloads may arrive as JSON values or as JSON text; both are shown as values.
function asJson(v) {
  if (typeof v !== "string") return v;
  try { return JSON.parse(v); } catch (_) { return v; }
}
const pretty = (v) => JSON.stringify(asJson(v), null, 2) ?? "null";
const compact = (v) => (typeof v === "string" ? v : JSON.stringify(v));
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function getPath(obj, p) {
  return p.split(/\.|\[(\d+)\]/).filter((x) => x).reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj);
}

/* ---------- banner, notices, session ---------- */

let bannerAuto = false;
function showError(msg, auto = false) {
  $("#error-text").textContent = msg;
  $("#error-banner").hidden = false;
  bannerAuto = auto;
}
function hideError() { $("#error-banner").hidden = true; }

// Reports an API failure; when a view root is given, it also gets an inline error state.
function fail(e, root, retry) {
  if (e && e.handled) return;
  const msg = (e && e.message) || String(e);
  showError(msg);
  if (root) {
    root.replaceChildren(h("div", { class: "state-error" },
      h("strong", null, "This view could not be loaded."), h("p", null, msg),
      retry ? button("Try again", null, retry) : null));
  }
}

let noticeTimer = null;
function notify(...parts) {
  const n = $("#notice");
  n.replaceChildren(...parts);
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
}

function loginError(msg) {
  const el = $("#login-error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

function showLogin(msg) {
  $("#app").hidden = true;
  $("#login-view").hidden = false;
  loginError(msg);
  $("#token").focus();
}

function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  nav.gen++;
  clearInterval(nav.timer);
  $("#view").replaceChildren();
  $("#session-name").textContent = "";
  hideError();
  showLogin(msg);
}

function enterApp(session) {
  $("#login-view").hidden = true;
  $("#app").hidden = false;
  loginError(null);
  // Only the token's name and role are shown, never the token.
  $("#session-name").textContent = session && session.token_name ? `token: ${session.token_name} (${session.role})` : "";
  // The API refuses what the role may not do; the page says so up front.
  document.body.dataset.role = (session && session.role) || "";
  route();
}

/* ---------- router ---------- */

const nav = { gen: 0, timer: null };
const ROUTES = [
  [/^\/$/, "dashboard", "Dashboard", viewDashboard],
  [/^\/runs$/, "runs", "Runs", viewRuns],
  [/^\/runs\/([^/]+)$/, "runs", "Run", viewRun],
  [/^\/errors$/, "errors", "Errors", viewErrors],
  [/^\/dlq$/, "dlq", "Dead letters", viewDlq],
  [/^\/conflicts$/, "conflicts", "Conflicts", viewConflicts],
  [/^\/plugins$/, "plugins", "Plugins", viewPlugins],
  [/^\/lookup$/, "lookup", "Lookup", viewLookup],
  [/^\/hosts$/, "hosts", "Hosts", viewHosts],
  [/^\/audit$/, "audit", "Audit", viewAudit],
  [/^\/map$/, "map", "Map", viewMap],
  [/^\/alerts$/, "alerts", "Alerts", viewAlerts],
  [/^\/survey$/, "survey", "Survey", viewSurvey],
  [/^\/review$/, "review", "Review", viewReviews],
  [/^\/review\/([^/]+)$/, "review", "Review", viewReview],
];

// A hand-edited hash may hold a broken escape; keep it as typed rather than throw.
function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function currentRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const i = raw.indexOf("?");
  const p = i < 0 ? raw : raw.slice(0, i);
  const query = Object.fromEntries(new URLSearchParams(i < 0 ? "" : raw.slice(i + 1)));
  return { path: p, query };
}

// Filters live in the hash so that views can be bookmarked and Back works.
function setQuery(query) {
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v !== undefined && v !== null)).toString();
  location.hash = `#${currentRoute().path}${qs ? `?${qs}` : ""}`;
}

function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  nav.gen++;
  clearInterval(nav.timer);
  const gen = nav.gen;
  const root = $("#view");
  const { path: p, query } = currentRoute();
  // A view's async work checks alive() so a slow answer never paints over a newer view.
  const ctx = {
    root,
    alive: () => gen === nav.gen,
    every: (ms, fn) => { if (gen === nav.gen) { clearInterval(nav.timer); nav.timer = setInterval(() => { if (!document.hidden) fn(); }, ms); } },
    stop: () => { if (gen === nav.gen) clearInterval(nav.timer); },
  };
  for (const [re, key, title, view] of ROUTES) {
    const m = p.match(re);
    if (!m) continue;
    hideError();
    document.querySelectorAll("[data-nav]").forEach((a) => {
      a.classList.toggle("active", a.dataset.nav === key);
      if (a.dataset.nav === key) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    document.title = `${title} · Nexo`;
    root.replaceChildren(h("div", { class: "loading" }, "Loading…"));
    view(ctx, m.slice(1).map(safeDecode), query).catch((e) => { if (ctx.alive()) fail(e, root, route); });
    return;
  }
  root.replaceChildren(empty("There is no such page. "), h("a", { href: "#/" }, "Back to the dashboard"));
}

/* ---------- charts ---------- */

const BAR = 4, GAP = 1, SLOTS = 30;

// Bars of records written per run, the failed part stacked in red; newest on the right.
function recordsChart(history) {
  const H = 26, W = SLOTS * (BAR + GAP);
  const max = Math.max(1, ...history.map((r) => (r.written || 0) + (r.failed || 0)));
  const scale = (v) => (v > 0 ? Math.max(1, Math.round((v / max) * (H - 1))) : 0);
  const el = svg("svg", { class: "chart chart-records", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Records written per run" });
  el.append(svg("line", { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: "axis" }));
  history.slice(-SLOTS).forEach((r, i, all) => {
    const x = W - (all.length - i) * (BAR + GAP);
    const wh = scale(r.written || 0), fh = Math.min(scale(r.failed || 0), H - wh);
    el.append(svg("a", { href: `#/runs/${encodeURIComponent(r.run_id)}` },
      svg("title", null, `Run #${r.run_id} · ${r.status} · ${num(r.written)} written, ${num(r.failed)} failed of ${num(r.read)} read · ${r.started_at}`),
      svg("rect", { x, y: 0, width: BAR, height: H, class: "hit" }),
      wh ? svg("rect", { x, y: H - wh, width: BAR, height: wh, class: "bar-ok" }) : svg("rect", { x, y: H - 1, width: BAR, height: 1, class: "bar-zero" }),
      fh ? svg("rect", { x, y: H - wh - fh, width: BAR, height: fh, class: "bar-fail" }) : null));
  });
  return el;
}

// One cell per run: its status, with "partial" for a succeeded run that dead-lettered records.
function statusStrip(history) {
  const H = 8, W = SLOTS * (BAR + GAP);
  const el = svg("svg", { class: "chart chart-status", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Run status history" });
  history.slice(-SLOTS).forEach((r, i, all) => {
    const st = r.status === "succeeded" && r.failed > 0 ? "partial" : r.status;
    el.append(svg("a", { href: `#/runs/${encodeURIComponent(r.run_id)}` },
      svg("title", null, `Run #${r.run_id} · ${r.status}${r.failed ? ` · ${num(r.failed)} failed` : ""}`),
      svg("rect", { x: W - (all.length - i) * (BAR + GAP), y: 0, width: BAR, height: H, rx: 1, class: `cell st-${tok(st)}` })));
  });
  return el;
}

/* ---------- dashboard ---------- */

// A page that paints what `load` fetches, and again every REFRESH_MS while it
// is shown: one load at a time; a first failure takes the page's place, a
// later one only shows in the banner (the page keeps what it had).
async function refreshing(ctx, load, paint) {
  let busy = false;
  const refresh = async (first) => {
    if (busy || !ctx.alive()) return;
    busy = true;
    try {
      const data = await load();
      if (!ctx.alive()) return;
      ctx.root.replaceChildren(...paint(data, () => refresh(false)));
      if (bannerAuto) hideError();
    } catch (e) {
      if (!ctx.alive() || e.handled) return;
      if (first) fail(e, ctx.root, route);
      else showError(`Refresh failed: ${e.message}`, true);
    } finally {
      busy = false;
    }
  };
  await refresh(true);
  ctx.every(REFRESH_MS, () => refresh(false));
}

async function viewDashboard(ctx) {
  await refreshing(ctx, () => get(path(API.overview)), (data, again) => dashboard(data, again));
}

function dashboard(data, refresh) {
  const conns = data.connections || [], pipes = data.pipelines || [];
  const failingRuns = pipes.filter((p) => p.last_run && p.last_run.status === "failed").length;
  const failingConns = conns.filter((c) => c.health && c.health.status === "failing").length;
  const tile = (label, value, sub, bad) => h("div", { class: `tile${bad ? " tile-bad" : ""}` },
    h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, value), h("div", { class: "tile-sub" }, sub));
  return [
    h("div", { class: "tiles" },
      tile("Pipelines", num(pipes.length), `${pipes.filter((p) => p.running).length} running · ${pipes.filter((p) => p.paused).length} paused`),
      tile("Last run failed", num(failingRuns), failingRuns ? "see the pipelines below" : "all last runs fine", failingRuns > 0),
      tile("Connections failing", num(failingConns), `of ${num(conns.length)} connection${conns.length === 1 ? "" : "s"}`, failingConns > 0),
      tile("Records moved", num(pipes.reduce((a, p) => a + (p.records_moved || 0), 0)), "over the runs kept")),
    panel("Pipelines", muted("refreshes every 5 s"),
      pipes.length ? pipelinesTable(pipes, refresh) : empty("No pipelines yet. Apply one with `nexo pipeline apply`.")),
    panel("Connections", null,
      conns.length ? connectionsTable(conns, refresh) : empty("No connections yet. Create one with `nexo connection add`.")),
  ];
}

function pipelinesTable(pipes, refresh) {
  const rows = pipes.map((p) => {
    const last = p.last_run;
    let state;
    if (p.paused) state = [badge("paused"), p.paused_reason ? h("div", { class: "small" }, p.paused_reason) : null];
    else if (p.running) state = badge("running");
    else state = badge("active");
    const ends = (e) => `${e.connection}/${e.stream}`;
    return h("tr", { "data-pipeline": p.name, class: last && last.status === "failed" ? "row-failed" : null },
      h("td", { class: "nowrap" }, h("strong", null, pipelineLink(p.name)), h("div", { class: "small muted" }, `${p.entity} · ${p.mode}`)),
      h("td", { class: "flow" }, h("div", null, mono(ends(p.source))), h("div", null, h("span", { class: "arrow" }, "→ "), mono(ends(p.destination)))),
      h("td", null, p.schedule ? p.schedule.text : "–",
        h("div", { class: "small muted" }, "next: ", p.paused ? "paused" : p.next_run ? when(p.next_run, true) : "none")),
      h("td", null, state),
      h("td", null, last ? [badge(last.status), " ", runLink(last.id), h("div", { class: "small muted" }, when(last.started_at, true))] : muted("never")),
      h("td", { class: "num" }, num(p.records_moved)),
      h("td", { class: `num ${p.error_rate >= 0.25 ? "bad" : p.error_rate > 0 ? "warn" : "muted"}` }, pct(p.error_rate)),
      h("td", { class: "charts" }, recordsChart(p.history || []), statusStrip(p.history || [])),
      h("td", { class: "actions" },
        // Left enabled while running: the daemon answers 409 with its reason, which the banner shows.
        button("Run now", { class: "btn btn-small", title: p.running ? "A run is in progress" : "Start an incremental run now" },
          (b) => act(b, async () => {
            await post(path(API.pipelineRun, { name: p.name }), { dry_run: false });
            notify(`Run of ${p.name} queued.`);
            refresh();
          })),
        p.paused
          ? button("Resume", { class: "btn btn-small" }, (b) => act(b, async () => { await post(path(API.pipelineResume, { name: p.name })); notify(`${p.name} resumed.`); refresh(); }))
          : button("Pause", { class: "btn btn-small" }, (b) => act(b, async () => { await post(path(API.pipelinePause, { name: p.name })); notify(`${p.name} paused.`); refresh(); }))));
  });
  return table(["Pipeline", "Source → destination", "Schedule", "State", "Last run", ["Moved", "num"], ["Error rate", "num"], "Last 30 runs", ""], rows, "pipelines");
}

function connectionsTable(conns, refresh) {
  const rows = conns.map((c) => {
    const hl = c.health || { status: "unknown" };
    return h("tr", { "data-connection": c.name },
      h("td", null, h("strong", null, c.name)),
      h("td", null, mono(c.plugin), " ", muted(c.version ? `${c.version} (pinned)` : c.active_version || "")),
      h("td", null, h("span", { class: `env env-${tok(c.environment)}` }, c.environment),
        Object.entries(c.origin_overrides || {}).map(([from, to]) =>
          h("div", { class: "small override" }, muted("override "), mono(from), " → ", mono(to)))),
      h("td", { class: "health" },
        h("span", { class: `dot st-${tok(hl.status)}` }), hl.status,
        hl.checked_at ? h("span", { class: "small muted" }, " · checked ", when(hl.checked_at, true)) : null,
        hl.error ? h("div", { class: "error-text" }, hl.error) : null,
        c.oauth ? oauthState(c.oauth) : null),
      h("td", null, (c.used_by || []).length ? c.used_by.map((n) => h("span", { class: "chip" }, pipelineLink(n))) : muted("unused")),
      h("td", { class: "actions" },
        c.oauth ? button(c.oauth.status === "authorized" ? "Re-authorize" : "Authorize",
          { class: `btn btn-small authorize${c.oauth.status === "authorized" ? "" : " btn-primary"}`, title: "Sign in at the system with OAuth 2.0; the host keeps and refreshes the tokens" },
          (b) => act(b, () => authorizeConnection(c.name))) : null,
        button("Replace secret", { class: "btn btn-small replace-secret", title: "Set a new value for one of this connection's secrets" },
          (b) => act(b, () => replaceSecret(c.name, refresh)))));
  });
  return table(["Name", "Plugin", "Environment", "Health", "Used by", ""], rows);
}

// A connection's OAuth authorization, as its row shows it (never a token).
function oauthState(o) {
  if (o.status === "authorized")
    return h("div", { class: "small oauth-state" }, muted("OAuth: authorized"), o.tenant ? muted(` · tenant ${o.tenant}`) : null);
  if (o.status === "needs-reauthorization")
    return h("div", { class: "error-text oauth-state needs-reauthorization" }, "Needs re-authorization: ", o.reason || "the refresh token was refused", ". Its pipelines are paused until it is authorized again.");
  return h("div", { class: "small oauth-state not-authorized" }, muted("OAuth: not authorized yet"));
}

// A form in a dialog outside the view (the dashboard redraws every few
// seconds). `secrets` are the inputs cleared whenever it closes, so a value
// typed into it lives only until it is sent; `submit` gets `close`, and its
// error is shown in the dialog (an expired session closes it instead).
function formDialog({ prefix, title, fields, note, submitId, submitText, secrets, focus, submit }) {
  const error = h("div", { id: `${prefix}-error`, class: "error-text", hidden: true });
  const go = h("button", { id: submitId, type: "submit", class: "btn btn-primary" }, submitText);
  const cancel = button("Cancel", { id: `${prefix}-cancel` });
  const form = h("form", { class: "secret-form" },
    h("h2", null, ...title),
    ...fields,
    h("p", { class: "small muted" }, ...note),
    error,
    h("div", { class: "dialog-actions" }, cancel, go));
  const dialog = h("dialog", { id: `${prefix}-dialog` }, form);
  const close = () => {
    for (const input of secrets) input.value = "";
    dialog.close();
    dialog.remove();
  };
  cancel.addEventListener("click", close);
  dialog.addEventListener("cancel", close);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    go.disabled = true;
    try {
      await submit(close);
    } catch (e) {
      if (e.handled) {
        close();
        return;
      }
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      go.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  focus.focus();
}

// The OAuth client goes only into the POST body; the browser then leaves
// for the system's sign-in page, which sends it back to /oauth/callback.
function authorizeConnection(name) {
  const redirect = `${location.origin}/oauth/callback`;
  const id = h("input", { id: "oauth-client-id", autocomplete: "off", spellcheck: "false" });
  const secret = h("input", { id: "oauth-client-secret", type: "password", autocomplete: "new-password", spellcheck: "false" });
  formDialog({
    prefix: "oauth",
    title: ["Authorize ", name],
    fields: [field("Client id", id), field("Client secret", secret)],
    note: ["Leave both empty to reuse the client this connection last authorized with. Register this redirect URI at the vendor: ", mono(redirect)],
    submitId: "oauth-continue",
    submitText: "Continue to sign in",
    secrets: [secret],
    focus: id,
    submit: async (close) => {
      const body = { redirect_uri: redirect };
      if (id.value.trim()) body.client_id = id.value.trim();
      if (secret.value) body.client_secret = secret.value;
      const started = await api("POST", path(API.connectionAuthorize, { name }), body);
      close();
      location.assign(started.url);
    },
  });
}

// The new value goes only into the PATCH body and is cleared when the
// dialog closes.
async function replaceSecret(name, refresh) {
  const detail = await get(path(API.connection, { name }));
  const names = (detail && detail.secrets) || [];
  if (!names.length) {
    notify(`Connection ${name} has no secrets.`);
    return;
  }
  const which = select("secret-name", names.map((n) => [n, n]), names[0], () => {});
  const value = h("input", { id: "secret-value", type: "password", autocomplete: "new-password", spellcheck: "false", required: true });
  formDialog({
    prefix: "secret",
    title: ["Replace a secret of ", name],
    fields: [field("Secret", which), field("New value", value)],
    note: ["Sealed when saved and never shown again; the connection uses it from its next run or test."],
    submitId: "secret-save",
    submitText: "Replace",
    secrets: [value],
    focus: value,
    submit: async (close) => {
      await api("PATCH", path(API.connection, { name }), { secrets: { [which.value]: value.value } });
      close();
      notify(`Secret ${which.value} of ${name} replaced; it is used from the connection's next run or test.`);
      refresh();
    },
  });
}

/* ---------- runs ---------- */

// Pipeline names for filter menus; a failure here only costs the menu its options.
async function pipelineNames() {
  try {
    return ((await get(path(API.pipelines))) || []).map((p) => p.name);
  } catch (e) {
    if (e.handled) throw e;
    return [];
  }
}

function pipelineFilter(names, q) {
  const all = names.includes(q.pipeline) || !q.pipeline ? names : [q.pipeline, ...names];
  return field("Pipeline", select("filter-pipeline", [["", "All pipelines"], ...all.map((n) => [n, n])], q.pipeline || "",
    (v) => setQuery(Object.assign({}, q, { pipeline: v }))));
}

async function viewRuns(ctx, _, q) {
  const [runs, names] = await Promise.all([
    get(path(API.runs, {}, { pipeline: q.pipeline, status: q.status, limit: q.limit })), pipelineNames()]);
  if (!ctx.alive()) return;
  const filters = h("div", { class: "filters" },
    pipelineFilter(names, q),
    field("Status", select("filter-status", [["", "Any status"], ...RUN_STATUSES.map((s) => [s, s])], q.status || "",
      (v) => setQuery(Object.assign({}, q, { status: v })))),
    field("Show", select("filter-limit", ["50", "100", "200", "500"].map((n) => [n, `${n} newest`]), q.limit || "50",
      (v) => setQuery(Object.assign({}, q, { limit: v === "50" ? "" : v })))));
  const c = (n, cls) => h("td", { class: `num ${n ? cls || "" : "zero"}` }, num(n));
  const rows = (runs || []).map((r) => {
    const k = r.counts || {};
    return h("tr", { "data-run": r.id, class: r.status === "failed" ? "row-failed" : null },
      h("td", null, runLink(r.id)),
      h("td", { class: "nowrap" }, pipelineLink(r.pipeline)),
      h("td", null, badge(r.status)),
      h("td", { class: "nowrap" }, when(r.started_at)),
      h("td", { class: "num" }, r.status === "running" ? muted("running") : duration(r.duration_ms)),
      c(k.read), c(k.created), c(k.updated), c(k.unchanged), c(k.deleted), c(k.failed, "bad"), c(k.quarantined, "warn"), c(k.conflicts, "warn"),
      h("td", null, r.error ? h("div", { class: "clip error-text", title: r.error }, r.error) : null));
  });
  ctx.root.replaceChildren(panel("Runs", filters,
    rows.length ? table(["Run", "Pipeline", "Status", "Started", ["Duration", "num"], ["Read", "num"], ["Created", "num"], ["Updated", "num"],
      ["Unchanged", "num"], ["Deleted", "num"], ["Failed", "num"], ["Quarantined", "num"], ["Conflicts", "num"], "Error"], rows, "runs")
      : empty("No runs match these filters.")));
}

async function viewRun(ctx, [id], q) {
  const load = async () => {
    const data = await get(path(API.run, { id }, { outcome: q.outcome }));
    if (!ctx.alive()) return;
    ctx.root.replaceChildren(...runDetail(data, q).filter(Boolean));
    // A running run keeps changing; follow it until it ends.
    if (data.run.status === "running") ctx.every(REFRESH_MS, () => load().catch((e) => ctx.alive() && fail(e)));
    else ctx.stop();
  };
  await load();
}

function runDetail({ run, log, records }, q) {
  const k = run.counts || {};
  const tile = (label, n, bad) => h("div", { class: `stat${n && bad ? ` stat-${bad}` : ""}` }, h("div", { class: "stat-value" }, num(n)), h("div", { class: "stat-label" }, label));
  const present = new Set((records || []).map((r) => r.outcome));
  for (const o of OUTCOMES) if (k[COUNT_OF[o] || o] > 0) present.add(o);
  if (q.outcome) present.add(q.outcome);
  const outcomes = [...OUTCOMES.filter((o) => present.has(o)), ...[...present].filter((o) => !OUTCOMES.includes(o))];
  // Filtered here too, so the table is right even where the server returns every outcome.
  const recRows = (records || []).filter((r) => !q.outcome || r.outcome === q.outcome).map((r) => h("tr", { class: `outcome-${tok(r.outcome)}` },
    h("td", null, mono(r.source_id)), h("td", null, r.destination_id ? mono(r.destination_id) : muted("–")),
    h("td", null, badge(r.outcome)), h("td", { class: "detail" }, r.detail || "")));
  return [
    h("div", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", pipelineLink(run.pipeline), " / ", `#${run.id}`),
    h("div", { class: "run-head" },
      h("h1", null, `Run #${run.id}`),
      h("span", { id: "run-status", class: `badge badge-lg st-${tok(run.status)}` }, run.status),
      h("dl", { class: "facts" },
        h("dt", null, "Pipeline"), h("dd", null, pipelineLink(run.pipeline)),
        h("dt", null, "Started"), h("dd", null, when(run.started_at)),
        h("dt", null, "Finished"), h("dd", null, run.finished_at ? when(run.finished_at) : muted(run.status === "running" ? "still running" : "–")),
        h("dt", null, "Duration"), h("dd", null, duration(run.duration_ms)),
        h("dt", null, "Pages"), h("dd", null, num(run.pages))),
      run.status === "running"
        ? button("Stop run", { class: "btn btn-small", id: "run-stop" }, (b) => act(b, async () => {
          await post(path(API.runStop, { id: run.id }));
          // The view follows a running run; it shows `cancelled` once it ends.
          notify(`Run #${run.id} stops after its current page is committed.`);
        }))
        : null),
    run.error ? h("div", { class: "callout callout-error", role: "alert" }, h("strong", null, "Run error"), h("div", { class: "pre" }, run.error)) : null,
    h("div", { class: "stats" },
      tile("Read", k.read), tile("Created", k.created), tile("Matched", k.matched || 0), tile("Updated", k.updated), tile("Unchanged", k.unchanged), tile("Deleted", k.deleted),
      tile("Failed", k.failed, "bad"), tile("Quarantined", k.quarantined, "warn"), tile("Conflicts", k.conflicts, "warn"),
      k.superseded ? tile("Superseded", k.superseded, "warn") : null),
    panel("Sync log", muted(`${(log || []).length} lines`),
      h("div", { id: "run-log", class: "log" }, (log || []).length ? log.map((l) => h("div", { class: `log-line lvl-${tok(l.level)}` },
        h("span", { class: "log-at" }, clock(l.at)), h("span", { class: "log-level" }, l.level), h("span", { class: "log-msg" }, l.message)))
        : empty("No log lines for this run."))),
    panel("Records", h("div", { class: "filters" },
      field("Outcome", select("outcome-filter", [["", "All outcomes"], ...outcomes.map((o) => [o, k[COUNT_OF[o] || o] != null ? `${o} (${num(k[COUNT_OF[o] || o])})` : o])],
        q.outcome || "", (v) => setQuery(Object.assign({}, q, { outcome: v })))),
      muted(`${num(recRows.length)} shown${recRows.length >= 500 ? " (the first 500; filter by outcome to narrow)" : ""}`)),
    recRows.length ? table(["Source id", "Destination id", "Outcome", "Detail"], recRows, "records") : empty("No record outcomes for this filter.")),
  ];
}

/* ---------- error patterns ---------- */

async function viewErrors(ctx, _, q) {
  const days = Number(q.days) > 0 ? Number(q.days) : 14;
  const data = await get(path(API.errors, {}, { days }));
  if (!ctx.alive()) return;
  const top = data.top || [];
  const rows = top.map((e) => h("tr", null,
    h("td", null, pipelineLink(e.pipeline)), h("td", null, h("span", { class: "chip mono" }, e.class)),
    h("td", { class: "num" }, h("strong", null, num(e.count))),
    h("td", null, h("div", { class: "clip2 error-text", title: e.last_error }, e.last_error)),
    h("td", null, when(e.last_at, true)),
    h("td", null, h("a", { href: `#/dlq?${new URLSearchParams({ pipeline: e.pipeline })}` }, "Dead letters"))));
  ctx.root.replaceChildren(
    panel(`Errors per day, by class`, field("Period", select("filter-days", [7, 14, 30, 90].map((d) => [String(d), `last ${d} days`]), String(days),
      (v) => setQuery({ days: v === "14" ? "" : v }))), errorsChart(data.by_day || [], days)),
    panel("Most frequent errors", muted("dead letters and failed runs"),
      rows.length ? table(["Pipeline", "Class", ["Count", "num"], "Last error", "Last seen", ""], rows, "errors") : empty(`No errors in the last ${days} days.`)));
}

// A round axis maximum whose half is a whole number too.
function niceCeil(m) {
  if (m <= 2) return 2;
  const p = 10 ** Math.floor(Math.log10(m));
  return (p >= 10 ? [1, 2, 3, 4, 5, 6, 8, 10] : [2, 4, 6, 8, 10]).find((f) => f * p >= m) * p;
}

function errorsChart(byDay, days) {
  const dayList = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i--) dayList.push(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i)).toISOString().slice(0, 10));
  for (const d of byDay) if (!dayList.includes(d.day)) dayList.push(d.day);
  dayList.sort();
  const totals = {}, cell = {};
  for (const d of byDay) {
    totals[d.class] = (totals[d.class] || 0) + d.count;
    const key = `${d.day}|${d.class}`;
    cell[key] = (cell[key] || 0) + d.count;
  }
  const classes = Object.keys(totals).sort((a, b) => totals[b] - totals[a]);
  if (!classes.length) return empty(`No errors in the last ${days} days.`);
  const series = (c) => `series-${classes.indexOf(c) % 8}`;
  const W = 1200, H = 170, L = 34, B = 18, slot = (W - L) / dayList.length, bw = Math.max(2, Math.min(28, slot * 0.7));
  const max = niceCeil(Math.max(...dayList.map((d) => classes.reduce((a, c) => a + (cell[`${d}|${c}`] || 0), 0))));
  const el = svg("svg", { class: "chart chart-errors", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Errors per day by class" });
  for (const f of [0, 0.5, 1]) {
    const y = H - B - f * (H - B - 8);
    el.append(svg("line", { x1: L, x2: W, y1: y, y2: y, class: f ? "gridline" : "axis" }),
      svg("text", { x: L - 6, y: y + 4, class: "tick", "text-anchor": "end" }, num(Math.round(max * f))));
  }
  const every = Math.ceil(dayList.length / 10);
  dayList.forEach((d, i) => {
    const x = L + i * slot + (slot - bw) / 2;
    let y = H - B;
    for (const c of classes) {
      const n = cell[`${d}|${c}`] || 0;
      if (!n) continue;
      const bh = (n / max) * (H - B - 8);
      y -= bh;
      el.append(svg("rect", { x, y, width: bw, height: Math.max(bh, 1), class: series(c) }, svg("title", null, `${d} · ${c}: ${num(n)}`)));
    }
    if (i % every === 0) el.append(svg("text", { x: x + bw / 2, y: H - 4, class: "tick", "text-anchor": "middle" }, d.slice(5)));
  });
  const legend = h("div", { class: "legend" }, classes.map((c) => h("span", null, h("i", { class: `swatch ${series(c)}` }), c, muted(` ${num(totals[c])}`))));
  return h("div", { class: "chart-box" }, el, legend);
}

/* ---------- dead letters ---------- */

async function viewDlq(ctx, _, q) {
  const status = q.status || "open";
  const [items, names] = await Promise.all([get(path(API.dlq, {}, { pipeline: q.pipeline, status })), pipelineNames()]);
  if (!ctx.alive()) return;
  const filters = h("div", { class: "filters" }, pipelineFilter(names, q),
    field("Status", select("dlq-status", ["open", "replayed", "discarded", "resolved"].map((s) => [s, s]), status,
      (v) => setQuery(Object.assign({}, q, { status: v === "open" ? "" : v })))));
  const COLS = 11;
  const rows = (items || []).flatMap((d) => {
    const detail = h("tr", { class: "detail-row", hidden: true }, h("td", { colspan: COLS }));
    const actions = h("td", { class: "actions" });
    const row = h("tr", { "data-dead-letter": d.id },
      h("td", null, mono(`#${d.id}`)), h("td", null, pipelineLink(d.pipeline)), h("td", null, runLink(d.run_id)),
      h("td", null, badge(d.kind)), h("td", null, mono(d.source_id)), h("td", null, h("span", { class: "chip mono" }, d.class)),
      h("td", null, d.field ? mono(d.field) : muted("–")), h("td", null, h("div", { class: "clip2 error-text", title: d.error }, d.error)),
      h("td", { class: "num" }, num(d.attempts)), h("td", null, when(d.created_at, true)), actions);
    const done = (...msg) => { actions.replaceChildren(h("span", { class: "done" }, ...msg)); row.classList.add("row-done"); };
    actions.append(toggleButton(detail, async (cell) => {
      const full = await get(path(API.deadLetter, { id: d.id }));
      cell.replaceChildren(h("div", { class: "detail-grid" },
        h("div", null, h("h3", null, "Error"), h("div", { class: "pre error-text" }, full.error)),
        h("div", null, h("h3", null, "Pending write (record)"), h("pre", { class: "json" }, pretty(full.record)))));
    }));
    // Only settled items lose their actions; an unknown status leaves the server to decide.
    if (d.status !== "replayed" && d.status !== "discarded") {
      actions.append(
        button("Replay", { class: "btn btn-small", "data-replay": d.id }, (b) => act(b, async () => {
          const r = await post(path(API.dlqReplay, { id: d.id }));
          const link = () => h("a", { class: "run-link", href: `#/runs/${encodeURIComponent(r.run_id)}` }, String(r.run_id));
          done("✓ replayed in run ", link());
          notify(`Dead letter #${d.id} replayed in run `, link(), ".");
        })),
        button("Discard", { class: "btn btn-small btn-danger", "data-discard": d.id }, (b) => {
          if (!confirm(`Discard dead letter #${d.id} (source id ${d.source_id})? It will not be written.`)) return;
          act(b, async () => {
            await post(path(API.dlqDiscard, { id: d.id }));
            done("✓ discarded");
            notify(`Dead letter #${d.id} discarded.`);
          });
        }));
    }
    return [row, detail];
  });
  ctx.root.replaceChildren(panel("Dead letters", filters, rows.length
    ? table(["Id", "Pipeline", "Run", "Kind", "Source id", "Class", "Field", "Error", ["Attempts", "num"], "Created", ""], rows, "dlq")
    : empty(status === "open" ? "No open dead letters. Every record was delivered." : `No ${status} dead letters.`)));
}

// "Show"/"Hide" for an expandable detail row; the detail is fetched on first open.
function toggleButton(detailRow, fill) {
  let loaded = false;
  return button("Show", { class: "btn btn-small btn-quiet", "aria-expanded": "false" }, async (b) => {
    const open = detailRow.hidden;
    detailRow.hidden = !open;
    b.textContent = open ? "Hide" : "Show";
    b.setAttribute("aria-expanded", String(open));
    if (!open || loaded) return;
    const cell = detailRow.firstChild;
    cell.replaceChildren(h("div", { class: "loading" }, "Loading…"));
    try {
      await fill(cell);
      loaded = true;
    } catch (e) {
      fail(e);
      cell.replaceChildren(h("div", { class: "error-text" }, e.message));
    }
  });
}

/* ---------- conflicts ---------- */

async function viewConflicts(ctx, _, q) {
  const status = q.status || "open";
  const [items, names] = await Promise.all([get(path(API.conflicts, {}, { pipeline: q.pipeline, status })), pipelineNames()]);
  if (!ctx.alive()) return;
  const filters = h("div", { class: "filters" }, pipelineFilter(names, q),
    field("Status", select("conflict-status", [["open", "open"], ["resolved", "resolved"], ["auto-resolved", "auto-resolved"], ["all", "all"]], status,
      (v) => setQuery(Object.assign({}, q, { status: v === "open" ? "" : v })))));
  const COLS = 10;
  const rows = (items || []).flatMap((c) => {
    const detail = h("tr", { class: "detail-row", hidden: true }, h("td", { colspan: COLS }));
    const actions = h("td", { class: "actions" });
    const row = h("tr", { "data-conflict": c.id },
      h("td", null, mono(`#${c.id}`)), h("td", null, pipelineLink(c.pipeline)), h("td", null, runLink(c.run_id)),
      h("td", null, mono(c.entity_id)), h("td", null, mono(c.source_id)), h("td", null, c.destination_id ? mono(c.destination_id) : muted("–")),
      h("td", null, (c.fields || []).map((f) => h("span", { class: "chip chip-conflict mono" }, f))),
      h("td", null, when(c.created_at, true)),
      h("td", null, c.status === "resolved" ? [badge("resolved"), c.resolution ? h("div", { class: "small muted" }, c.resolution) : null] : badge("open")),
      actions);
    actions.append(toggleButton(detail, async (cell) => {
      const full = await get(path(API.conflict, { id: c.id }));
      cell.replaceChildren(compare(asJson(full.source_record), asJson(full.destination_payload), full.fields || c.fields || []));
    }));
    if (c.status !== "resolved") {
      for (const [keep, label] of [["source", "Keep source"], ["destination", "Keep destination"]]) {
        actions.append(button(label, { class: "btn btn-small", "data-resolve": c.id, "data-keep": keep }, (b) => act(b, async () => {
          await post(path(API.conflictResolve, { id: c.id }), { keep });
          actions.replaceChildren(h("span", { class: "done" }, `✓ resolved: kept ${keep}`));
          row.classList.add("row-done");
          notify(`Conflict #${c.id} resolved: kept ${keep}.`);
        })));
      }
    }
    return [row, detail];
  });
  ctx.root.replaceChildren(panel("Conflicts", filters, rows.length
    ? table(["Id", "Pipeline", "Run", "Entity", "Source id", "Destination id", "Conflicting fields", "Created", "Status", ""], rows, "conflicts")
    : empty(status === "all" ? "No conflicts." : `No ${status} conflicts.`)));
}

// Source and destination side by side, field by field, conflicting fields first and marked.
function compare(src, dst, fields) {
  const hit = (k) => fields.some((f) => f === k || f.startsWith(`${k}.`) || f.startsWith(`${k}[`));
  const objects = isObj(src) || isObj(dst);
  // Without object payloads there are no fields to line up: the raw JSON is the comparison.
  const raw = h("details", { class: "raw", open: !objects }, h("summary", null, "Source record and destination payload (JSON)"),
    h("div", { class: "side-by-side" }, h("pre", { class: "json" }, pretty(src)), h("pre", { class: "json" }, pretty(dst))));
  if (!objects) return h("div", null, raw);
  const keys = [...new Set([...Object.keys(isObj(src) ? src : {}), ...Object.keys(isObj(dst) ? dst : {}), ...fields])];
  keys.sort((a, b) => Number(hit(b)) - Number(hit(a)));
  const val = (o, k) => {
    const v = isObj(o) ? (k in o ? o[k] : getPath(o, k)) : undefined;
    return v === undefined ? muted("(absent)") : h("span", { class: "mono" }, compact(v));
  };
  const rows = keys.map((k) => h("tr", { class: hit(k) ? "conflict-field" : null },
    h("th", { scope: "row" }, mono(k), hit(k) ? h("span", { class: "flag" }, "conflict") : null),
    h("td", null, val(src, k)), h("td", null, val(dst, k))));
  return h("div", null, table(["Field", "Source record", "Destination payload"], rows, "compare"), raw);
}

/* ---------- plugins ---------- */

async function viewPlugins(ctx) {
  const plugins = (await get(path(API.plugins))) || [];
  if (!ctx.alive()) return;
  ctx.root.replaceChildren(panel("What is connected", muted(`${plugins.length} plugin${plugins.length === 1 ? "" : "s"} installed`),
    plugins.length ? h("div", { class: "cards" }, plugins.map(pluginCard)) : empty("No plugins installed. Install one with `nexo plugin install`.")));
}

function pluginCard(p) {
  // Only http(s) homepages become links; anything else (javascript:, data:) stays text.
  const home = /^https?:\/\//i.test(p.homepage || "")
    ? h("a", { href: p.homepage, rel: "noopener", referrerpolicy: "no-referrer", target: "_blank" }, p.homepage)
    : p.homepage ? h("span", null, p.homepage) : null;
  return h("article", { class: "card", "data-plugin": p.id },
    h("header", { class: "card-head" },
      h("h3", { class: "mono" }, p.id), h("span", { class: "chip" }, p.kind),
      h("span", { class: "spacer" }), muted("active "), h("strong", null, p.active_version || "none")),
    h("div", { class: "small" }, p.vendor ? h("strong", null, p.vendor) : muted("unknown vendor"), home ? [" · ", home] : null),
    p.description ? h("p", null, p.description) : null,
    h("div", { class: "small" }, muted("Used by: "), (p.used_by || []).length ? p.used_by.map((c) => h("span", { class: "chip mono" }, c)) : muted("no connection")),
    (p.versions || []).map((v) => versionBlock(v, v.version === p.active_version)));
}

function versionBlock(v, active) {
  const g = v.grants || {};
  const sig = v.signed_by
    ? h("span", { class: "sig-ok" }, "Signed by ", h("strong", null, v.signed_by.name), " ", mono(`key ${v.signed_by.key_id}`))
    : h("span", { class: "sig-unsigned" }, "UNSIGNED (development)");
  const sha = v.component_sha256 || "";
  const list = (xs, none) => ((xs || []).length ? xs.map((x) => h("span", { class: "chip mono" }, x)) : muted(none));
  return h("section", { class: `version${active ? " version-active" : ""}` },
    h("h4", null, `Version ${v.version}`, active ? h("span", { class: "badge st-succeeded" }, "active") : null),
    h("dl", { class: "facts facts-grid" },
      h("dt", null, "WIT"), h("dd", null, mono(v.wit_version)),
      h("dt", null, "Installed"), h("dd", null, when(v.installed_at)),
      h("dt", null, "Signature"), h("dd", null, sig),
      h("dt", null, "Component"), h("dd", null, mono(sha.length > 16 ? `sha256:${sha.slice(0, 12)}…` : sha, `sha256:${sha}`)),
      h("dt", null, "Capabilities"), h("dd", null, (v.capabilities || []).length
        ? h("ul", { class: "caps" }, v.capabilities.map((c) => h("li", null, richText(c)))) : muted("nothing beyond computing")),
      h("dt", null, "Granted"), h("dd", null,
        h("div", null, muted("origins "), list(g.http_origins, "none"),
          g.connection_origins ? h("span", { class: "chip" }, "the server named on each connection") : null),
        h("div", null, muted("secrets "), list(g.secrets, "none")),
        h("div", null, muted("storage "), g.kv_bytes ? `${num(g.kv_bytes)} bytes` : "none"))));
}

/* ---------- 360° lookup ---------- */

async function viewLookup(ctx, _, q) {
  const term = (q.q || "").trim();
  const input = h("input", { id: "lookup-q", type: "search", value: term, placeholder: "Record id, email, company name…", autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "lookup-form", role: "search" }, input, h("button", { id: "lookup-go", type: "submit", class: "btn btn-primary" }, "Look up"));
  const results = h("div", { class: "results" });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    // The same term again would not change the hash, so search directly.
    if (v === term) route(); else setQuery({ q: v });
  });
  ctx.root.replaceChildren(panel("360° lookup", muted("one customer across every connected system"), form, results));
  input.focus();
  if (!term) {
    results.append(h("p", { class: "hint" }, "Search by a record id in any connected system, or by text in a record's last known content (an email address, a company name). Each result is one entity with every record linked to it."));
    return;
  }
  results.append(h("div", { class: "loading" }, "Searching…"));
  const entities = (await get(path(API.identity, {}, { q: term }))) || [];
  if (!ctx.alive()) return;
  if (!entities.length) {
    results.replaceChildren(empty(`Nothing found for “${term}”. Try an exact record id or a longer piece of text.`, { id: "lookup-empty" }));
    return;
  }
  results.replaceChildren(h("p", { class: "muted" }, `${entities.length} entit${entities.length === 1 ? "y" : "ies"}${entities.length >= 20 ? " (at most 20 are shown; refine the search)" : ""}`),
    ...entities.map((e) => entityCard(e, term)));
}

// Marks occurrences of the search term, splitting text into nodes (never HTML).
function marked(text, term) {
  const s = String(text), lo = s.toLowerCase(), t = term.toLowerCase();
  const out = [];
  let i = 0, j;
  while (t && (j = lo.indexOf(t, i)) >= 0) {
    out.push(s.slice(i, j), h("mark", null, s.slice(j, j + t.length)));
    i = j + t.length;
  }
  out.push(s.slice(i));
  return out;
}

function entityCard(e, term) {
  const rows = (e.records || []).map((r) => h("tr", { class: r.deleted ? "row-deleted" : null },
    h("td", null, h("strong", null, r.connection)),
    h("td", null, h("span", { class: `env env-${tok(r.environment)}` }, r.environment)),
    h("td", null, mono(r.stream)),
    h("td", null, h("span", { class: "mono" }, marked(r.record_id, term))),
    h("td", null, r.version != null ? mono(String(r.version)) : muted("–")),
    h("td", null, r.deleted ? badge("deleted") : muted("no")),
    h("td", null, known(asJson(r.known), term))));
  return h("article", { class: "card entity", "data-entity": e.entity_id },
    h("header", { class: "card-head" }, h("span", { class: "chip" }, e.entity), h("h3", { class: "mono" }, e.entity_id),
      h("span", { class: "spacer" }), muted(`${(e.records || []).length} linked record${(e.records || []).length === 1 ? "" : "s"}`)),
    table(["Connection", "Env", "Stream", "Record id", "Version", "Deleted", "Known content"], rows, "entity-records"));
}

function known(v, term) {
  if (v === null || v === undefined) return muted("not known");
  if (!isObj(v)) return h("span", { class: "mono" }, marked(compact(v), term));
  return h("table", { class: "kv" }, Object.entries(v).map(([k, x]) =>
    h("tr", null, h("th", null, k), h("td", null, x === null ? muted("null") : marked(compact(x), term)))));
}

/* ---------- hosts ---------- */

async function viewHosts(ctx) {
  await refreshing(ctx, () => get(path(API.hosts)), (data) => [hostsPanel(data || {})]);
}

function hostsPanel(data) {
  if (!data.shared) {
    return panel("Hosts", null, h("div", { class: "empty", id: "hosts-single" },
      "This installation runs as one host on SQLite: it schedules and runs every pipeline itself. ",
      "Several hosts share the work once they share a PostgreSQL database (",
      h("code", null, "nexo db copy"), ", then ", h("code", null, "NEXO_DATABASE_URL"), " on each host)."));
  }
  const hosts = data.hosts || [];
  const alive = hosts.filter((x) => x.alive).length;
  const held = hosts.reduce((a, x) => a + (x.holding || []).length, 0);
  const aside = [muted(`${num(alive)} of ${num(hosts.length)} alive · ${num(held)} pipeline${held === 1 ? "" : "s"} held · `),
    mono(data.database || ""), data.lease_ms ? muted(` · leases last ${duration(data.lease_ms)}`) : null];
  return panel("Hosts", aside,
    hosts.length ? hostsTable(hosts) : empty("No host has registered yet.", { id: "hosts-none" }));
}

// Hosts beat every few seconds: whole seconds say enough.
function seenAgo(ms) {
  if (ms === null || ms === undefined) return muted("never");
  if (ms < 1000) return "just now";
  if (ms < 120000) return `${Math.round(ms / 1000)} s ago`;
  return `${duration(ms)} ago`;
}

function hostsTable(hosts) {
  const rows = hosts.map((x) => {
    let state;
    if (x.alive) state = badge("alive");
    else if (x.stopped_at) state = [badge("stopped"), h("div", { class: "small muted" }, when(x.stopped_at, true))];
    else state = [badge("unresponsive"), h("div", { class: "small muted" }, "its leases run out, then other hosts take its pipelines over")];
    const holding = x.holding || [];
    return h("tr", { "data-host": x.id, class: x.this_host ? "row-this-host" : null },
      h("td", { class: "nowrap" }, h("strong", { class: "mono" }, x.id),
        x.this_host ? h("span", { class: "chip chip-this-host" }, "this host") : null,
        h("div", { class: "small muted" }, "started ", when(x.started_at, true))),
      h("td", null, mono(x.version)),
      h("td", null, x.address ? mono(x.address) : muted("–")),
      h("td", null, state),
      h("td", { class: "nowrap", title: `${num(x.seen_ago_ms)} ms ago by the database's clock` }, seenAgo(x.seen_ago_ms)),
      h("td", { class: "num" }, num(x.max_concurrent_runs)),
      h("td", { class: "holding" }, holding.length ? holding.map((p) => h("span", { class: "chip mono" }, pipelineLink(p))) : muted("nothing")));
  });
  return table(["Host", "Version", "Address", "State", "Seen", ["Max runs", "num"], "Holding"], rows, "hosts");
}

/* ---------- audit ---------- */

const AUDIT_ACTIONS = ["plugin.install", "plugin.upgrade", "plugin.rollback", "plugin.remove", "trust.add", "trust.remove",
  "connection.add", "connection.update", "connection.remove", "connection.authorize", "pipeline.apply", "pipeline.pause",
  "pipeline.resume", "pipeline.reset", "pipeline.remove", "pipeline.webhook-secret", "run.stop", "dlq.replay", "dlq.discard",
  "conflict.resolve", "pipeline.match", "review.accept", "review.reject", "token.create", "token.revoke", "alert.channel.add", "alert.channel.remove", "alert.rule.add",
  "alert.rule.remove", "secrets.rotate-key", "restore"];

async function viewAudit(ctx, _, q) {
  const data = await get(path(API.audit, {}, { action: q.action, target: q.target, actor: q.actor, limit: q.limit }));
  if (!ctx.alive()) return;
  const target = h("input", { id: "filter-target", type: "search", placeholder: "pipeline/NAME or connection/", value: q.target || "" });
  target.addEventListener("change", () => setQuery(Object.assign({}, q, { target: target.value.trim() })));
  const actor = h("input", { id: "filter-actor", type: "search", placeholder: "token:NAME or cli:USER", value: q.actor || "" });
  actor.addEventListener("change", () => setQuery(Object.assign({}, q, { actor: actor.value.trim() })));
  // The export is fetched with the token (a plain link would carry none) and saved as a file.
  const exportBtn = button("Export JSON lines", { id: "audit-export", class: "btn" }, (b) => act(b, async () => {
    const resp = await fetch(path(API.auditExport, {}, { action: q.action, target: q.target, actor: q.actor }),
      { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
    if (!resp.ok) throw new Error(`export failed (${resp.status})`);
    const url = URL.createObjectURL(await resp.blob());
    const a = h("a", { href: url, download: "nexo-audit.jsonl" });
    document.body.append(a);
    a.click();
    a.remove();
    URL.revokeObjectURL(url);
  }));
  const filters = h("div", { class: "filters" },
    field("Action", select("filter-action", [["", "Any change"], ...AUDIT_ACTIONS.map((a) => [a, a])], q.action || "",
      (v) => setQuery(Object.assign({}, q, { action: v })))),
    field("Target", target), field("Who", actor), exportBtn);
  const entries = (data && data.entries) || [];
  const change = (v) => (v === null || v === undefined ? muted("–") : h("pre", { class: "audit-json" }, pretty(v)));
  const rows = entries.map((e) => h("tr", { "data-audit": e.id },
    h("td", { class: "num" }, `#${e.id}`),
    h("td", { class: "nowrap" }, when(e.at)),
    h("td", { class: "nowrap" }, mono(e.actor)),
    h("td", { class: "nowrap" }, h("span", { class: "chip mono" }, e.action)),
    h("td", { class: "nowrap" }, mono(e.target)),
    h("td", null, change(e.before)),
    h("td", null, change(e.after))));
  ctx.root.replaceChildren(panel("Audit trail", filters,
    h("p", { class: "muted small" }, "Every change made through the console, the API or the command line, once, with who made it. Secrets appear by name only; entries are never altered."),
    rows.length ? table([["#", "num"], "When", "Who", "What", "Target", "Before", "After"], rows, "audit")
      : empty("No changes match these filters.", { id: "audit-none" })));
}

/* ---------- map ---------- */

// The living map (`nexo docs`): the server lays the boxes and arrows out; this only paints them,
// each arrow coloured by its pipeline's current health and labelled with it.
async function viewMap(ctx) {
  await refreshing(ctx, () => get(path(API.map)), (data) => {
    const map = data || {};
    return [mapDiagram(map), mapPipelines(map.pipelines || [])];
  });
}

function mapDiagram(data) {
  const d = data.diagram || { width: 0, height: 0, systems: [], nodes: [], edges: [] };
  const aside = [muted(`${num((data.systems || []).length)} systems · ${num(d.nodes.length)} connections · ${num(d.edges.length)} pipelines · `),
    h("code", null, "nexo docs"), muted(" writes this as Markdown and HTML")];
  if (!d.nodes.length) {
    return panel("Map", aside, empty("No connections yet: add one with `nexo connection add`.", { id: "map-empty" }));
  }
  const el = svg("svg", { id: "map-diagram", class: "map", width: d.width, height: d.height, viewBox: `0 0 ${d.width} ${d.height}`, role: "img", "aria-label": "Systems, connections and the pipelines between them" });
  for (const s of d.systems) {
    el.append(svg("rect", { class: "map-frame", x: s.x, y: s.y, width: s.w, height: s.h, rx: 8 }),
      svg("text", { class: "map-frame-title", x: s.x + 10, y: s.y + 16 }, s.plugin));
  }
  for (const n of d.nodes) {
    el.append(svg("g", { "data-connection": n.connection },
      svg("rect", { class: `map-node h-${tok(n.health)}`, x: n.x, y: n.y, width: n.w, height: n.h, rx: 6 }),
      svg("text", { class: "map-node-title", x: n.x + 10, y: n.y + 20 }, n.connection),
      svg("text", { class: "map-node-sub", x: n.x + 10, y: n.y + 36 }, n.subtitle),
      svg("text", { class: "map-node-sub", x: n.x + 10, y: n.y + 52 }, `health: ${n.health}`)));
  }
  for (const e of d.edges) {
    el.append(svg("g", { "data-pipeline": e.pipeline, "data-health": e.health },
      svg("title", null, `${e.pipeline}: ${e.from} → ${e.to} (${e.health})`),
      svg("path", { class: `map-edge h-${tok(e.health)}`, d: e.path }),
      svg("polygon", { class: `map-head h-${tok(e.health)}`, points: e.head }),
      svg("a", { href: `#/runs?${new URLSearchParams({ pipeline: e.pipeline })}` },
        svg("text", { class: "map-edge-label", "text-anchor": "middle", x: e.label_x, y: e.label_y }, `${e.pipeline} · ${e.health}`))));
  }
  return panel("Map", aside, h("div", { class: "map-wrap" }, el));
}

function mapPipelines(pipelines) {
  const rows = pipelines.map((p) => {
    const x = p.health || {};
    const owners = Object.entries(p.field_owners || {}).map(([f, o]) => `${f} → ${o}`);
    return h("tr", { "data-pipeline": p.name },
      h("td", null, pipelineLink(p.name), p.description ? h("div", { class: "small muted" }, p.description) : null),
      h("td", null, mono(`${p.source.connection}/${p.source.stream}`), " → ", mono(`${p.destination.connection}/${p.destination.stream}`)),
      h("td", null, mono(p.entity), h("div", { class: "small muted" }, `master ${p.master_system}${owners.length ? `; ${owners.join(", ")}` : ""}`)),
      h("td", null, `conflicts: ${p.conflict_policy}`, h("div", { class: "small muted" }, `deletes: ${p.delete_policy} · ${p.schedule}`)),
      h("td", null, (p.mappers || []).length ? (p.mappers || []).map((m) => h("div", null, mono(`${m.plugin} ${m.version || ""}`),
        (m.rules || []).map((r) => h("div", { class: "small muted" }, r)))) : muted("none")),
      h("td", null, badge(x.status === "failing" ? "failed" : x.status === "ok" ? "succeeded" : x.status, x.status),
        h("div", { class: "small muted" }, `${num(x.open_dead_letters)} dead letters · ${num(x.open_conflicts)} conflicts`)));
  });
  return panel("Pipelines on the map", null,
    rows.length ? table(["Pipeline", "Direction", "Entity, owners", "Policies", "Mappers and rules", "Health"], rows, "map-pipelines") : empty("No pipelines yet."));
}

/* ---------- alerts ---------- */

// Channels (with their Test button), rules, and open and recent incidents.
// Channels and rules are changed with `nexo alert` or the API (admin); the
// page never sees a channel's secret, only whether one is kept.
async function viewAlerts(ctx) {
  await refreshing(
    ctx,
    () => Promise.all([get(path(API.alertChannels)), get(path(API.alertRules)),
      get(path(API.alertIncidents, {}, { limit: 50 }))]),
    ([channels, rules, incidents]) => [
      alertIncidentsPanel(incidents || []),
      alertChannelsPanel(channels || []),
      alertRulesPanel(rules || [])]);
}

function alertTarget(c) {
  const cfg = c.config || {};
  if (c.kind === "webhook") return mono(cfg.url || "");
  return [mono(`${cfg.host || ""}:${cfg.port || ""}`), muted(` ${cfg.security || ""} · ${cfg.from || ""} → ${(cfg.to || []).join(", ")}`)];
}

function alertChannelsPanel(channels) {
  const rows = channels.map((c) => h("tr", { "data-channel": c.name },
    h("td", null, h("strong", null, c.name)),
    h("td", null, c.kind),
    h("td", null, alertTarget(c)),
    h("td", null, c.has_secret ? muted("sealed") : muted("none")),
    h("td", null, button("Test", { id: `test-${c.name}`, class: "btn btn-small" }, (b) => act(b, async () => {
      const r = await post(path(API.alertChannelTest, { name: c.name }));
      if (r && r.ok) notify("Test message sent on ", h("strong", null, c.name), ".");
      else showError(`Test of ${c.name} failed: ${(r && r.error) || "unknown error"}`);
    })))));
  return panel("Alert channels", muted("add with nexo alert channel add"),
    channels.length ? table(["Channel", "Kind", "Sends to", "Secret", ""], rows, "alert-channels")
      : empty("No channel yet: nexo alert channel add NAME --webhook URL --secret - (or --smtp HOST).", { id: "alerts-no-channels" }));
}

function alertCondition(c) {
  const { kind, ...rest } = c || {};
  const args = Object.entries(rest).map(([k, v]) => `${k} ${v}`).join(", ");
  return [h("code", null, kind || "?"), args ? muted(` ${args}`) : null];
}

const utcOffset = (m) => `${m < 0 ? "−" : "+"}${String(Math.floor(Math.abs(m) / 60)).padStart(2, "0")}:${String(Math.abs(m) % 60).padStart(2, "0")}`;

function alertRulesPanel(rules) {
  const rows = rules.map((r) => h("tr", { "data-rule": r.name },
    h("td", null, h("strong", null, r.name)),
    h("td", null, alertCondition(r.condition)),
    h("td", null, (r.channels || []).map((c) => h("span", { class: "chip mono" }, c))),
    h("td", null, r.quiet_hours
      ? `${r.quiet_hours.from}–${r.quiet_hours.to} (UTC${utcOffset(r.quiet_hours.utc_offset_minutes || 0)})`
      : muted("none"))));
  return panel("Alert rules", muted("add with nexo alert rule add"),
    rules.length ? table(["Rule", "When", "Channels", "Quiet hours"], rows, "alert-rules")
      : empty("No rule yet.", { id: "alerts-no-rules" }));
}

function alertDeliveries(ds) {
  return (ds || []).map((d) => h("div", { class: "small" },
    badge(d.status === "sent" ? "succeeded" : d.status === "failed" ? "failed" : "running", `${d.notice} ${d.status}`),
    " ", mono(d.channel), d.attempts > 1 ? muted(` ${d.attempts} attempts`) : null,
    d.error ? h("div", { class: "muted" }, d.error) : null));
}

function alertIncidentsPanel(incidents) {
  const open = incidents.filter((i) => !i.resolved_at).length;
  const rows = incidents.map((i) => h("tr", { "data-incident": i.id, class: i.resolved_at ? null : "row-failed" },
    h("td", null, i.resolved_at ? badge("resolved") : badge("failed", "open")),
    h("td", null, h("strong", null, i.rule), h("div", { class: "small mono" }, i.subject)),
    h("td", null, i.summary),
    h("td", { class: "nowrap" }, when(i.opened_at, true), i.resolved_at ? h("div", { class: "small muted" }, "resolved ", when(i.resolved_at, true)) : null),
    h("td", null, alertDeliveries(i.deliveries))));
  return panel("Incidents", muted(`${num(open)} open · last ${num(incidents.length)}`),
    incidents.length ? table(["State", "Rule", "What", "Since", "Notices"], rows, "alert-incidents")
      : empty("No incident: every rule's condition is clear.", { id: "alerts-no-incidents" }));
}

/* ---------- start ---------- */

async function start() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#token"), btn = $("#login");
    const token = input.value.trim();
    if (!token) return loginError("Enter an API token.");
    btn.disabled = true;
    loginError(null);
    try {
      const session = await request("GET", path(API.session), undefined, token);
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      enterApp(session);
    } catch (e) {
      loginError(e.status === 401 ? `That token was not accepted (${e.message}).` : e.message);
      input.select();
    } finally {
      btn.disabled = false;
    }
  });
  $("#logout").addEventListener("click", (ev) => { ev.preventDefault(); signOut(null); });
  $("#error-close").addEventListener("click", hideError);
  window.addEventListener("hashchange", route);

  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin(null);
  try {
    enterApp(await request("GET", path(API.session)));
  } catch (e) {
    if (e.status === 401) signOut(`Signed out: ${e.message}`);
    else { enterApp(null); showError(e.message); }
  }
}

document.addEventListener("DOMContentLoaded", start);

/* ---------- survey ---------- */

// What a system already holds before going live (`nexo survey`): pick a connection, optionally
// streams and a pipeline, and run. The survey reads the system once, read-only; the choice lives
// in the hash so a result can be bookmarked, and a survey only runs when asked.
async function viewSurvey(ctx, _, q) {
  const [connections, pipelines] = await Promise.all([get(path(API.connections)), get(path(API.pipelines))]);
  if (!ctx.alive()) return;
  const conn = h("select", { id: "survey-connection" },
    h("option", { value: "" }, "Choose a connection…"),
    (connections || []).map((c) => h("option", { value: c.name, selected: c.name === q.connection }, `${c.name} (${c.plugin})`)));
  const streams = h("input", { id: "survey-streams", type: "text", value: q.streams || "", placeholder: "all streams", spellcheck: "false" });
  const pipe = h("select", { id: "survey-pipeline" });
  // Only a pipeline that reads from the chosen connection can check its records.
  const pipelineOptions = () => {
    const mine = (pipelines || []).filter((p) => p.source && p.source.connection === conn.value);
    pipe.replaceChildren(h("option", { value: "" }, "no pipeline"),
      ...mine.map((p) => h("option", { value: p.name, selected: p.name === q.pipeline }, `${p.name} → ${p.destination.connection}/${p.destination.stream}`)));
  };
  conn.addEventListener("change", pipelineOptions);
  pipelineOptions();
  const similar = h("input", { id: "survey-similar", type: "number", min: "0.5", max: "1", step: "0.01", value: q.similar || "0.92" });
  const form = h("form", { class: "filters survey-form" },
    field("Connection", conn), field("Streams", streams), field("Gate of pipeline", pipe), field("Similar names", similar),
    h("button", { id: "survey-run", type: "submit", class: "btn btn-primary" }, "Survey"));
  const results = h("div", { class: "results", id: "survey-results" });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!conn.value) { showError("Choose a connection to survey."); return; }
    const next = { connection: conn.value, streams: streams.value.trim(), pipeline: pipe.value, similar: similar.value };
    // The same choice again would not change the hash, so survey directly.
    const same = Object.keys(next).every((k) => (next[k] || "") === (q[k] || ""));
    if (same) route(); else setQuery(next);
  });
  ctx.root.replaceChildren(panel("Survey", muted("what a system already holds, read once, read-only"), form,
    h("p", { class: "muted small" }, "Counts, how full each field is and in which formats, the records that are likely the same one twice inside the system, and — with a pipeline — the records its mappers and quality gate would refuse. Nothing is written anywhere."),
    results));
  if (!q.connection) return;
  results.append(h("div", { class: "loading" }, `Reading ${q.connection}…`));
  const body = { connection: q.connection };
  const names = (q.streams || "").split(",").map((x) => x.trim()).filter(Boolean);
  if (names.length) body.streams = names;
  if (q.pipeline) body.for_pipeline = q.pipeline;
  if (q.similar && Number(q.similar) !== 0.92) body.similar = Number(q.similar);
  let report;
  try {
    report = await post(path(API.survey), body);
  } catch (e) {
    if (!ctx.alive() || e.handled) return;
    results.replaceChildren(h("div", { class: "state-error", id: "survey-error" }, h("strong", null, "The survey failed."), h("p", null, e.message)));
    return;
  }
  if (!ctx.alive()) return;
  results.replaceChildren(...(report.streams || []).map((s) => surveyStream(report.connection, s)));
}

function surveyStream(connection, s) {
  const fields = (s.fields || []).map((f) => h("tr", { "data-field": f.field },
    h("td", null, mono(f.field)),
    h("td", { class: "num" }, num(f.filled)),
    h("td", { class: "num" }, pct(f.fill_rate)),
    h("td", null, (f.formats || []).map(([fmt, n]) => h("span", { class: "chip" }, `${fmt} ${num(n)}`)))));
  const dups = (s.duplicates || []).map((g) => h("tr", { "data-duplicate": g.by },
    h("td", null, h("span", { class: "chip mono" }, g.by)),
    h("td", null, mono(g.value)),
    h("td", null, g.ids.map((id) => h("span", { class: "chip mono" }, id)))));
  const gate = s.gate;
  const gateBlock = gate ? [
    h("h3", null, `Gate of ${gate.pipeline} (into ${gate.destination})`),
    h("p", { class: "survey-gate-line", id: `survey-gate-${tok(s.stream)}` },
      `${num(gate.failed)} of ${num(gate.checked)} records would fail · ${num(gate.passed)} pass · ${num(gate.left_out)} left out by the mappers`),
    (gate.failures || []).length ? table(["Source id", "Step", "Field", "Why"], gate.failures.map((f) => h("tr", { "data-refused": f.source_id },
      h("td", null, mono(f.source_id)), h("td", null, badge(f.step === "gate" ? "failed" : "interrupted", f.step)),
      h("td", null, f.field ? mono(f.field) : muted("–")), h("td", null, f.message))), "survey-gate") : null,
  ] : [];
  return h("article", { class: "card survey-stream", "data-stream": s.stream },
    h("header", { class: "card-head" }, h("h3", { class: "mono" }, `${connection}/${s.stream}`), h("span", { class: "spacer" }),
      muted(`${num(s.records)} records`)),
    fields.length ? table(["Field", ["Filled", "num"], ["Fill rate", "num"], "Formats"], fields, "survey-fields") : empty("No records."),
    h("h3", null, "Likely duplicates"),
    dups.length ? table(["Same", "Value", "Records"], dups, "survey-duplicates") : empty("No likely duplicates.", { class: "empty survey-no-duplicates" }),
    (s.unreadable || []).length ? h("p", { class: "muted" }, `${s.unreadable.length} records are not usable JSON objects: ${s.unreadable.join(", ")}`) : null,
    gateBlock);
}

/* ---------- review ---------- */

// The review queue of going live (`nexo review`): records matching could not be sure of wait here,
// neither created nor dropped, until a person accepts a candidate, picks another, or rejects them all.
// Decisions need an operator; a viewer sees the same page without the buttons (the API would refuse).
const REVIEW_STATUSES = ["open", "accepted", "rejected", "withdrawn", "all"];
const canDecide = () => ["operator", "admin"].includes(document.body.dataset.role);

async function viewReviews(ctx, _, q) {
  const status = REVIEW_STATUSES.includes(q.status) ? q.status : "open";
  const [items, names] = await Promise.all([get(path(API.reviews, {}, { pipeline: q.pipeline, status })), pipelineNames()]);
  if (!ctx.alive()) return;
  const filters = h("div", { class: "filters" }, pipelineFilter(names, q),
    field("Status", select("review-status-filter", REVIEW_STATUSES.map((s) => [s, s]), status,
      (v) => setQuery(Object.assign({}, q, { status: v === "open" ? "" : v })))));
  const rows = (items || []).map((r) => {
    const best = (r.candidates || [])[0];
    return h("tr", { "data-review": r.id },
      h("td", null, h("a", { href: `#/review/${encodeURIComponent(r.id)}` }, `#${r.id}`)),
      h("td", null, pipelineLink(r.pipeline)),
      h("td", null, mono(r.source_id), reviewName(r.mapped) ? h("div", { class: "small" }, reviewName(r.mapped)) : null),
      h("td", null, best ? [mono(best.id), h("div", { class: "small muted" }, `${best.key} ${score(best.score)}`)] : muted("–")),
      h("td", { class: "num" }, num((r.candidates || []).length)),
      h("td", { class: "small" }, r.why),
      h("td", null, when(r.created_at, true)),
      h("td", null, badge(reviewBadge(r.status), r.status)));
  });
  ctx.root.replaceChildren(panel("Review", filters,
    h("p", { class: "muted small" }, "Uncertain matches found when going live. Each record waits — neither created nor dropped — until someone decides; the next run then updates the accepted record or creates the rejected one."),
    rows.length
      ? table(["Id", "Pipeline", "Record", "Best candidate", ["Candidates", "num"], "Why uncertain", "Queued", "Status"], rows, "reviews")
      : empty(status === "all" ? "No reviews." : `No ${status} reviews.`, { class: "empty", id: "reviews-empty" })));
}

async function viewReview(ctx, [id]) {
  const r = await get(path(API.review, { id }));
  if (!ctx.alive()) return;
  ctx.root.replaceChildren(reviewCard(r));
}

const score = (s) => (typeof s === "number" ? s.toFixed(2) : "");
const reviewBadge = (s) => ({ open: "running", accepted: "succeeded", rejected: "cancelled" }[s] || s);
const reviewName = (m) => (isObj(m) && typeof m.name === "string" ? m.name : "");

// JSON values compared as serde_json compares them: object keys in any order.
function sameValue(a, b) {
  const canon = (v) => (Array.isArray(v) ? v.map(canon)
    : isObj(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v);
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

// The queued record beside each candidate, field by field, as `nexo review show` prints it: the union
// of their fields, sorted; each candidate's value marked = where it agrees with the record, ≠ where not.
function reviewCard(r) {
  const open = r.status === "open";
  const mapped = isObj(r.mapped) ? r.mapped : {};
  const cands = r.candidates || [];
  const rec = (c) => (isObj(c.record) ? c.record : {});
  const fields = [...new Set([...Object.keys(mapped), ...cands.flatMap((c) => Object.keys(rec(c)))])].sort();
  const value = (o, k) => (k in o && o[k] !== null ? h("span", { class: "mono" }, compact(o[k])) : muted("—"));
  const outcome = h("div", { id: "review-outcome" }, reviewOutcome(r));
  const statusBadge = h("span", { id: "review-status" }, badge(reviewBadge(r.status), r.status));
  const buttons = [];
  const decide = (btn, url, body) => act(btn, async () => {
    const done = await post(url, body);
    statusBadge.replaceChildren(badge(reviewBadge(done.status), done.status));
    outcome.replaceChildren(reviewOutcome(done));
    buttons.forEach((b) => b.remove());
    card.querySelectorAll("[data-candidate]").forEach((el) => el.classList.toggle("chosen", el.dataset.candidate === done.chosen));
    notify(done.status === "accepted" ? `Review #${done.id} accepted: ${done.chosen}.` : `Review #${done.id} rejected.`);
  });
  const head = cands.map((c, i) => {
    const th = h("th", { "data-candidate": c.id, class: c.id === r.chosen ? "chosen" : null },
      h("div", null, `Candidate ${i + 1}`), mono(c.id),
      h("div", { class: "small muted" }, `by ${c.key} · score ${score(c.score)}`));
    if (open && canDecide()) {
      const b = button("This one", { class: "btn btn-small btn-primary", "data-accept": c.id },
        (btn) => decide(btn, path(API.reviewAccept, { id: r.id }), { pick: c.id }));
      buttons.push(b);
      th.append(h("div", null, b));
    }
    return th;
  });
  const rows = fields.map((f) => h("tr", { "data-field": f },
    h("th", { scope: "row" }, mono(f)),
    h("td", { class: "review-mine" }, value(mapped, f)),
    cands.map((c) => {
      const same = sameValue(mapped[f], rec(c)[f]);
      return h("td", { "data-candidate": c.id, "data-mark": same ? "same" : "differ", class: `${same ? "same" : "differ"}${c.id === r.chosen ? " chosen" : ""}` },
        h("span", { class: "mark", title: same ? "agrees with the record" : "differs from the record" }, same ? "=" : "≠"), " ", value(rec(c), f));
    })));
  const compareTable = h("div", { class: "table-wrap" },
    h("table", { class: "grid review-compare", id: "review-compare" },
      h("thead", null, h("tr", null, h("th", null, "Field"), h("th", null, h("div", null, "This record"), mono(r.source_id),
        h("div", { class: "small muted" }, "as the mappers made it")), head)),
      h("tbody", null, rows)));
  // The candidates' buttons sit in their columns; only the rejection goes below the table.
  const reject = open && canDecide()
    ? button("None of them — create it", { id: "review-reject", class: "btn" }, (btn) => decide(btn, path(API.reviewReject, { id: r.id })))
    : null;
  if (reject) buttons.push(reject);
  const card = h("article", { class: "card review-one", "data-review": r.id },
    h("header", { class: "card-head" }, h("h3", null, `Review #${r.id}`), h("span", { class: "muted" }, ` ${r.pipeline} · record `), mono(r.source_id),
      h("span", { class: "spacer" }), statusBadge),
    h("div", { class: "callout", id: "review-why" }, h("strong", null, "Why uncertain: "), r.why),
    compareTable,
    h("div", { class: "review-actions" }, reject,
      open && !canDecide() ? muted("Your token is a viewer: an operator decides reviews.") : null),
    outcome,
    h("p", null, h("a", { href: `#/review?${new URLSearchParams({ pipeline: r.pipeline })}` }, "← Back to the queue")));
  return card;
}

function reviewOutcome(r) {
  if (r.status === "open") return muted("Waiting for a decision; the record is held back by every run until then.");
  const by = r.decided_by ? ` by ${r.decided_by}` : "";
  const at = r.decided_at ? [" (", when(r.decided_at, true), ")"] : [];
  const what = r.status === "accepted"
    ? `: record ${r.source_id} is ${r.chosen}. `
    : ": none of the candidates. ";
  const next = r.delivered_run
    ? ["Delivered by run ", runLink(r.delivered_run), "."]
    : [r.status === "accepted" ? `The next run of ${r.pipeline} updates ${r.chosen} instead of creating a record.` : `The next run of ${r.pipeline} creates it.`];
  const verb = r.status === "accepted" ? "Accepted" : "Rejected";
  return h("div", { class: `callout review-decided review-${tok(r.status)}` }, `${verb}${by}`, at, what, next);
}
