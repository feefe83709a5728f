// blockstreamer dashboard: polls the JSON API every 2 s, follows the block stream (SSE), and
// draws its plots on canvas. No dependencies; every value from the server is set as text.
"use strict";

const POLL_MS = 2000;
const LATENCY_MS = 10000;
const COLORS = ["#58a6ff", "#f78166", "#d2a8ff", "#3fb950", "#e3b341", "#ff7b72", "#79c0ff", "#ffa657"];
const colorOf = new Map();
const heads = []; // [t_ms, fleet_head | null, stored_head | null]
let updates = 0;
let latencyAt = 0;

function color(name) {
  if (!colorOf.has(name)) colorOf.set(name, COLORS[colorOf.size % COLORS.length]);
  return colorOf.get(name);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toString();
}

function pct(v) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %";
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  if (!r.ok) throw new Error(path + " answered " + r.status);
  return r.json();
}

function setStoredHead(n) {
  if (n === null || n === undefined) return;
  document.getElementById("stored-head").textContent = n;
  document.body.dataset.storedHead = String(n);
  if (!document.body.dataset.firstHead) document.body.dataset.firstHead = String(n);
}

// The stored head's recent history, from when each block was stored, so the plot starts full.
async function seedHeads() {
  try {
    const data = await getJson("/v1/blocks?order=desc&limit=300");
    const past = (data.blocks || []).map((b) => [b.fetched_at_ms, null, b.number]).reverse();
    heads.unshift(...past);
    renderHeads();
  } catch (_) {
    // Without history the plot fills as the page polls.
  }
}

function renderProviders(data) {
  document.getElementById("fleet-head").textContent = data.fleet_head ?? "–";
  setStoredHead(data.stored_head);
  const behind = data.fleet_head != null && data.stored_head != null ? data.fleet_head - data.stored_head : null;
  document.getElementById("behind").textContent = behind ?? "–";
  document.getElementById("strategy").textContent = data.strategy ?? "–";
  heads.push([Date.now(), data.fleet_head ?? null, data.stored_head ?? null]);
  while (heads.length > 1200) heads.shift();
  const body = document.querySelector("#providers tbody");
  const rows = [];
  for (const p of data.providers || []) {
    const w = (p.windows && p.windows["1m"]) || {};
    const tr = el("tr");
    tr.dataset.provider = p.name;
    tr.dataset.state = p.state;
    const name = el("td");
    const sw = el("i", null, "swatch");
    sw.style.background = color(p.name);
    name.append(sw, document.createTextNode(p.name + (p.primary ? " ★" : "")));
    name.title = p.tier + " · " + (p.url || "");
    const state = el("td");
    state.append(el("span", p.state, "badge state-" + p.state));
    if (p.reason) state.append(el("div", p.reason, "reason"));
    const credits = p.daily_credit_budget ? p.credits_today + " / " + p.daily_credit_budget : p.credits_today;
    const lag = p.lag_blocks + " blk" + (p.lag_seconds ? " · " + p.lag_seconds.toFixed(1) + " s" : "");
    tr.append(
      name,
      state,
      el("td", p.score != null ? p.score.toFixed(3) : "–"),
      el("td", fmtMs(w.p50_ms) + " / " + fmtMs(w.p95_ms) + " ms"),
      el("td", pct(w.error_rate)),
      el("td", pct(w.throttle_rate)),
      el("td", lag),
      el("td", credits),
      el("td", p.breaker),
    );
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function fmtBytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KB";
  return n + " B";
}

function renderClients(data) {
  const body = document.querySelector("#clients tbody");
  const rows = (data.clients || []).slice(0, 30).map((c) => {
    const tr = el("tr");
    tr.dataset.key = c.key ?? "";
    tr.dataset.method = c.method;
    tr.append(
      el("td", c.key ?? "(no key)"),
      el("td", c.method),
      el("td", String(c.calls)),
      el("td", pct(c.calls ? c.from_store / c.calls : null)),
      el("td", String(c.rpc_errors)),
      el("td", String(c.refused)),
      el("td", fmtMs(c.p50_ms) + " / " + fmtMs(c.p95_ms) + " ms"),
      el("td", fmtBytes(c.bytes)),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "no calls to /rpc in the last 10 min", "empty");
    td.colSpan = 8;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function list(id, items, render, empty) {
  const ul = document.getElementById(id);
  if (!items.length) {
    ul.replaceChildren(el("li", empty, "empty"));
    return;
  }
  ul.replaceChildren(...items.map(render));
}

function renderAlerts(data) {
  list("alerts", data.alerts || [], (a) => {
    const li = el("li");
    li.append(el("span", clock(a.started_at_ms), "when"), el("span", a.kind, "kind"), document.createTextNode(a.message));
    return li;
  }, "no open alerts");
}

function renderReorgs(data) {
  list("reorgs", data.reorgs || [], (r) => {
    const li = el("li");
    li.append(
      el("span", clock(r.detected_at_ms), "when"),
      el("span", "depth " + r.depth, "kind"),
      document.createTextNode("fork at " + r.fork_number + ", tip " + r.old_tip_number + " → " + r.new_tip_number + (r.provider ? " (via " + r.provider + ")" : "")),
    );
    return li;
  }, "no reorgs seen");
}

function renderEvents(data) {
  list("events", data.events || [], (e) => {
    const li = el("li");
    li.append(el("span", clock(e.ts_ms), "when"), el("span", e.provider + " " + e.kind, "kind"), document.createTextNode(e.reason));
    return li;
  }, "no routing decisions yet");
}

// A line plot: series = [{color, dash, points: [[x, y], …]}]; y from 0 (or yMin) up.
function plot(canvas, series, opts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 56, r: 10, t: 10, b: 24 };
  let xMin = Infinity, xMax = -Infinity, yMin = opts.yMin ?? Infinity, yMax = -Infinity, count = 0;
  for (const s of series) for (const [x, y] of s.points) {
    if (y === null || y === undefined) continue;
    xMin = Math.min(xMin, x); xMax = Math.max(xMax, x);
    if (opts.yMin === undefined) yMin = Math.min(yMin, y);
    yMax = Math.max(yMax, y);
    count++;
  }
  canvas.dataset.points = String(count);
  g.strokeStyle = "#30363d"; g.fillStyle = "#8b949e"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  if (!count) {
    g.fillText("waiting for data…", pad.l, pad.t + 20);
    return;
  }
  if (xMax === xMin) { xMin -= 1000; xMax += 1000; }
  if (yMax === yMin) { yMax += 1; yMin = Math.max(0, yMin - 1); }
  const X = (x) => pad.l + ((x - xMin) / (xMax - xMin)) * (w - pad.l - pad.r);
  const Y = (y) => h - pad.b - ((y - yMin) / (yMax - yMin)) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    const y = Y(v);
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(opts.yFmt(v), 4, y + 4);
  }
  const xFmt = opts.xFmt || clock;
  for (let i = 0; i <= 4; i++) {
    const v = xMin + ((xMax - xMin) * i) / 4;
    g.fillText(xFmt(v), Math.min(X(v) - 20, w - 52), h - 6);
  }
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = s.dash ? 1 : 2; g.setLineDash(s.dash ? [4, 3] : []);
    g.beginPath();
    let open = false;
    for (const [x, y] of s.points) {
      if (y === null || y === undefined) { open = false; continue; }
      if (!open) { g.moveTo(X(x), Y(y)); open = true; } else g.lineTo(X(x), Y(y));
    }
    g.stroke();
    g.fillStyle = s.color;
    for (const [x, y] of s.points) if (y !== null && y !== undefined) { g.beginPath(); g.arc(X(x), Y(y), s.dash ? 1.5 : 2.5, 0, 7); g.fill(); }
  }
  g.setLineDash([]);
}

// A legend entry: a colour swatch and a name.
function legendItem(c, name) {
  const item = el("span");
  const sw = el("i");
  sw.style.background = c;
  item.append(sw, document.createTextNode(name));
  return item;
}

function renderLatency(data) {
  const series = [];
  const legend = [];
  const mid = (data.step_ms || 0) / 2;
  for (const [name, s] of Object.entries(data.providers || {})) {
    const c = color(name);
    series.push({ color: c, points: data.buckets.map((t, i) => [t + mid, s.p95_ms[i]]) });
    series.push({ color: c, dash: true, points: data.buckets.map((t, i) => [t + mid, s.p50_ms[i]]) });
    legend.push(legendItem(c, name));
  }
  document.getElementById("latency-legend").replaceChildren(...legend);
  plot(document.getElementById("latency"), series, { yMin: 0, yFmt: (v) => fmtMs(v) + " ms" });
}

// Logs per block (grey) and each decoded table's events per block; refused answers listed.
function renderActivity(data) {
  const blocks = data.blocks || [];
  const series = [{ color: "#8b949e", points: blocks.map((b) => [b.number, b.logs]) }];
  const legend = [legendItem("#8b949e", "logs")];
  const tables = new Set();
  for (const b of blocks) for (const t of Object.keys(b.events || {})) tables.add(t);
  for (const t of tables) {
    const c = color(t);
    series.push({ color: c, points: blocks.map((b) => [b.number, (b.events || {})[t] || 0]) });
    legend.push(legendItem(c, t));
  }
  document.getElementById("activity-legend").replaceChildren(...legend);
  plot(document.getElementById("activity"), series, { yMin: 0, yFmt: (v) => Math.round(v).toString(), xFmt: (v) => "#" + Math.round(v) });
  const refused = data.refused || [];
  document.getElementById("refused").dataset.refused = String(refused.reduce((n, r) => n + r.refused, 0));
  list("refused", refused, (r) => {
    const li = el("li");
    li.append(
      el("span", clock(r.last_ms), "when"),
      el("span", r.provider + " " + r.method + " ×" + r.refused, "kind"),
      document.createTextNode(r.last_error || ""),
    );
    return li;
  }, "no receipts or logs refused");
  document.getElementById("decode-errors").textContent = String(data.decode_errors);
}

function renderHeads() {
  heads.sort((a, b) => a[0] - b[0]);
  plot(document.getElementById("heads"), [
    { color: "#8b949e", points: heads.filter((p) => p[1] !== null).map((p) => [p[0], p[1]]) },
    { color: "#3fb950", points: heads.filter((p) => p[2] !== null).map((p) => [p[0], p[2]]) },
  ], { yFmt: (v) => (Number.isInteger(v) ? v.toString() : v.toFixed(1)) });
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    // The latency series reads raw telemetry in 10 s buckets: once per bucket is enough.
    const latencyDue = Date.now() - latencyAt >= LATENCY_MS;
    const [providers, latency, alerts, reorgs, events, activity, clients] = await Promise.all([
      getJson("/v1/providers"),
      latencyDue ? getJson("/v1/latency?seconds=600&step=10") : null,
      getJson("/v1/alerts?state=open&limit=20"),
      getJson("/v1/reorgs?limit=10"),
      getJson("/v1/events?limit=20"),
      getJson("/v1/index/activity?blocks=60&minutes=10"),
      getJson("/v1/clients?minutes=10"),
    ]);
    renderProviders(providers);
    if (latency) {
      renderLatency(latency);
      latencyAt = Date.now();
    }
    renderAlerts(alerts);
    renderReorgs(reorgs);
    renderEvents(events);
    renderActivity(activity);
    renderClients(clients);
    renderHeads();
    updates++;
    document.body.dataset.updates = String(updates);
    status.textContent = "updated " + clock(Date.now());
  } catch (e) {
    // A server restart or a lost connection: say so and keep polling.
    status.textContent = "cannot reach the API (" + e.message + "); retrying";
  }
}

function follow() {
  if (!window.EventSource) return;
  const live = document.getElementById("live");
  const es = new EventSource("/v1/stream/blocks");
  es.addEventListener("open", () => { live.className = "live on"; });
  es.addEventListener("error", () => { live.className = "live off"; });
  es.addEventListener("block", (ev) => {
    try {
      const b = JSON.parse(ev.data);
      setStoredHead(b.number);
      heads.push([Date.now(), null, b.number]);
    } catch (_) {
      // Ignore a malformed event; the next poll corrects the head.
    }
  });
}

seedHeads();
refresh();
setInterval(refresh, POLL_MS);
follow();
