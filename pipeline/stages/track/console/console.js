// The motcua console: plain JavaScript over the status API's JSON endpoints (no build
// step, no third-party code). Every value from the API goes into the page as text
// (textContent), never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(1, Math.min(300, Number(params.get("refresh")) || 5));
const KEY_SLOT = "motcua-operator-key";
let timer = null;
let forecastUnit = params.get("unit") || "";

const $ = (id) => document.getElementById(id);

function show(el, on) { el.hidden = !on; }

// "2026-12-06T12:42:08+07:00" -> "2026-12-06 12:42" (the API's times are Vietnam time).
function when(iso) { return typeof iso === "string" ? iso.slice(0, 16).replace("T", " ") : "–"; }
function hours(ms) { return typeof ms === "number" ? (ms / 3.6e6).toFixed(1) : "–"; }
function num(n) { return typeof n === "number" ? n.toLocaleString("en-US") : "–"; }

// A table body filled from rows of cells; a cell is text, or {text, cls}.
function fill(table, rows, attrs) {
  const body = table.tBodies[0];
  body.replaceChildren();
  rows.forEach((cells, i) => {
    const tr = document.createElement("tr");
    const a = attrs ? attrs(i) : {};
    for (const [k, v] of Object.entries(a)) {
      if (k === "class") tr.className = v; else tr.dataset[k] = v;
    }
    for (const c of cells) {
      const td = document.createElement("td");
      const cell = (c !== null && typeof c === "object") ? c : { text: c };
      td.textContent = cell.text === null || cell.text === undefined ? "–" : String(cell.text);
      if (cell.cls) td.className = cell.cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = table.tHead ? table.tHead.rows[0].cells.length : 1;
    td.className = "none";
    td.textContent = "none";
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function api(path, init) {
  const headers = Object.assign({ "Accept": "application/json" }, (init && init.headers) || {});
  const key = sessionStorage.getItem(KEY_SLOT);
  if (key && !(init && init.anonymous)) headers["Authorization"] = "Bearer " + key;
  const r = await fetch(path, Object.assign({}, init, { headers }));
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    const e = new Error((body && body.error && body.error.message) || ("HTTP " + r.status));
    e.status = r.status;
    e.code = body && body.error && body.error.code;
    throw e;
  }
  return body;
}

// --- tabs --------------------------------------------------------------------------
function view(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.view === name);
  show($("view-citizen"), name === "citizen");
  show($("view-operator"), name === "operator");
}

// --- citizens ----------------------------------------------------------------------
async function lookup(ev) {
  ev.preventDefault();
  show($("lookup-error"), false);
  show($("lookup-result"), false);
  try {
    const d = await api("/lookup", {
      method: "POST",
      anonymous: true,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ dossier_code: $("lookup-code").value.trim(), lookup_token: $("lookup-token").value.trim() }),
    });
    $("lookup-result-code").textContent = d.dossier_code || "–";
    $("lookup-result-procedure").textContent = d.procedure_code || "–";
    $("lookup-result-status").textContent = (d.status || "–") + (d.overdue ? " (quá hạn · overdue)" : "");
    $("lookup-result-status").dataset.status = d.status || "";
    $("lookup-result-received").textContent = when(d.received_at);
    $("lookup-result-due").textContent = when(d.due_at);
    $("lookup-result-next").textContent = d.next_step ? d.next_step.message : "–";
    const steps = d.steps || [];
    fill($("lookup-steps"), steps.map((s) => [s.step, when(s.started_at), when(s.ended_at), hours(s.working_ms), hours(s.budget_ms)]),
      (i) => (Object.assign({ step: steps[i].step }, steps[i].current ? { class: "current" } : {})));
    show($("lookup-result"), true);
  } catch (e) {
    $("lookup-error").textContent = e.status === 404
      ? "Không tìm thấy hồ sơ với mã hồ sơ và mã tra cứu này. · No dossier with this code and lookup token."
      : e.status === 429 ? "Quá nhiều yêu cầu, vui lòng thử lại sau. · Too many requests; try again later."
      : "Không tra cứu được: " + e.message;
    show($("lookup-error"), true);
  }
}

// --- operators ---------------------------------------------------------------------
async function signIn(ev) {
  ev.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_SLOT, key);
  $("key").value = "";
  await startOperator();
}

function signOut() {
  sessionStorage.removeItem(KEY_SLOT);
  if (timer) clearInterval(timer);
  timer = null;
  show($("operator"), false);
  show($("key-forget"), false);
  show($("key-submit"), true);
  show($("key"), true);
}

async function startOperator() {
  show($("operator-error"), false);
  try {
    await api("/load");
  } catch (e) {
    if (e.status === 401) sessionStorage.removeItem(KEY_SLOT);
    $("operator-error").textContent = e.status === 401 ? "This API key is not valid." : "Cannot reach the status API: " + e.message;
    show($("operator-error"), true);
    return;
  }
  show($("operator"), true);
  show($("key-forget"), true);
  show($("key-submit"), false);
  show($("key"), false);
  $("refresh-seconds").textContent = String(REFRESH_S);
  await refresh();
  if (timer) clearInterval(timer);
  timer = setInterval(refresh, REFRESH_S * 1000);
}

function unavailable(panel, message) {
  const p = $(panel).querySelector(".unavailable");
  if (!p) return;
  p.textContent = message || "";
  show(p, !!message);
}

async function refresh() {
  await Promise.all([loadPanel(), pipelinePanel(), riskPanel(), bottleneckPanel(), forecastPanel()]);
  $("updated").textContent = new Date().toLocaleTimeString("en-GB");
}

async function loadPanel() {
  try {
    const l = await api("/load");
    $("sum-open").textContent = num(l.open);
    $("sum-overdue").textContent = num(l.overdue);
    $("sum-due-soon").textContent = num(l.due_soon);
    $("sum-today").textContent = num(l.received_today);
    $("sum-hour").textContent = num(l.received_last_hour);
    fill($("load-table"), l.units.map((u) => [u.unit, { text: num(u.open), cls: "num" },
      { text: num(u.overdue), cls: u.overdue ? "num warn" : "num" }, { text: num(u.due_soon), cls: "num" },
      { text: num(u.received_last_hour), cls: "num" }, { text: num(u.received_today), cls: "num" }]),
      (i) => ({ unit: l.units[i].unit }));
    const select = $("forecast-unit");
    const centers = l.units.filter((u) => u.received_today > 0 || u.open > 0).map((u) => u.unit);
    const have = Array.from(select.options).map((o) => o.value);
    if (centers.join() !== have.join()) {
      select.replaceChildren(...centers.map((c) => { const o = document.createElement("option"); o.value = c; o.textContent = c; return o; }));
    }
    if (!forecastUnit && centers.length) forecastUnit = centers[0];
    if (forecastUnit && !centers.includes(forecastUnit)) {
      const o = document.createElement("option"); o.value = forecastUnit; o.textContent = forecastUnit; select.appendChild(o);
    }
    select.value = forecastUnit;
  } catch (e) {
    $("sum-open").textContent = "–";
    fill($("load-table"), []);
  }
}

async function pipelinePanel() {
  let p;
  try {
    p = await api("/pipeline");
  } catch (e) {
    for (const panel of ["panel-lag", "panel-dead", "panel-waiting"]) unavailable(panel, e.message);
    return;
  }
  if (p.lag.unavailable) { unavailable("panel-lag", p.lag.unavailable); } else {
    unavailable("panel-lag", "");
    fill($("lag-table"), p.lag.map((s) => [s.stage, { text: num(s.lag), cls: s.lag > 0 ? "num warn" : "num" }, { text: num(s.committed), cls: "num" }]),
      (i) => ({ stage: p.lag[i].stage }));
  }
  const d = p.dead_letters;
  if (d.unavailable) { unavailable("panel-dead", d.unavailable); $("sum-dead").textContent = "?"; } else {
    unavailable("panel-dead", "");
    $("sum-dead").textContent = num(d.total);
    fill($("dead-causes"), d.by_cause.map((c) => [c.reason_code, c.origin_topic, c.stage, { text: num(c.count), cls: "num" }]),
      (i) => ({ reason: d.by_cause[i].reason_code }));
    fill($("dead-latest"), d.latest.map((x) => [x.id, when(x.failed_at), x.reason_code, { text: x.replay_count, cls: "num" }]),
      (i) => ({ id: d.latest[i].id }));
  }
  const w = p.waiting;
  if (w.unavailable) { unavailable("panel-waiting", w.unavailable); $("sum-parked").textContent = "?"; } else {
    unavailable("panel-waiting", "");
    $("sum-parked").textContent = num(w.parked_total);
    fill($("parked-table"), w.parked.map((x) => [x.dossier_code, when(x.parked_at), { text: x.attempts, cls: "num" }, x.cause]),
      (i) => ({ code: w.parked[i].dossier_code }));
    fill($("escalated-table"), w.escalated.map((x) => [x.dossier_code, when(x.escalated_at), x.cause]),
      (i) => ({ code: w.escalated[i].dossier_code }));
  }
}

async function riskPanel() {
  try {
    const r = await api("/at-risk?limit=30");
    $("risk-count").textContent = num(r.at_risk) + ", " + num(r.overdue) + " overdue";
    fill($("risk-table"), r.dossiers.map((x) => [x.dossier_code, x.procedure_code, x.unit, x.status, x.step, when(x.due_at)]),
      (i) => (Object.assign({ code: r.dossiers[i].dossier_code || "" }, r.dossiers[i].overdue ? { class: "overdue" } : {})));
  } catch (e) {
    $("risk-count").textContent = e.message;
  }
}

async function bottleneckPanel() {
  try {
    const b = await api("/bottlenecks?top=8");
    $("bn-dossiers").textContent = num(b.dossiers) + " dossiers";
    fill($("bn-steps"), b.steps.map((s) => [s.step, { text: num(s.finished), cls: "num" }, { text: s.average_working_hours === null ? "–" : s.average_working_hours.toFixed(2), cls: "num" },
      { text: num(s.finished_over_budget), cls: s.finished_over_budget ? "num warn" : "num" }, { text: num(s.running), cls: "num" },
      { text: num(s.running_over_budget), cls: s.running_over_budget ? "num warn" : "num" }]), (i) => ({ step: b.steps[i].step }));
    const group = (g) => [g.code, { text: num(g.received), cls: "num" }, { text: num(g.late), cls: g.late ? "num warn" : "num" },
      { text: num(g.overdue), cls: g.overdue ? "num warn" : "num" }, { text: num(g.steps_over_budget), cls: "num" },
      g.slowest_step ? g.slowest_step + " (" + g.slowest_step_hours.toFixed(1) + " h)" : "–"];
    fill($("bn-procedures"), b.procedures.map(group), (i) => ({ code: b.procedures[i].code }));
    fill($("bn-units"), b.units.map(group), (i) => ({ code: b.units[i].code }));
  } catch (e) {
    $("bn-dossiers").textContent = e.message;
  }
}

async function forecastPanel() {
  const chart = $("forecast-chart");
  if (!forecastUnit) { $("forecast-note").textContent = "No center has dossiers yet."; chart.replaceChildren(); return; }
  let f;
  try {
    f = await api("/units/" + encodeURIComponent(forecastUnit) + "/forecast?hours=48");
  } catch (e) {
    $("forecast-note").textContent = forecastUnit + ": " + e.message;
    chart.replaceChildren();
    return;
  }
  const hb = f.held_back;
  const note = forecastUnit + " — " + f.method + " (α " + f.alpha + ", " + f.weeks + " weeks)." +
    (hb ? " Held-back week from " + when(hb.week_start) + ": mean absolute error " + hb.mae_per_hour +
      " per hour (seasonal naive: " + hb.naive_mae_per_hour + "), " + num(hb.actual_total) + " came, " + hb.forecast_total + " expected." : "");
  $("forecast-note").textContent = note;
  $("forecast-note").dataset.mae = hb ? String(hb.mae_per_hour) : "";
  drawForecast(chart, f.this_week, f.next);
}

// Bars: what came each hour of this week so far; line: what was expected for those
// hours, continued over the next hours.
function drawForecast(chart, week, next) {
  const NS = "http://www.w3.org/2000/svg";
  const hoursAll = week.concat(next.filter((n) => !week.some((w) => w.start === n.start)));
  const W = 1000, H = 200, pad = 24;
  const max = Math.max(1, ...hoursAll.map((h) => Math.max(h.expected || 0, h.actual || 0)));
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, hoursAll.length);
  const bw = Math.max(1, (W - 2 * pad) / Math.max(1, hoursAll.length) - 1);
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("preserveAspectRatio", "none");
  const el = (name, attrs, text) => {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  let actualBars = 0;
  hoursAll.forEach((h, i) => {
    if (typeof h.actual === "number") {
      actualBars++;
      el("rect", { class: "actual", x: x(i), y: y(h.actual), width: bw, height: Math.max(0, H - pad - y(h.actual)) });
    }
  });
  el("polyline", { class: "expected", points: hoursAll.map((h, i) => (x(i) + bw / 2) + "," + y(h.expected || 0)).join(" ") });
  if (week.length) el("line", { class: "now", x1: x(week.length), x2: x(week.length), y1: pad / 2, y2: H - pad });
  el("text", { x: 2, y: pad }, String(Math.round(max * 10) / 10));
  el("text", { x: 2, y: H - pad }, "0");
  hoursAll.forEach((h, i) => { if (h.start.slice(11, 13) === "00") el("text", { x: x(i), y: H - 6 }, h.start.slice(5, 10)); });
  svg.dataset.hours = String(hoursAll.length);
  svg.dataset.actualBars = String(actualBars);
  chart.replaceChildren(svg);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => view(b.dataset.view));
  $("lookup-form").addEventListener("submit", lookup);
  $("key-form").addEventListener("submit", signIn);
  $("key-forget").addEventListener("click", signOut);
  $("forecast-unit").addEventListener("change", (e) => { forecastUnit = e.target.value; forecastPanel(); });
  if (params.get("view") === "operator" || sessionStorage.getItem(KEY_SLOT)) view("operator");
  if (sessionStorage.getItem(KEY_SLOT)) startOperator();
});
