// Pluribus dashboard: plain JavaScript, no build step, nothing fetched from elsewhere.
// One server-sent event ("frame") about once a second carries the totals, one page of
// fleets and agents, the latest chart points and the events this page has not seen.
'use strict';

const KEEP_MS = 15 * 60 * 1000; // points kept in the page
const KEEP_EVENTS = 1000;
const $ = (id) => document.getElementById(id);
const view = { fpage: 0, apage: 0, spage: 0, q: '', chart: '' };
let stream = null;
let lastSeq = 0;
let access = null;
let cluster = [];
let fleetSeries = [];
let events = [];
const kinds = new Set();
let rendered = new WeakMap(); // element -> the HTML it shows, so unchanged tables are not redrawn

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function num(v) {
  if (v === null || v === undefined) return '-';
  if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  return (Math.round(v * 10) / 10).toString();
}
function us(v) {
  if (v === null || v === undefined) return '-';
  if (v < 1000) return v + 'µs';
  if (v < 1e6) return (v / 1e3).toFixed(1) + 'ms';
  return (v / 1e6).toFixed(2) + 's';
}
function setHtml(el, html) {
  if (rendered.get(el) !== html) { rendered.set(el, html); el.innerHTML = html; }
}
function notice(text, error) {
  const n = $('notice');
  n.textContent = text;
  n.className = error ? 'error' : '';
  n.hidden = !text;
}

// ---- the stream --------------------------------------------------------------------------

function connect() {
  if (stream) stream.close();
  const qs = new URLSearchParams({ fpage: view.fpage, apage: view.apage, spage: view.spage, q: view.q, after: lastSeq });
  if (view.chart) qs.set('chart', view.chart);
  stream = new EventSource('api/stream?' + qs);
  stream.addEventListener('frame', (e) => onFrame(JSON.parse(e.data)));
  stream.onerror = () => { $('live').textContent = 'connection lost: reconnecting…'; };
}

function push(series, p) {
  if (!p) return series;
  if (series.length && series[series.length - 1].ts_ms >= p.ts_ms) return series;
  series.push(p);
  const oldest = p.ts_ms - KEEP_MS;
  while (series.length && series[0].ts_ms < oldest) series.shift();
  return series;
}

function onFrame(f) {
  $('live').textContent = 'live · ' + new Date(f.ts_ms).toLocaleTimeString();
  const t = f.totals;
  const c = f.cluster || {};
  setHtml($('totals'), `<span id="agents-alive">${t.agents_alive}</span> agents alive · ${t.fleets} fleets · ` +
    `${t.running}/${t.desired} devices running · <span id="achieved-rate">${num(c.achieved || 0)}</span> msg/s ` +
    `(scheduled ${num(c.scheduled || 0)})` + (t.saturated ? ` · <span class="sat">${t.saturated} SATURATED</span>` : ''));
  setAccess(f.access);
  cluster = push(cluster, f.cluster);
  if (view.chart) fleetSeries = push(fleetSeries, f.chart);
  drawAll();
  renderFleets(f.fleets);
  renderAgents(f.agents);
  renderScenarios(f.scenarios || { runs: [], total: 0, page: 0, pages: 1, note: null });
  addEvents(f.events);
}

function setAccess(a) {
  const key = JSON.stringify(a);
  if (access === key) return;
  access = key;
  const box = $('access');
  box.hidden = !a.read_only;
  box.textContent = a.read_only ? (a.why || 'read-only') + ' (no controls are shown)' : '';
  document.body.classList.toggle('read-only', a.read_only);
  for (const el of document.querySelectorAll('.control-only')) el.hidden = a.read_only;
  rendered = new WeakMap();
}
function readOnly() { return !access || JSON.parse(access).read_only; }

// ---- charts ------------------------------------------------------------------------------

const CHARTS = [
  ['rate', 'msg/s', num, [['scheduled', '#90a4ae', (p) => p.scheduled], ['achieved', '#1565c0', (p) => p.achieved]]],
  ['lag', 'tick lag', us, [['p50', '#2e7d32', (p) => p.lag_p50], ['p99', '#c62828', (p) => p.lag_p99]]],
  ['ack', 'ack latency', us, [['p50', '#2e7d32', (p) => p.ack_p50], ['p99', '#c62828', (p) => p.ack_p99]]],
  ['conn', 'connections', num, [['connected', '#1565c0', (p) => p.connected], ['failures/s', '#c62828', (p) => p.connect_failures], ['errors/s', '#ef6c00', (p) => p.errors]]],
  ['net', 'injected faults', num, [['dropped/s', '#c62828', (p) => p.dropped], ['delayed/s', '#ef6c00', (p) => p.delayed], ['duplicated/s', '#6a1b9a', (p) => p.duplicated], ['offline', '#455a64', (p) => p.offline]]],
];

function draw(canvas, title, fmt, lines, points) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 52, R = 8, T = 18, B = 18;
  g.clearRect(0, 0, W, H);
  g.font = '11px sans-serif';
  g.fillStyle = '#333';
  g.fillText(title, 6, 12);
  let max = 0;
  for (const p of points) for (const [, , get] of lines) { const v = get(p); if (v != null && v > max) max = v; }
  if (max <= 0) max = 1;
  const t1 = points.length ? points[points.length - 1].ts_ms : Date.now();
  const t0 = Math.min(points.length ? points[0].ts_ms : t1, t1 - 60000);
  g.strokeStyle = '#eee';
  g.fillStyle = '#888';
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * i / 4;
    g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
    g.fillText(fmt(max * (4 - i) / 4), 2, y + 4);
  }
  g.fillText(new Date(t0).toLocaleTimeString(), L, H - 4);
  g.fillText(new Date(t1).toLocaleTimeString(), W - R - 60, H - 4);
  let lx = W - R;
  for (const [label] of lines) lx -= g.measureText(label).width + 10;
  lx = Math.max(lx, g.measureText(title).width + 14);
  for (const [label, colour, get] of lines) {
    g.strokeStyle = colour; g.lineWidth = 1.5; g.beginPath();
    let started = false;
    for (const p of points) {
      const v = get(p);
      if (v == null) { started = false; continue; }
      const x = L + (W - L - R) * (p.ts_ms - t0) / Math.max(1, t1 - t0);
      const y = T + (H - T - B) * (1 - v / max);
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    }
    g.stroke();
    g.fillStyle = colour; g.fillText(label, lx, 12); lx += g.measureText(label).width + 12;
  }
  g.lineWidth = 1;
  // The latest values, for people using assistive tools and for tests.
  const last = points.length ? points[points.length - 1] : null;
  canvas.dataset.last = last ? JSON.stringify(Object.fromEntries(lines.map(([label, , get]) => [label, get(last)]))) : '';
  canvas.setAttribute('aria-label', title + (last ? ': ' + lines.map(([label, , get]) => label + ' ' + fmt(get(last) || 0)).join(', ') : ''));
}

function drawAll() {
  for (const [id, title, fmt, lines] of CHARTS) {
    draw($('c-' + id), 'cluster ' + title, fmt, lines, cluster);
    if (view.chart) draw($('f-' + id), view.chart + ' ' + title, fmt, lines, fleetSeries);
  }
}

async function openChart(name) {
  view.chart = name;
  $('chart-fleet').textContent = name;
  $('fleet-charts-box').hidden = false;
  fleetSeries = [];
  try {
    fleetSeries = await (await fetch('api/history?fleet=' + encodeURIComponent(name))).json();
  } catch (e) { /* the stream fills it */ }
    connect();
}

// ---- tables ------------------------------------------------------------------------------

function pager(el, page, kind) {
  setHtml(el, page.pages > 1
    ? `<button data-page="${kind}" data-to="${page.page - 1}" ${page.page === 0 ? 'disabled' : ''}>‹</button>` +
      ` page ${page.page + 1} of ${page.pages} (${page.total}) ` +
      `<button data-page="${kind}" data-to="${page.page + 1}" ${page.page + 1 >= page.pages ? 'disabled' : ''}>›</button>`
    : `${page.total} in all`);
}

function renderFleets(page) {
  const ro = readOnly();
  const head = `<tr><th class="l">fleet</th><th class="l">sink</th><th>desired</th><th>running</th><th>pending</th>` +
    `<th>msg/s</th><th>sched/s</th><th>lag p50</th><th>lag p99</th><th>ack p99</th><th>connected</th><th>errors</th>` +
    `<th class="l">load</th><th class="l">reason</th>${ro ? '' : '<th class="l">controls</th>'}</tr>`;
  setHtml($('fleets').tHead, head);
  const rows = page.rows.map((f) => {
    const x = f.figures || {};
    const conn = f.connections;
    const controls = ro ? '' : `<td class="l">` +
      `<button class="control" data-act="scale" data-fleet="${esc(f.name)}" data-count="${f.desired}">scale</button> ` +
      `<button class="control" data-act="set-load" data-fleet="${esc(f.name)}">load</button> ` +
      `<button class="control" data-act="delete" data-fleet="${esc(f.name)}">delete</button></td>`;
    return `<tr data-fleet="${esc(f.name)}" class="${f.name === view.chart ? 'sel' : ''}">` +
      `<td class="l"><a class="fleet" data-chart="${esc(f.name)}">${esc(f.name)}</a>${f.kind === 'device' ? ' (device)' : ''}</td>` +
      `<td class="l">${esc(f.sink)}</td><td class="desired">${f.desired}</td><td class="running">${f.running}</td><td>${f.pending}</td>` +
      `<td class="rate">${num(x.msgs_per_s)}</td><td>${num(x.scheduled_per_s)}</td>` +
      `<td>${us(x.tick_lag_us && x.tick_lag_us.p50)}</td><td>${us(x.tick_lag_us && x.tick_lag_us.p99)}</td>` +
      `<td>${us(x.ack_latency_us && x.ack_latency_us.p99)}</td>` +
      `<td>${conn ? conn.connected + (conn.connecting ? ' (+' + conn.connecting + ')' : '') : '-'}</td>` +
      `<td>${x.errors_total || 0}${x.saturated ? ' <span class="sat">SATURATED</span>' : ''}</td>` +
      `<td class="l">${esc(f.load || '')}</td><td class="reason">${esc(f.reason || '')}</td>${controls}</tr>`;
  }).join('');
  setHtml($('fleets').tBodies[0], rows || `<tr><td class="l" colspan="14">no fleets: deploy one with <code>pluribusctl deploy-fleet NAME --count N</code></td></tr>`);
  pager($('fleets-pager'), page, 'fpage');
}

function renderAgents(page) {
  const ro = readOnly();
  setHtml($('agents').tHead, `<tr><th class="l">agent</th><th class="l">id</th><th>alive</th><th>devices</th><th>capacity</th>` +
    `<th>msg/s</th><th>sched/s</th><th class="l">state</th><th class="l">labels</th><th class="l">version</th>${ro ? '' : '<th class="l">controls</th>'}</tr>`);
  const rows = page.rows.map((a) => {
    const labels = Object.entries(a.labels || {}).map(([k, v]) => k + '=' + v).join(',');
    const state = [a.saturated ? '<span class="sat">SATURATED</span>' : '', a.draining ? 'draining' : ''].filter(Boolean).join(' ');
    const controls = ro ? '' : `<td class="l"><button class="control" data-act="drain" data-agent="${esc(a.id)}" data-name="${esc(a.name)}" data-undo="${a.draining}">${a.draining ? 'undrain' : 'drain'}</button></td>`;
    return `<tr data-agent-id="${esc(a.id)}" class="${a.alive ? '' : 'dead'}"><td class="l agent-name">${esc(a.name)}</td><td class="l">${esc(a.id.slice(0, 8))}</td>` +
      `<td>${a.alive ? 'yes' : 'no'}</td><td>${a.devices}</td><td>${a.capacity ?? '-'}</td><td>${num(a.msgs_per_s)}</td><td>${num(a.scheduled_per_s)}</td>` +
      `<td class="l">${state}</td><td class="l">${esc(labels)}</td><td class="l">${esc(a.version)}</td>${controls}</tr>`;
  }).join('');
  setHtml($('agents').tBodies[0], rows || `<tr><td class="l" colspan="10">no agents: start one with <code>pluribus-agent</code></td></tr>`);
  pager($('agents-pager'), page, 'apage');
}

// Detached scenario runs (`scenario run --detach`), one page of them, most recent first,
// each with its checks.
function renderScenarios(s) {
  $('scenarios-note').textContent = s.note || (s.total ? `detached runs, most recent first (the last 50 at most):` : '');
  pager($('scenarios-pager'), s, 'spage');
  setHtml($('scenarios').tHead, `<tr><th class="l">scenario</th><th class="l">run</th><th class="l">state</th><th class="l">verdict</th>` +
    `<th>step</th><th class="l">current step</th><th class="l">agent</th><th class="l">checks</th></tr>`);
  const rows = s.runs.map((r) => {
    const checks = r.checks.map((c) =>
      `<tr class="check ${c.passed ? 'pass' : 'fail'}" data-check="${esc(c.name)}"><td class="l">${esc(c.name)}</td>` +
      `<td class="value">${esc(c.value)}</td><td class="l">${esc(c.threshold)}</td>` +
      `<td class="l verdict">${c.passed ? 'pass' : 'FAIL'}</td></tr>`).join('') +
      (r.checks_left_out ? `<tr><td class="l dim" colspan="4">${r.checks_left_out} more not shown</td></tr>` : '');
    const verdict = r.verdict ? esc(r.verdict) + (r.reason ? ': ' + esc(r.reason) : '') : '-';
    return `<tr data-run="${esc(r.id)}" data-scenario="${esc(r.name)}" class="run ${esc(r.verdict || r.state)}">` +
      `<td class="l scenario-name">${esc(r.name)}</td><td class="l">${esc(r.id)}</td><td class="l run-state">${esc(r.state)}</td>` +
      `<td class="l run-verdict">${verdict}</td><td class="run-step">${Math.min(r.step + 1, r.steps)}/${r.steps}</td>` +
      `<td class="l run-step-text">${esc(r.step_text || (r.state === 'done' ? '' : '-'))}</td><td class="l">${esc(r.holder || '-')}</td>` +
      `<td class="l">${checks ? '<table class="checks">' + checks + '</table>' : '<span class="dim">no checks yet</span>'}</td></tr>`;
  }).join('');
  setHtml($('scenarios').tBodies[0], rows || `<tr><td class="l" colspan="8">no detached runs: start one with <code>pluribusctl scenario run FILE --detach</code></td></tr>`);
}

// ---- events ------------------------------------------------------------------------------

function addEvents(list) {
  let added = false;
  for (const e of list) {
    if (e.seq <= lastSeq) continue;
    lastSeq = e.seq;
    events.push(e);
    added = true;
    if (!kinds.has(e.kind)) {
      kinds.add(e.kind);
      const o = document.createElement('option');
      o.value = o.textContent = e.kind;
      $('event-kind').appendChild(o);
    }
  }
  if (events.length > KEEP_EVENTS) events = events.slice(-KEEP_EVENTS);
  if (added) renderEvents();
}

function renderEvents() {
  const text = $('event-filter').value.trim().toLowerCase();
  const kind = $('event-kind').value;
  const shown = events.filter((e) => (!kind || e.kind === kind) && (!text || e.text.toLowerCase().includes(text)));
  const html = shown.slice(-300).reverse().map((e) => `<li class="${esc(e.kind)}" data-kind="${esc(e.kind)}">${esc(e.text)}</li>`).join('');
  setHtml($('events'), html);
  $('event-count').textContent = `${shown.length} of ${events.length}`;
}

// ---- device ------------------------------------------------------------------------------

let device = null;

async function inspect(id) {
  $('device-out').textContent = 'looking for ' + id + '…';
  const r = await fetch('api/device?id=' + encodeURIComponent(id));
  const d = await r.json();
  if (!r.ok) { device = null; $('device-out').className = 'dim'; $('device-out').textContent = d.error; return; }
  device = d;
  $('device-out').className = '';
  const row = (k, v, idAttr) => `<tr><th class="l">${k}</th><td class="l"${idAttr ? ` id="${idAttr}"` : ''}>${v}</td></tr>`;
  $('device-out').innerHTML = '<table>' +
    row('device', esc(d.device_id)) + row('fleet', esc(d.fleet) + ` (index ${d.index}, shard ${d.shard})`) +
    row('state', esc(d.state), 'device-state') + row('agent', esc(d.agent_name ? d.agent_name + ' (' + d.agent_id + ')' : '-'), 'device-agent') +
    row('sink', esc(d.sink) + (d.subject ? ' on ' + esc(d.subject) : '')) +
    row('seq', d.seq ?? '-', 'device-seq') +
    row('connection', esc(d.last_failure ? 'last failure: ' + d.last_failure : (d.state === 'running' ? 'no failure seen' : '-'))) +
    (d.note ? row('note', esc(d.note)) : '') + '</table>' +
    (d.telemetry ? '<h3>last telemetry</h3><pre id="device-telemetry">' + esc(JSON.stringify(d.telemetry, null, 1)) + '</pre>' : '') +
    (d.events.length ? '<h3>events about it</h3><pre>' + esc(d.events.join('\n')) + '</pre>' : '') +
    (readOnly() ? '' : `<button class="control" data-act="stop" data-device="${esc(d.device_id)}">stop this device</button>`);
}

// ---- controls ----------------------------------------------------------------------------

function ask(text, label, value) {
  const dlg = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-input-row').hidden = !label;
  $('confirm-label').textContent = label || '';
  $('confirm-input').value = value ?? '';
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === 'ok' ? $('confirm-input').value : null);
    dlg.returnValue = '';
    dlg.showModal();
    if (label) $('confirm-input').focus();
  });
}

async function post(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-pluribus-dashboard': '1' }, body: JSON.stringify(body) });
  const d = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (!r.ok) throw new Error(d.error || 'HTTP ' + r.status);
  return d;
}

async function control(body) {
  try {
    const d = await post('api/control', body);
    notice(d.message, false);
  } catch (e) {
    notice(e.message, true);
  }
}

async function onAction(b) {
  const act = b.dataset.act;
  if (act === 'scale') {
    const v = await ask(`Scale fleet ${b.dataset.fleet} (now ${b.dataset.count} devices) to how many devices?`, 'devices', b.dataset.count);
    if (v === null) return;
    const count = Number(v);
    if (!Number.isInteger(count) || count < 0) { notice(`'${v}' is not a number of devices`, true); return; }
    await control({ action: 'scale', fleet: b.dataset.fleet, count });
  } else if (act === 'set-load') {
    const v = await ask(`Set the load of fleet ${b.dataset.fleet}, with set-load's flags (e.g. --rate 500/s, --ramp 1000/60s, --clear):`, 'flags', '--rate 100/s');
    if (v === null) return;
    await control({ action: 'set-load', fleet: b.dataset.fleet, flags: v });
  } else if (act === 'delete') {
    if (await ask(`Delete fleet ${b.dataset.fleet}? Its devices stop.`) === null) return;
    await control({ action: 'delete', fleet: b.dataset.fleet });
  } else if (act === 'drain') {
    const undo = b.dataset.undo === 'true';
    const q = undo ? `Let agent ${b.dataset.name} take work again?` : `Drain agent ${b.dataset.name}? Its devices move to the other agents.`;
    if (await ask(q) === null) return;
    await control({ action: 'drain', agent: b.dataset.agent, undo });
  } else if (act === 'stop') {
    if (await ask(`Stop device ${b.dataset.device}?`) === null) return;
    await control({ action: 'stop', device: b.dataset.device });
  }
}

// ---- wiring ------------------------------------------------------------------------------

document.addEventListener('click', (e) => {
  const t = e.target.closest('button,a');
  if (!t) return;
  if (t.dataset.act) { e.preventDefault(); onAction(t); }
  else if (t.dataset.chart) { e.preventDefault(); openChart(t.dataset.chart); }
  else if (t.dataset.page) { view[t.dataset.page] = Number(t.dataset.to); connect(); }
});
$('close-chart').onclick = () => { view.chart = ''; $('fleet-charts-box').hidden = true; rendered = new WeakMap(); connect(); };
let filterTimer = null;
$('fleet-filter').oninput = () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { view.q = $('fleet-filter').value; view.fpage = 0; connect(); }, 300);
};
$('event-filter').oninput = renderEvents;
$('event-kind').onchange = renderEvents;
$('device-form').onsubmit = (e) => { e.preventDefault(); const id = $('device-id').value.trim(); if (id) inspect(id); };
$('command-form').onsubmit = async (e) => {
  e.preventDefault();
  const id = $('device-id').value.trim();
  if (!id) { $('command-out').textContent = 'search a device first'; return; }
  let payload;
  try { payload = JSON.parse($('command-payload').value); } catch (err) { $('command-out').textContent = 'not JSON: ' + err.message; return; }
  $('command-out').textContent = 'sending…';
  try {
    const d = await post('api/device/command', { id, payload });
    $('command-out').textContent = JSON.stringify(d.reply, null, 1);
  } catch (err) { $('command-out').textContent = err.message; }
};
$('report-window').onchange = () => {
  const w = $('report-window').value;
  $('report-link').href = 'report?window=' + w;
  $('report-json').href = 'report.json?window=' + w;
  $('report-csv').href = 'report.csv?window=' + w;
};

(async () => {
  try { cluster = await (await fetch('api/history')).json(); } catch (e) { cluster = []; }
  connect();
})();
