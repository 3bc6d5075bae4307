// The HotSwap dashboard: plain JavaScript over the operator API, served by `hotswap serve` from
// the binary (nothing fetched from elsewhere). Pages are routed by the URL's hash; the page on
// screen is read again every REFRESH_MS, so a running deployment moves by itself. Every value
// from the server is put into the page as text, never as markup.
"use strict";

const REFRESH_MS = 2000;
const PAGE = 50;
// Device states in the order a rollout goes through them, for bars and legends.
const STATES = ["pending", "assigned", "downloading", "downloaded", "verifying", "installed",
  "trial", "confirmed", "failed", "rolled-back", "cancelled"];

let session = JSON.parse(sessionStorage.getItem("hotswap-session") || "null");
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick" || k === "onsubmit" || k === "onchange") node[k] = v;
    // Through the CSSOM: the page's policy refuses inline style attributes.
    else if (k === "width") node.style.width = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "—";
}

function can(permission) {
  return !!session && (session.permissions || []).includes(permission);
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401 && session && !options.login) {
    signOut("Your session ended: sign in again.");
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

function failure(e) {
  return el("p", { class: "error", role: "alert" }, e.message);
}

function signOut(message) {
  session = null;
  sessionStorage.removeItem("hotswap-session");
  location.hash = "#/login";
  route(message);
}

// A stacked bar of devices by state.
function bar(states, total) {
  const sum = total || Object.values(states || {}).reduce((a, b) => a + b, 0);
  const parts = STATES.filter((s) => states && states[s]).map((s) =>
    el("span", { class: `s-${s}`, title: `${s}: ${states[s]}`, width: `${(100 * states[s]) / Math.max(sum, 1)}%` }));
  return el("div", { class: "bar", role: "img", "aria-label": STATES.filter((s) => states && states[s]).map((s) => `${s} ${states[s]}`).join(", ") }, parts);
}

function legend(states) {
  return el("div", { class: "legend" }, STATES.filter((s) => states && states[s]).map((s) =>
    el("span", {}, el("i", { class: `s-${s}` }), `${s} ${states[s]}`)));
}

function verdictText(v) {
  switch (v.verdict) {
    case "proceed": return "proceed";
    case "wait": return `wait ${v.seconds} s`;
    case "pause": return `pause: ${v.reason}`;
    case "rollBack": return `roll back: ${v.reason}`;
    default: return JSON.stringify(v);
  }
}

// ---- pages -------------------------------------------------------------------------------

function loginPage(message) {
  const name = el("input", { id: "name", autocomplete: "username", required: true });
  const password = el("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  const status = el("p", { class: message ? "error" : "muted", role: "status" }, message || "Sign in with your HotSwap account.");
  const form = el("form", {
    class: "login",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        session = await api("/api/v1/auth/login", { method: "POST", body: { name: name.value, password: password.value }, login: true });
        sessionStorage.setItem("hotswap-session", JSON.stringify(session));
        location.hash = "#/deployments";
      } catch (e) {
        status.className = "error";
        status.textContent = e.message;
      }
    },
  }, el("h1", {}, "Sign in"), status,
  el("label", { for: "name" }, "Name"), name,
  el("label", { for: "password" }, "Password"), password,
  el("p", {}, el("button", { type: "submit" }, "Sign in")));
  show(form);
}

async function deploymentsPage() {
  const list = await api("/api/v1/deployments");
  // Each listed deployment's counts come from its status: a few hundred bytes each.
  const shown = list.slice(0, 20);
  const statuses = await Promise.all(shown.map((d) => api(`/api/v1/deployments/${d.id}/status`).catch(() => null)));
  const rows = shown.map((d, i) => {
    const s = statuses[i];
    return el("tr", { "data-deployment": d.id },
      el("td", {}, el("a", { href: `#/deployments/${d.id}` }, `#${d.id}`)),
      el("td", { class: "state" }, d.state),
      el("td", {}, `${d.firmwareVersion} (${d.deviceModel})`),
      el("td", {}, d.strategy),
      el("td", {}, `wave ${Math.min(d.currentWave + 1, d.waves)} of ${d.waves}`),
      el("td", {}, s ? bar(s.states) : "—", s ? legend(s.states) : null),
      el("td", {}, d.createdBy || "—", el("br"), el("span", { class: "muted" }, when(d.createdAt))));
  });
  return [el("h1", {}, "Deployments"),
    list.length ? el("table", { id: "deployments" },
      el("tr", {}, ["Id", "State", "Firmware", "Strategy", "Wave", "Devices by state", "Created"].map((h) => el("th", {}, h))),
      rows) : el("p", { class: "muted" }, "No deployments yet."),
    list.length > shown.length ? el("p", { class: "muted" }, `The newest ${shown.length} of ${list.length}.`) : null];
}

function actionButton(id, label, action, question, danger) {
  return el("button", {
    "data-action": action,
    class: danger ? "danger" : null,
    onclick: async () => {
      if (!confirm(question)) return;
      try {
        const body = action === "approve" || action === "deny" ? { remark: "from the dashboard" } : undefined;
        await api(`/api/v1/deployments/${id}/${action}`, { method: "POST", body });
        route();
      } catch (e) {
        alert(e.message);
      }
    },
  }, label);
}

function actions(d) {
  const out = [];
  const handle = can("handle-deployment");
  if (d.state === "waiting-for-approval" && can("approve-deployment")) {
    out.push(actionButton(d.id, "Approve", "approve", `Approve deployment #${d.id}?`));
    out.push(actionButton(d.id, "Deny", "deny", `Deny deployment #${d.id}? It will be cancelled.`, true));
  }
  if (handle && d.state === "running") out.push(actionButton(d.id, "Pause", "pause", `Pause deployment #${d.id}? No device gets anything new until it is resumed.`));
  if (handle && d.state === "paused") out.push(actionButton(d.id, "Resume", "resume", `Resume deployment #${d.id}?`));
  if (handle && ["waiting-for-approval", "running", "paused"].includes(d.state)) {
    out.push(actionButton(d.id, "Cancel", "cancel", `Cancel deployment #${d.id}? Devices keep what they confirmed.`, true));
  }
  if (handle && ["running", "paused", "completed"].includes(d.state)) {
    out.push(actionButton(d.id, "Roll back", "rollback", `Roll back deployment #${d.id}? Every device that took it is sent back to its previous version.`, true));
  }
  return out.length ? el("p", { class: "actions" }, out) : null;
}

async function deploymentPage(id) {
  const s = await api(`/api/v1/deployments/${id}/status`);
  const now = Date.now() / 1000;
  const active = ["running", "paused", "rolling-back"].includes(s.state);
  const waves = s.waveStatus.map((w) => {
    const current = w.index === s.currentWave && active;
    let soak = "—";
    if (w.settledAt && !active) soak = "done";
    else if (w.settledAt) {
      const left = w.settledAt + w.gate.soakSeconds - now;
      soak = left > 0 ? `${Math.ceil(left)} s left` : "done";
    } else if (w.startedAt) soak = `${w.gate.soakSeconds} s after it settles`;
    return el("tr", { class: current ? "current" : null, "data-wave": w.index },
      el("td", {}, `${w.index + 1}${current ? " ◀" : ""}`),
      el("td", {}, w.name),
      el("td", {}, w.devices),
      el("td", {}, bar(w.states, w.devices), legend(w.states)),
      el("td", {}, `${w.succeeded} ok, ${w.failed} failed`),
      el("td", {}, soak));
  });
  const decisions = (s.recentDecisions || []).slice().reverse().map((d) =>
    el("tr", {}, el("td", {}, when(d.at)), el("td", {}, `wave ${d.wave + 1}`), el("td", { class: "verdict" }, verdictText(d.verdict)), el("td", { class: "muted" }, d.policy)));
  const events = (s.recentEvents || []).slice().reverse().map((e) =>
    el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.deviceId ? el("a", { href: `#/devices/${encodeURIComponent(e.deviceId)}` }, e.deviceId) : "—"), el("td", {}, e.message)));
  const rollback = Object.keys(s.rollback || {}).length ? [el("h2", {}, "Rollback"), bar(s.rollback), legend(s.rollback)] : [];
  return [el("h1", {}, `Deployment #${s.id}: `, el("span", { id: "state" }, s.state)),
    el("p", {}, `${s.firmwareVersion} for ${s.deviceModel}, strategy ${s.strategy}, health policy ${s.healthPolicy}; wave ${Math.min(s.currentWave + 1, s.waves)} of ${s.waves}. Created by ${s.createdBy || "—"} on ${when(s.createdAt)}.`),
    s.reason ? el("p", { id: "reason" }, `Reason: ${s.reason}`) : null,
    // The trace id to look the rollout up by in a tracing backend, when the server sends traces.
    s.traceparent ? el("p", { class: "muted", id: "trace" }, `Trace ${s.traceparent.split("-")[1]}`) : null,
    actions(s),
    el("h2", {}, "Devices by state"), bar(s.states), legend(s.states),
    el("h2", {}, "Waves"),
    el("table", { id: "waves" }, el("tr", {}, ["Wave", "Name", "Devices", "By state", "Outcome", "Soak"].map((h) => el("th", {}, h))), waves),
    ...rollback,
    el("h2", {}, "Health policy verdicts"),
    decisions.length ? el("table", { id: "verdicts" }, decisions) : el("p", { class: "muted" }, "None yet."),
    el("h2", {}, "Events"),
    events.length ? el("table", { id: "events" }, events) : el("p", { class: "muted" }, "None yet."),
    s.excludedCount ? el("p", { class: "muted" }, `${s.excludedCount} targets left out (outside the version's compatibility).`) : null];
}

function chart(title, counts) {
  const max = Math.max(1, ...Object.values(counts));
  return el("div", {}, el("h2", {}, title), el("div", { class: "chart" },
    Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([k, n]) => [
      el("span", {}, k), el("div", { class: "fill", width: `${(100 * n) / max}%` }), el("span", {}, n)])));
}

// The fleet page's filters and cursor survive its refreshes.
const fleet = { filters: {}, cursors: [null] };

async function fleetPage() {
  const summary = await api("/api/v1/fleet");
  const query = new URLSearchParams({ limit: PAGE });
  for (const [k, v] of Object.entries(fleet.filters)) if (v) query.set(k, v);
  const after = fleet.cursors[fleet.cursors.length - 1];
  if (after) query.set("after", after);
  const page = await api(`/api/v1/devices?${query}`);
  const field = (name, label) => el("input", { name, placeholder: label, value: fleet.filters[name] || "" });
  const filters = el("form", {
    class: "filters",
    onsubmit: (event) => {
      event.preventDefault();
      fleet.filters = Object.fromEntries(new FormData(event.target));
      fleet.cursors = [null];
      route();
    },
  }, field("region", "region"), field("firmwareVersion", "version"), field("group", "group"),
  field("label", "label key=value"), field("deviceModel", "model"),
  el("select", { name: "status" }, ["", "registered", "online", "quarantined", "pending", "rejected", "decommissioned"].map((s) =>
    el("option", { value: s, selected: fleet.filters.status === s }, s || "any status"))),
  el("button", { type: "submit" }, "Filter"));
  const rows = page.devices.map((d) => el("tr", {},
    el("td", {}, el("a", { href: `#/devices/${encodeURIComponent(d.deviceId)}` }, d.deviceId)),
    el("td", {}, d.firmwareVersion), el("td", {}, d.status), el("td", {}, d.region),
    el("td", {}, d.deviceModel), el("td", {}, when(d.lastSeen))));
  const pager = el("p", {},
    fleet.cursors.length > 1 ? el("button", { onclick: () => { fleet.cursors.pop(); route(); } }, "Previous") : null,
    page.next ? el("button", { onclick: () => { fleet.cursors.push(page.next); route(); } }, "Next") : null);
  return [el("h1", {}, `Fleet: ${summary.devices} devices`),
    el("div", { class: "charts" }, chart("By agent version", summary.byVersion), chart("By status", summary.byStatus), chart("By region", summary.byRegion)),
    el("h2", {}, "Devices"), filters,
    el("table", { id: "devices" }, el("tr", {}, ["Device", "Version", "Status", "Region", "Model", "Last seen"].map((h) => el("th", {}, h))), rows),
    pager];
}

async function devicePage(id) {
  const d = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
  const slots = (d.slots || []).map((s) => el("tr", {}, el("td", {}, s.slot), el("td", {}, s.version || "—"), el("td", {}, s.state)));
  const history = (d.history || []).map((h) => el("tr", {},
    el("td", {}, el("a", { href: `#/deployments/${h.deploymentId}` }, `#${h.deploymentId}`)),
    el("td", {}, h.kind), el("td", {}, `${h.fromVersion} → ${h.version}`), el("td", {}, h.state),
    el("td", {}, h.reason || ""), el("td", {}, when(h.updatedAt))));
  return [el("h1", {}, `Device ${d.deviceId}`),
    el("p", {}, `${d.deviceModel} in ${d.region}, runs ${d.firmwareVersion}, ${d.status}; last check-in ${when(d.lastSeen)}.`),
    d.keyFingerprint ? el("p", {}, "Enrolled with the key ", el("code", {}, d.keyFingerprint), ": compare with what the device shows before accepting it.") : null,
    el("h2", {}, "Slots"), slots.length ? el("table", { id: "slots" }, el("tr", {}, ["Slot", "Version", "State"].map((h) => el("th", {}, h))), slots) : el("p", { class: "muted" }, "Not reported yet."),
    el("h2", {}, "Health"), d.health ? el("pre", {}, JSON.stringify(d.health, null, 2)) : el("p", { class: "muted" }, "Not reported yet."),
    el("h2", {}, "History"), history.length ? el("table", { id: "history" }, el("tr", {}, ["Deployment", "Kind", "Versions", "State", "Reason", "Updated"].map((h) => el("th", {}, h))), history) : el("p", { class: "muted" }, "No assignments yet.")];
}

async function pluginsPage() {
  const list = await api("/api/v1/plugins");
  return [el("h1", {}, "Plugins"), el("table", { id: "plugins" },
    el("tr", {}, ["Name", "Version", "Kind", "Source", "Summary", "Parameters"].map((h) => el("th", {}, h))),
    list.map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, p.version), el("td", {}, p.kind),
      el("td", {}, p.builtin ? "built-in" : "uploaded"), el("td", {}, p.summary),
      el("td", {}, el("details", {}, el("summary", {}, "schema"), el("pre", {}, JSON.stringify(p.paramsSchema, null, 2)))))))];
}

async function auditPage() {
  const page = await api("/api/v1/audit?limit=100");
  return [el("h1", {}, "Audit log"), el("table", { id: "audit" },
    el("tr", {}, ["When", "Who", "Action", "Object", "Status", "From"].map((h) => el("th", {}, h))),
    page.entries.map((e) => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.actor), el("td", {}, e.action),
      el("td", {}, e.object || ""), el("td", {}, e.status), el("td", {}, e.source || ""))))];
}

// ---- routing -------------------------------------------------------------------------------

async function route(message) {
  clearTimeout(timer);
  const hash = location.hash || "#/deployments";
  const nav = document.getElementById("nav");
  document.getElementById("sign-out").hidden = !session;
  nav.hidden = !session;
  document.getElementById("who").textContent = session ? `${session.name} (${session.role})` : "";
  for (const a of nav.querySelectorAll("a")) {
    a.classList.toggle("here", hash.startsWith(a.getAttribute("href")));
    const needs = a.getAttribute("data-needs");
    if (needs) a.hidden = !can(needs);
  }
  if (!session || hash === "#/login") return loginPage(message);
  const [, page, id] = hash.split("/");
  const pages = {
    deployments: () => (id ? deploymentPage(id) : deploymentsPage()),
    fleet: fleetPage,
    devices: () => devicePage(decodeURIComponent(id)),
    plugins: pluginsPage,
    audit: auditPage,
  };
  const render = pages[page];
  if (!render) return show(el("p", { class: "error" }, `No page ${hash}.`));
  try {
    const nodes = await render();
    if ((location.hash || "#/deployments") !== hash) return;
    show(...nodes);
  } catch (e) {
    if (e.message !== "signed out") show(failure(e));
  }
  // Deployments move by themselves and are read again; the fleet page keeps its filters as typed.
  if (page === "deployments") timer = setTimeout(() => route(), REFRESH_MS);
}

window.addEventListener("hashchange", () => route());
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").onclick = () => signOut("Signed out.");
  route();
});
