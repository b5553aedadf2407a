// The ofelia page: plain JavaScript, no build step. Data is always written with
// textContent (never innerHTML), and every state-changing request carries the
// CSRF token from /api/csrf-token (or the login answer) in X-CSRF-Token.
"use strict";

const state = { csrf: "", authEnabled: false, historyJob: null, timer: null };
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "–";
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(1)} s`;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "muted";
}

async function api(path, options) {
  const opts = { method: "GET", credentials: "same-origin", headers: {}, ...(options || {}) };
  if (opts.body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  if (opts.method !== "GET") opts.headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, opts);
  if (response.status === 401 && state.authEnabled) {
    showLogin();
    throw new Error("not logged in");
  }
  return response;
}

async function refreshCsrf() {
  const response = await fetch("/api/csrf-token", { credentials: "same-origin" });
  state.csrf = (await response.json()).csrf_token;
}

// --- log in and out ---------------------------------------------------------------

function showLogin() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  $("loading").hidden = true;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("user").textContent = "";
  $("login").hidden = false;
  $("username").focus();
}

async function showApp(user) {
  if (!state.csrf) await refreshCsrf();
  $("loading").hidden = true;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !state.authEnabled;
  $("user").textContent = user ? `signed in as ${user}` : "";
  await refresh();
  if (!state.timer) state.timer = setInterval(refresh, 3000);
}

async function login(event) {
  event.preventDefault();
  const error = $("login-error");
  error.textContent = "";
  const response = await fetch("/api/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  $("password").value = "";
  if (response.status === 429) {
    error.textContent = `Too many failed logins: try again in ${response.headers.get("Retry-After") || "a few"} s.`;
    return;
  }
  if (!response.ok) {
    error.textContent = response.status === 401 ? "Wrong user name or password." : `Login failed (${response.status}).`;
    return;
  }
  const data = await response.json();
  state.csrf = data.csrf_token;
  await showApp(data.username);
}

async function logout() {
  await api("/api/logout", { method: "POST" });
  state.csrf = "";
  state.historyJob = null;
  showLogin();
}

// --- jobs ---------------------------------------------------------------------------

async function loadJobs() {
  const response = await api("/api/jobs");
  if (!response.ok) return say(`Could not load the jobs (${response.status}).`, true);
  const jobs = await response.json();
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = el("tr");
    row.dataset.job = job.name;
    if (!job.enabled) row.className = "disabled";
    row.append(el("td", job.name), el("td", job.type));
    const schedule = el("td");
    schedule.append(el("code", job.schedule));
    row.append(schedule);
    row.append(el("td", job.enabled ? when(job.next_run) : "disabled"));
    const last = job.last_run;
    row.append(el("td", last ? when(last.started_at || last.scheduled_at || last.ended_at) : "never"));
    const shown = job.running ? "running" : last ? last.state : "–";
    row.append(el("td", shown, `state state-${shown}`));
    const actions = el("td", null, "actions");
    actions.append(
      button("Run now", () => runNow(job.name)),
      button(job.enabled ? "Disable" : "Enable", () => toggle(job.name, !job.enabled)),
      button("History", () => openHistory(job.name)),
    );
    row.append(actions);
    body.append(row);
  }
}

function button(label, onClick) {
  const node = el("button", label);
  node.type = "button";
  node.addEventListener("click", () => onClick().catch((error) => say(error.message, true)));
  return node;
}

async function runNow(name) {
  const response = await api("/api/jobs/run", { method: "POST", body: { name } });
  const data = await response.json();
  if (!response.ok) return say(data.detail || `Run failed (${response.status}).`, true);
  say(`Run ${data.id} of ${name}: ${data.state}${data.error ? ` (${data.error})` : ""}.`);
  await openHistory(name);
  await loadJobs();
}

async function toggle(name, enable) {
  const response = await api(`/api/jobs/${enable ? "enable" : "disable"}`, { method: "POST", body: { name } });
  const data = await response.json();
  if (!response.ok) return say(data.detail || `Failed (${response.status}).`, true);
  say(`${name} is ${data.enabled ? "enabled" : "disabled"}.`);
  await loadJobs();
}

// --- history ------------------------------------------------------------------------

async function openHistory(name) {
  state.historyJob = name;
  $("history").hidden = false;
  $("history-job").textContent = name;
  await loadHistory();
}

async function loadHistory() {
  const name = state.historyJob;
  if (!name) return;
  const response = await api(`/api/jobs/${encodeURIComponent(name)}/history?limit=10`);
  if (!response.ok) return say(`Could not load the history of ${name} (${response.status}).`, true);
  const data = await response.json();
  if (state.historyJob !== name) return;
  const runs = $("runs");
  runs.replaceChildren();
  if (!data.runs.length) runs.append(el("p", "No runs yet.", "muted"));
  for (const run of data.runs) {
    const box = el("div", null, "run");
    box.dataset.run = run.id;
    const head = el("div");
    head.append(
      el("strong", run.id), " ", el("span", run.state, `state-${run.state}`),
      el("span", ` · ${run.trigger} · ${when(run.started_at || run.scheduled_at)} · ${seconds(run.duration)}`, "muted"),
      el("span", run.exit_code === null ? "" : ` · exit ${run.exit_code}`, "muted"),
    );
    box.append(head);
    if (run.error) box.append(el("div", run.error, "error"));
    for (const stream of ["stdout", "stderr"]) {
      if (!run[stream]) continue;
      const label = run[`${stream}_truncated`] ? `${stream} (older output dropped)` : stream;
      box.append(el("div", label, "stream muted"), el("pre", run[stream], stream));
    }
    runs.append(box);
  }
}

// --- metrics ------------------------------------------------------------------------

async function loadMetrics() {
  const target = $("metrics-body");
  const response = await api("/api/metrics");
  if (!response.ok) {
    target.replaceChildren(el("p", `Could not load the metrics (${response.status}).`, "error"));
    return;
  }
  const data = await response.json();
  if (!data.enabled) {
    target.replaceChildren(el("p", "Metrics disabled: set OFELIA_ENABLE_PERFORMANCE_METRICS=true and restart.", "muted"));
    return;
  }
  const rows = [];
  flatten("", data.metrics, rows);
  const table = el("table");
  for (const [key, value] of rows.slice(0, METRIC_ROWS)) {
    const row = el("tr");
    row.append(el("td", key), el("td", value));
    table.append(row);
  }
  const more = rows.length > METRIC_ROWS ? `${rows.length - METRIC_ROWS} more figures: /api/metrics, /metrics` : "";
  target.replaceChildren(rows.length ? table : el("p", "No figures yet.", "muted"), el("p", more, "muted"));
}

const METRIC_ROWS = 20;

// The summary: numbers and short words, by their dotted path; nulls and lists are left out.
function flatten(prefix, value, out) {
  if (value === null || Array.isArray(value)) return;
  if (typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) flatten(prefix ? `${prefix}.${key}` : key, inner, out);
  } else {
    out.push([prefix, typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : String(value)]);
  }
}

// --- start --------------------------------------------------------------------------

async function refresh() {
  try {
    await loadJobs();
    await loadHistory();
    await loadMetrics();
  } catch (error) {
    if (error.message !== "not logged in") say(error.message, true);
  }
}

async function start() {
  $("login-form").addEventListener("submit", (event) => login(event).catch((e) => ($("login-error").textContent = e.message)));
  $("logout").addEventListener("click", () => logout().catch((e) => say(e.message, true)));
  $("history-close").addEventListener("click", () => {
    state.historyJob = null;
    $("history").hidden = true;
  });
  const status = await (await fetch("/api/auth/status", { credentials: "same-origin" })).json();
  state.authEnabled = status.auth_enabled;
  if (status.auth_enabled && !status.authenticated) return showLogin();
  await showApp(status.username);
}

start().catch((error) => {
  $("loading").textContent = `Could not start: ${error.message}`;
});
