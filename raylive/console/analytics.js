// Analytics: top streams by watch time, a viewer timeline and rendition mix for any period, and
// read-only SQL (the analytics scope) with a results table and CSV download.

import { get, post } from './api.js';
import { Chart, Table, fmtDuration, fmtNum, h } from './ui.js';

const localInput = (unix) => {
  const d = new Date(unix * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export function analyticsView(main, ctx) {
  // Top streams
  const period = h('select', { 'aria-label': 'Period' }, ['1h', '24h', '7d', '30d'].map((p) => h('option', { value: p, selected: p === '24h' }, p)));
  const top = new Table([
    { key: 'stream', label: 'Stream', value: (r) => r.stream, cell: (r) => h('a', { href: `#/stream/${encodeURIComponent(r.stream)}` }, r.stream) },
    { key: 'watch', label: 'Watch time', value: (r) => r.watch_time_s, cell: (r) => fmtDuration(r.watch_time_s), class: 'num' },
    { key: 'sessions', label: 'Sessions', value: (r) => r.sessions, class: 'num' },
  ], { sortKey: 'watch', desc: true, empty: 'No viewers in this period.' });
  const topError = h('p', { class: 'error', role: 'alert' });
  const loadTop = async () => {
    try { top.render(await get(`/api/v1/analytics/top?period=${period.value}&limit=20`)); topError.textContent = ''; }
    catch (e) { topError.textContent = e.message; }
  };
  period.addEventListener('change', loadTop);

  // Viewer timeline and rendition mix of one stream
  const now = Date.now() / 1000;
  const stream = h('select', { 'aria-label': 'Stream' });
  const from = h('input', { type: 'datetime-local', value: localInput(now - 3600), 'aria-label': 'From' });
  const to = h('input', { type: 'datetime-local', value: localInput(now), 'aria-label': 'To' });
  const summary = h('p', { class: 'muted' });
  const mix = h('ul', { class: 'plain bars' });
  const timelineError = h('p', { class: 'error', role: 'alert' });
  const chartBox = h('div');
  const chart = new Chart(chartBox, 'Concurrent viewers', ['viewers'], { keep: Infinity });
  const loadTimeline = async () => {
    const a = new Date(from.value).getTime() / 1000, b = new Date(to.value).getTime() / 1000;
    if (!stream.value) return;
    if (!(a < b)) { timelineError.textContent = '“From” must be before “To”.'; return; }
    const step = Math.max(10, Math.ceil((b - a) / 500 / 10) * 10);  // at most ≈ 500 points
    try {
      const r = await get(`/api/v1/streams/${encodeURIComponent(stream.value)}/analytics?from=${Math.floor(a)}&to=${Math.ceil(b)}&step=${step}`);
      timelineError.textContent = '';
      chart.set(r.viewers.map((p) => [p.t, p.viewers]));
      summary.textContent = `${r.unique_viewers} unique viewers, peak ${r.peak_viewers}, watch time ${fmtDuration(r.watch_time_s)} (one point per ${step} s)`;
      const shares = Object.entries(r.renditions).sort((x, y) => y[1] - x[1]);
      mix.replaceChildren(...(shares.length ? shares.map(([name, share]) => h('li', {},
        h('span', { class: 'bar-label' }, `${name} ${fmtNum(share * 100, 0, ' %')}`),
        h('meter', { min: 0, max: 1, value: share, 'aria-label': `${name} share` }))) : [h('li', { class: 'muted' }, 'No video heartbeats in this period.')]));
    } catch (e) { timelineError.textContent = e.message; }
  };
  const loadStreams = async () => {
    const names = (await get('/api/v1/streams')).map((s) => s.name);
    stream.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
    loadTimeline();
  };
  for (const el of [stream, from, to]) el.addEventListener('change', loadTimeline);

  const sections = [
    h('h1', {}, 'Analytics'),
    h('section', { class: 'card' }, h('div', { class: 'bar' }, h('h2', {}, 'Top streams by watch time'), period), topError, h('div', { class: 'scroll' }, top.el)),
    h('section', { class: 'card' }, h('h2', {}, 'Viewers of a stream'),
      h('div', { class: 'bar filters' }, stream, h('label', {}, 'From ', from), h('label', {}, 'To ', to)),
      timelineError, summary, chartBox, h('h3', {}, 'Rendition mix'), mix),
  ];
  if (ctx.scopes.includes('analytics')) sections.push(sqlBox());
  else sections.push(h('p', { class: 'muted' }, 'SQL needs a token with the analytics scope.'));
  main.replaceChildren(...sections);
  loadTop();
  loadStreams().catch((e) => { timelineError.textContent = e.message; });
  return () => {};
}

function sqlBox() {
  const sql = h('textarea', { rows: 5, spellcheck: false, 'aria-label': 'SQL query' },
    'SELECT stream, rendition, uniqExact(sid) AS viewers\nFROM viewer_events\nWHERE ts > now() - INTERVAL 1 HOUR\nGROUP BY stream, rendition\nORDER BY viewers DESC');
  const out = h('div', { class: 'scroll' });
  const error = h('p', { class: 'error', role: 'alert' });
  const download = h('a', { class: 'button', hidden: true, download: 'raylive-query.csv' }, 'Download CSV');
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const submit = async (e) => {
    e.preventDefault();
    run.disabled = true;
    error.textContent = '';
    try {
      const r = await post('/api/v1/analytics/sql', { sql: sql.value });
      out.replaceChildren(h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, r.columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, r.rows.map((row) => h('tr', {}, row.map((v) => h('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))))))),
        h('p', { class: 'muted' }, `${r.rows.length} rows`));
      if (download.href) URL.revokeObjectURL(download.href);
      download.href = URL.createObjectURL(new Blob([toCsv(r.columns, r.rows)], { type: 'text/csv' }));
      download.hidden = false;
    } catch (err) {
      error.textContent = err.message;
      download.hidden = true;
    } finally {
      run.disabled = false;
    }
  };
  return h('section', { class: 'card' }, h('h2', {}, 'SQL (read-only)'),
    h('p', { class: 'muted' }, 'SELECT over viewer_events, ingest_health, stream_sessions and processor_events.'),
    h('form', { onsubmit: submit }, sql, h('div', { class: 'bar' }, run, download)), error, out);
}

export function toCsv(columns, rows) {
  const cell = (v) => {
    const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    // Quote when needed, and defuse spreadsheet formulas (a stream's text could start with =).
    const safe = typeof v === 'string' && /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
    return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
  };
  return [columns, ...rows].map((r) => r.map(cell).join(',')).join('\r\n') + '\r\n';
}
