// InfraSight console: a single page over the console's JSON API (ConsoleAPI.swift).
// Every view's state lives in the URL (#/page?range=1h&node=...), so a view can be shared.
'use strict';

const FILTERS = ['node', 'container', 'user', 'comm'];
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777', '#4b5563', '#65a30d'];
const pages = {};
let catalog = {};
let refreshTimer = null;
let statusTimer = null;
let previousStatus = null;
let generation = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '') || 'overview';
  const [page, query] = hash.split('?');
  return { page: pages[page] ? page : 'overview', params: Object.fromEntries(new URLSearchParams(query || '')) };
}

function go(page, params) {
  const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined && v !== null));
  const query = new URLSearchParams(clean).toString();
  location.hash = '#/' + page + (query ? '?' + query : '');
}

function update(changes) {
  const { page, params } = route();
  go(page, Object.assign({}, params, changes));
}

const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };
function rangeSeconds(range) {
  const m = /^(\d+)([smhd])$/.exec(range || '1h');
  return m ? Number(m[1]) * UNITS[m[2]] : 3600;
}

// The catalog's common parameters from the URL: the time range and the filters.
function common(params) {
  const now = Date.now() / 1000;
  const out = {};
  if (params.from && params.to) { out.from = params.from; out.to = params.to; }
  else { out.from = (now - rangeSeconds(params.range)).toFixed(3); out.to = (now + 5).toFixed(3); }
  for (const f of FILTERS) if (params[f]) out[f] = params[f];
  const span = Number(out.to) - Number(out.from);
  out.interval_s = String(Math.max(1, Math.round(span / 120)));
  return out;
}

// Runs a catalog query with the page's parameters plus `extra`; only the parameters the
// query declares are sent.
async function query(name, params, extra) {
  const entry = catalog[name];
  if (!entry) throw new Error('no query ' + name + ' in the catalog');
  const all = Object.assign(common(params), extra || {});
  const wanted = new URLSearchParams();
  for (const p of entry.parameters) if (all[p.name] !== undefined) wanted.set(p.name, all[p.name]);
  const response = await fetch('/api/query/' + name + '?' + wanted.toString());
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function sql(text) {
  const response = await fetch('/api/sql', { method: 'POST', headers: { 'Content-Type': 'text/plain', 'X-InfraSight': '1' }, body: text });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function panel(id, title, shows, wide) {
  const body = el('div', { class: 'body' }, el('p', { class: 'empty' }, 'loading…'));
  const section = el('section', { class: 'panel' + (wide ? ' wide' : ''), id }, el('h2', {}, title), shows ? el('p', { class: 'shows' }, shows) : null, body);
  document.getElementById('main').append(section);
  return body;
}

function fill(body, ...content) { body.replaceChildren(...content); }

function showError(body, error) { fill(body, el('p', { class: 'error' }, String(error.message || error))); }

const NUMERIC = /^(U?Int|Float|Decimal)/;
const LONG = 240;
function cell(value, type, name) {
  const text = Array.isArray(value) ? value.join(', ') : (value === null ? '' : String(value));
  const classes = [];
  if (NUMERIC.test(type || '')) classes.push('num');
  if (/^DateTime/.test(type || '')) classes.push('time');
  if (name === 'return_code' && Number(value) < 0) classes.push('failed');
  // Long text (command lines) is cut; the whole of it is the cell's tooltip.
  if (text.length > 48) classes.push('long');
  if (text.length > LONG) return el('td', { class: classes.join(' '), title: text }, text.slice(0, LONG) + ' …');
  return el('td', { class: classes.join(' ') }, text);
}

// A result table; `onPick(row)` makes rows clickable; `mark(row)` marks one selected.
function table(result, options) {
  const opts = options || {};
  if (!result.data.length) return el('p', { class: 'empty' }, 'no rows');
  // Start times name a process with its pid (docs/process-identity.md): they make rows
  // clickable, but are not for reading.
  const hidden = opts.hide || ['start_time_ns', 'parent_start_time_ns'];
  const columns = result.meta.filter(m => !hidden.includes(m.name));
  const head = el('tr', {}, columns.map(c => el('th', { class: NUMERIC.test(c.type) ? 'num' : '' }, c.name)));
  const rows = result.data.map(row => {
    const tr = el('tr', {}, columns.map(c => cell(row[c.name], c.type, c.name)));
    if (opts.onPick) { tr.classList.add('clickable'); tr.addEventListener('click', () => opts.onPick(row)); }
    if (opts.mark && opts.mark(row)) tr.classList.add('selected');
    if (opts.rowAttrs) for (const [k, v] of Object.entries(opts.rowAttrs(row))) tr.setAttribute(k, v);
    return tr;
  });
  return el('table', { class: 'grid' }, el('thead', {}, head), el('tbody', {}, rows));
}

// A line chart of `y` over `x` (a DateTime column), one line per value of `series`.
// Buckets `step` seconds apart with no row are drawn as 0: every chart here counts or sums.
function chart(result, x, y, series, step) {
  if (!result.data.length) return el('p', { class: 'empty' }, 'no data in this range');
  const groups = new Map();
  let minT = Infinity, maxT = -Infinity, maxY = 0;
  for (const row of result.data) {
    const t = Date.parse(String(row[x]).replace(' ', 'T') + 'Z');
    const v = Number(row[y]);
    const key = series ? String(row[series]) : y;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push([t, v]);
    minT = Math.min(minT, t); maxT = Math.max(maxT, t); maxY = Math.max(maxY, v);
  }
  const stepMs = (step || 0) * 1000;
  if (stepMs > 0 && (maxT - minT) / stepMs <= 2000) {
    for (const points of groups.values()) {
      const seen = new Set(points.map(p => p[0]));
      for (let t = minT; t <= maxT; t += stepMs) if (!seen.has(t)) points.push([t, 0]);
    }
  }
  const W = 800, H = 200, L = 50, B = 20;
  const sx = t => L + (maxT === minT ? (W - L) / 2 : (t - minT) / (maxT - minT) * (W - L - 10));
  const sy = v => H - B - (maxY ? v / maxY * (H - B - 10) : 0);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const line = (x1, y1, x2, y2, color) => {
    const l = document.createElementNS(svg.namespaceURI, 'line');
    Object.entries({ x1, y1, x2, y2, stroke: color, 'stroke-width': 1 }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const text = (x0, y0, s, anchor) => {
    const t = document.createElementNS(svg.namespaceURI, 'text');
    Object.entries({ x: x0, y: y0, 'font-size': 11, fill: '#667085', 'text-anchor': anchor || 'start' }).forEach(([k, v]) => t.setAttribute(k, v));
    t.textContent = s;
    svg.append(t);
  };
  line(L, H - B, W, H - B, '#d0d5dd');
  line(L, 10, L, H - B, '#d0d5dd');
  text(L - 4, 16, formatNumber(maxY), 'end');
  text(L - 4, H - B, '0', 'end');
  text(L, H - 4, new Date(minT).toISOString().slice(11, 19));
  text(W, H - 4, new Date(maxT).toISOString().slice(11, 19), 'end');
  const legend = el('div', { class: 'legend' });
  let i = 0;
  for (const [key, points] of groups) {
    const color = PALETTE[i++ % PALETTE.length];
    points.sort((a, b) => a[0] - b[0]);
    const path = document.createElementNS(svg.namespaceURI, points.length > 1 ? 'polyline' : 'circle');
    if (points.length > 1) {
      path.setAttribute('points', points.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' '));
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', color);
      path.setAttribute('stroke-width', 2);
    } else {
      path.setAttribute('cx', sx(points[0][0])); path.setAttribute('cy', sy(points[0][1])); path.setAttribute('r', 3); path.setAttribute('fill', color);
    }
    svg.append(path);
    legend.append(el('span', {}, el('i', {}), key));
    legend.lastChild.firstChild.style.background = color;
  }
  return el('div', { class: 'chart' }, svg, legend);
}

function formatNumber(v) {
  if (v >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  return String(Math.round(v * 100) / 100);
}

// A panel showing one catalog query as a table (or chart when `chartSpec` is given).
async function queryPanel(name, params, options) {
  const opts = options || {};
  const entry = catalog[name] || { title: name, shows: '' };
  const body = panel('panel-' + name, entry.title, entry.shows, opts.wide);
  try {
    const result = await query(name, params, opts.extra);
    const names = result.meta.map(m => m.name);
    // A row naming one process opens it in the process explorer.
    if (!opts.onPick && ['node', 'pid', 'start_time_ns'].every(n => names.includes(n))) {
      opts.onPick = row => go('processes', Object.assign(keptParams(params), { sel: [row.node, row.pid, row.start_time_ns].join('|') }));
    }
    fill(body, opts.chart ? chart(result, ...opts.chart, Number(common(params).interval_s)) : table(result, opts));
    return result;
  } catch (error) { showError(body, error); return null; }
}

// Overview: this process's live rates and drops, then what the store holds.
pages.overview = async (params) => {
  const tiles = panel('live', 'Live', 'Events read from the kernel and rows stored per second by this process, and every drop counted since it started.', true);
  tiles.id = 'live-tiles';
  renderStatus(tiles);
  statusTimer = setInterval(() => renderStatus(tiles), 2000);
  await Promise.all([
    queryPanel('events_per_second', params, { wide: true, chart: ['t', 'events_per_second', 'table'] }),
    queryPanel('alerts', params, { wide: true, extra: { limit: '20' }, hide: ['start_time_ns', 'tags', 'source_table', 'container_image'] }),
    queryPanel('event_totals', params),
    queryPanel('nodes', params),
  ]);
};

async function renderStatus(body) {
  let status;
  try {
    const response = await fetch('/api/status');
    status = await response.json();
    if (!response.ok) throw new Error(status.error);
  } catch (error) { showError(body, error); return; }
  const sum = (names) => status.counters.filter(c => names.includes(c.name)).reduce((a, c) => a + c.value, 0);
  const received = sum(['infrasight_events_received_total']);
  const stored = sum(['infrasight_rows_stored_total', 'infrasight_server_rows_stored_total']);
  const drops = sum(['infrasight_kernel_drops_total', 'infrasight_decode_errors_total', 'infrasight_queue_drops_total', 'infrasight_store_drops_total']);
  const now = status.uptime_seconds;
  let receivedRate = null, storedRate = null;
  if (previousStatus && now > previousStatus.now) {
    receivedRate = (received - previousStatus.received) / (now - previousStatus.now);
    storedRate = (stored - previousStatus.stored) / (now - previousStatus.now);
  }
  previousStatus = { now, received, stored };
  const tile = (id, label, value, bad) => el('div', { class: 'tile' + (bad ? ' bad' : ''), id }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label));
  const rate = v => (v === null ? '…' : formatNumber(v) + '/s');
  const perPlugin = new Map();
  for (const c of status.counters) {
    if (!c.labels.plugin) continue;
    const p = perPlugin.get(c.labels.plugin) || { received: 0, drops: 0, stored: 0 };
    if (c.name === 'infrasight_events_received_total') p.received += c.value;
    if (['infrasight_kernel_drops_total', 'infrasight_decode_errors_total', 'infrasight_queue_drops_total', 'infrasight_store_drops_total'].includes(c.name)) p.drops += c.value;
    if (c.name === 'infrasight_rows_stored_total') p.stored += c.value;
    perPlugin.set(c.labels.plugin, p);
  }
  const rows = [...perPlugin].map(([name, p]) => ({ plugin: name, received: p.received, stored: p.stored, dropped: p.drops }));
  const meta = [{ name: 'plugin', type: 'String' }, { name: 'received', type: 'UInt64' }, { name: 'stored', type: 'UInt64' }, { name: 'dropped', type: 'UInt64' }];
  fill(body,
    el('div', { class: 'tiles' },
      tile('rate-received', 'events received', rate(receivedRate)),
      tile('rate-stored', 'rows stored', rate(storedRate)),
      tile('total-stored', 'rows stored since start', formatNumber(stored)),
      tile('total-drops', 'dropped (kernel, decode, queue, store)', formatNumber(drops), drops > 0)),
    rows.length ? table({ meta, data: rows }) : el('p', { class: 'empty' }, 'this process traces nothing itself (a server: see the store below)'),
    el('p', { class: 'shows' }, 'store: ' + status.store));
  document.getElementById('status').textContent = 'up ' + Math.round(now) + ' s · ' + status.store;
}

// Process explorer: search launches, pick one, see its tree and what it did.
pages.processes = async (params) => {
  const box = panel('process-search', 'Find a process', 'Search programs started (command line, path or name); pick one to see its tree and timeline.', true);
  const input = el('input', { id: 'search', type: 'search', placeholder: 'e.g. curl, /tmp/, python', value: params.q || '' });
  const form = el('form', { class: 'search', onsubmit: (e) => { e.preventDefault(); update({ q: input.value, sel: '' }); } }, input, el('button', { type: 'submit', id: 'search-go' }, 'Search'));
  const results = el('div', { id: 'search-results' }, el('p', { class: 'empty' }, 'loading…'));
  fill(box, form, results);
  const selected = params.sel ? params.sel.split('|') : null;
  try {
    const launches = await query('recent_execs', params, { search: params.q || '', limit: '200' });
    fill(results, table(launches, {
      hide: ['start_time_ns', 'parent_start_time_ns', 'container_image'],
      onPick: row => update({ sel: [row.node, row.pid, row.start_time_ns].join('|') }),
      mark: row => selected && row.pid == selected[1] && row.start_time_ns == selected[2],
      rowAttrs: row => ({ 'data-pid': row.pid, 'data-comm': row.comm, class: 'clickable proc' }),
    }));
  } catch (error) { showError(results, error); }
  if (!selected) return;
  const [node, pid, start] = selected;
  const extra = { node, pid, start_time_ns: start, limit: '2000' };
  const treeBody = panel('process-tree', 'Process tree', 'Its ancestors and descendants on ' + node + '; click one to follow it.');
  const timelineBody = panel('process-timeline', 'What it did', 'Programs, files, connections, ptrace, mounts and mappings, in the order the kernel saw them.');
  const [tree, timeline] = await Promise.allSettled([query('process_tree', params, extra), query('process_timeline', params, extra)]);
  if (tree.status === 'fulfilled') fill(treeBody, renderTree(tree.value, node)); else showError(treeBody, tree.reason);
  if (timeline.status === 'fulfilled') fill(timelineBody, table(timeline.value, { rowAttrs: row => ({ 'data-source': row.source }) })); else showError(timelineBody, timeline.reason);
};

function renderTree(result, node) {
  if (!result.data.length) return el('p', { class: 'empty' }, 'no rows for this process in the range');
  const key = (pid, start) => pid + ':' + start;
  const byKey = new Map(result.data.map(r => [key(r.pid, r.start_time_ns), Object.assign({ children: [] }, r)]));
  let root = null;
  for (const r of byKey.values()) {
    const parent = byKey.get(key(r.ppid, r.parent_start_time_ns));
    if (parent && parent !== r) parent.children.push(r); else if (!root || r.depth < root.depth) root = r;
  }
  const item = (r) => {
    const label = el('span', { 'data-pid': r.pid, 'data-comm': r.comm, onclick: () => update({ sel: [node, r.pid, r.start_time_ns].join('|') }) },
      r.comm + ' ', el('span', { class: 'meta' }, 'pid ' + r.pid + (r.argv ? ' · ' + r.argv : '') + (r.user ? ' · ' + r.user : '')));
    const li = el('li', { class: 'node' + (r.depth === 0 ? ' self' : ''), 'data-depth': r.depth }, label);
    if (r.children.length) li.append(el('ul', {}, r.children.sort((a, b) => String(a.first_seen).localeCompare(String(b.first_seen))).map(item)));
    return li;
  };
  return el('ul', { class: 'tree', id: 'tree' }, item(root));
}

pages.files = async (params) => {
  const search = params.fq || '';
  await Promise.all([
    queryPanel('sensitive_files', params),
    queryPanel('chmods', params),
    queryPanel('failed_opens', params),
    queryPanel('file_activity', params, { extra: { search, limit: '300' } }),
  ]);
};

pages.network = async (params) => {
  await Promise.all([
    queryPanel('connections_over_time', params, { wide: true, chart: ['t', 'outbound', null] }),
    queryPanel('top_destinations', params),
    queryPanel('failed_connects', params),
    queryPanel('connections', params, { wide: true, extra: { limit: '300' } }),
  ]);
};

pages.containers = async (params) => {
  await Promise.all([
    queryPanel('containers', params, { wide: true, onPick: row => update({ container: row.container_id }) }),
    queryPanel('container_activity', params, { chart: ['t', 'events', 'container'] }),
    queryPanel('container_resources', params, { chart: ['t', 'cpu_seconds', 'container'] }),
    queryPanel('top_processes_by_cpu', params, { wide: true, extra: { limit: '50' } }),
  ]);
};

pages.security = async (params) => {
  await Promise.all([
    queryPanel('alerts', params, { wide: true, extra: { severity: params.severity || '' } }),
    queryPanel('alerts_over_time', params, { wide: true, chart: ['t', 'alerts', 'rule'] }),
    queryPanel('ptrace_attaches', params),
    queryPanel('mounts', params),
    queryPanel('wx_mappings', params),
    queryPanel('sensitive_files', params),
  ]);
};

// A read-only SQL box: the server checks the statement and runs it with readonly = 1.
pages.sql = async (params) => {
  const body = panel('sql', 'SQL', 'One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) on the store, run with ClickHouse readonly = 1.', true);
  const text = el('textarea', { id: 'sql-text', spellcheck: 'false' });
  text.value = params.sql || 'SELECT event_type, count() FROM audit.tracing_events GROUP BY event_type';
  const errorBox = el('div', { id: 'sql-error', class: 'error' });
  const out = el('div', { id: 'sql-result' });
  const run = el('button', { id: 'sql-run', type: 'button' }, 'Run');
  const execute = async () => {
    errorBox.textContent = '';
    out.replaceChildren(el('p', { class: 'empty' }, 'running…'));
    try {
      const result = await sql(text.value);
      out.replaceChildren(table(result), el('p', { class: 'shows' }, result.rows + ' rows, ' + (result.statistics ? result.statistics.elapsed.toFixed(3) + ' s' : '')));
    } catch (error) { out.replaceChildren(); errorBox.textContent = String(error.message || error); }
  };
  run.addEventListener('click', execute);
  fill(body, text, el('div', {}, run), errorBox, out);
  // A shared link's statement runs on opening it.
  if (params.sql) await execute();
};

// The parameters every page shares (range and filters), for links between pages.
function keptParams(params) {
  return Object.fromEntries(Object.entries(params).filter(([k]) => ['range', 'from', 'to', 'live', ...FILTERS].includes(k)));
}

async function render() {
  const mine = ++generation;
  clearInterval(statusTimer); statusTimer = null;
  clearTimeout(refreshTimer); refreshTimer = null;
  const { page, params } = route();
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
    const query = new URLSearchParams(keptParams(params)).toString();
    a.href = '#/' + a.dataset.page + (query ? '?' + query : '');
  }
  const form = document.getElementById('filters');
  form.range.value = params.range || '1h';
  for (const f of FILTERS) form[f].value = params[f] || '';
  form.live.checked = params.live === '1';
  document.getElementById('main').replaceChildren();
  document.body.dataset.page = page;
  document.body.dataset.loaded = '';
  await pages[page](params);
  if (mine !== generation) return;
  document.body.dataset.loaded = '1';
  // Milliseconds from navigation to this page's data on screen (the benchmark reads it).
  if (!document.body.dataset.firstLoadMs) document.body.dataset.firstLoadMs = String(Math.round(performance.now()));
  if (params.live === '1' && page !== 'sql') refreshTimer = setTimeout(render, 5000);
}

async function loadNodes() {
  try {
    const result = await query('nodes', { range: '7d' });
    const select = document.getElementById('f-node');
    for (const row of result.data) select.append(el('option', { value: row.node }, row.node));
    select.value = route().params.node || '';
  } catch (error) { document.getElementById('status').textContent = 'nodes: ' + error.message; }
}

async function start() {
  const response = await fetch('/api/catalog');
  const list = await response.json();
  catalog = Object.fromEntries(list.map(q => [q.name, q]));
  const form = document.getElementById('filters');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const changes = { range: form.range.value, from: '', to: '', live: form.live.checked ? '1' : '' };
    for (const f of FILTERS) changes[f] = form[f].value.trim();
    update(changes);
  });
  form.live.addEventListener('change', () => form.requestSubmit());
  form.range.addEventListener('change', () => form.requestSubmit());
  form.node.addEventListener('change', () => form.requestSubmit());
  window.addEventListener('hashchange', render);
  await loadNodes();
  await render();
}

start();
