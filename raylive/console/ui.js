// Small DOM helpers. Every text from the API or a stream goes in as a text node (never as HTML),
// so a name or message with markup in it shows as the characters it is.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
  return `${mm}:${String(ss).padStart(2, '0')}`;
}

export const fmtNum = (v, digits = 0, unit = '') =>
  v === null || v === undefined || !isFinite(v) ? '–' : `${Number(v).toFixed(digits)}${unit}`;

export const fmtTime = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : '–');

// A message for a few seconds in the corner (screen readers hear it: role=status).
export function toast(text, kind = 'info') {
  const el = document.getElementById('toast');
  el.className = kind;
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ''; el.className = ''; }, 6000);
}

// A modal question. `action` runs on OK; if it throws, its message stays in the dialog and the
// dialog stays open, so a failed action always shows the API's error text.
export function dialog({ title, body = [], ok = 'OK', cancel = 'Cancel', action = async () => {} }) {
  const dlg = document.getElementById('dialog');
  const okButton = document.getElementById('dialog-ok'), cancelButton = document.getElementById('dialog-cancel');
  const error = document.getElementById('dialog-error');
  document.getElementById('dialog-title').textContent = title;
  document.getElementById('dialog-body').replaceChildren(...[body].flat());
  error.textContent = '';
  okButton.textContent = ok;
  okButton.disabled = false;
  cancelButton.hidden = !cancel;
  cancelButton.textContent = cancel || '';
  return new Promise((resolve) => {
    const done = (value) => {
      okButton.onclick = cancelButton.onclick = dlg.oncancel = null;
      dlg.close();
      resolve(value);
    };
    okButton.onclick = async (e) => {
      e.preventDefault();
      okButton.disabled = true;
      error.textContent = '';
      try {
        done(await action() ?? true);
      } catch (err) {
        error.textContent = err.message;
        okButton.disabled = false;
      }
    };
    cancelButton.onclick = () => done(null);
    dlg.oncancel = (e) => { e.preventDefault(); done(null); };
    dlg.showModal();
    okButton.focus();
  });
}

// A read-only field with a copy button (clipboard where the page may use it, else the text selected).
export function copyField(label, value, { secret = false } = {}) {
  const input = h('input', { readonly: true, value, 'aria-label': label, class: secret ? 'secret' : '' });
  const copy = h('button', {
    type: 'button',
    onclick: async () => {
      input.select();
      try { await navigator.clipboard.writeText(value); toast(`${label} copied`); } catch { document.execCommand('copy'); }
    },
  }, 'Copy');
  return h('div', { class: 'copy-field' }, h('label', {}, label, input), copy);
}

// A time-series chart (uPlot): `series` names what each column is; push points as they come.
export class Chart {
  constructor(parent, title, series, { width = 480, height = 160, keep = 3600 } = {}) {
    this.keep = keep;
    this.data = [[], ...series.map(() => [])];
    this.wrap = h('figure', { class: 'chart' }, h('figcaption', {}, title));
    parent.append(this.wrap);
    const stroke = ['#2f7ed8', '#d8552f', '#3aa655', '#8c5fd6'];
    this.plot = new uPlot({
      width, height,
      series: [{}, ...series.map((label, i) => ({ label, stroke: stroke[i % stroke.length], width: 1.5, spanGaps: false }))],
      axes: [{}, { size: 50 }],
      legend: { show: false },  // the caption names the unit
    }, this.data, this.wrap);
    this.resize = () => this.plot.setSize({ width: Math.max(240, this.wrap.clientWidth), height });
    new ResizeObserver(this.resize).observe(this.wrap);
  }

  set(points) {  // points: [[t, v1, v2...], ...] sorted by t
    this.data = this.data.map((_, i) => points.map((p) => p[i] ?? null));
    this.plot.setData(this.data);
  }

  push(point) {
    const t = point[0], last = this.data[0].at(-1);
    if (last !== undefined && t <= last) return;
    this.data.forEach((col, i) => col.push(point[i] ?? null));
    const cut = this.data[0].findIndex((x) => x >= t - this.keep);
    if (cut > 0) this.data = this.data.map((col) => col.slice(cut));
    this.plot.setData(this.data);
  }
}

// A sortable table: columns [{key, label, value(row) -> sortable, cell(row) -> node|text, class}].
export class Table {
  constructor(columns, { sortKey, desc = false, empty = 'Nothing yet.', caption, rowKey = (r) => r.name ?? r.stream ?? r.address } = {}) {
    this.columns = columns;
    this.rowKey = rowKey;
    this.sortKey = sortKey || columns[0].key;
    this.desc = desc;
    this.empty = empty;
    this.rows = [];
    this.body = h('tbody');
    this.head = h('tr');
    this.el = h('table', { class: 'grid' }, caption ? h('caption', {}, caption) : null, h('thead', {}, this.head), this.body);
    this.renderHead();
  }

  renderHead() {
    this.head.replaceChildren(...this.columns.map((c) => {
      const sorted = c.key === this.sortKey;
      const th = h('th', { scope: 'col', class: c.class, 'aria-sort': sorted ? (this.desc ? 'descending' : 'ascending') : 'none' });
      if (c.value === undefined) th.append(c.label);
      else th.append(h('button', { type: 'button', class: 'sort', onclick: () => this.sortBy(c.key) }, c.label, sorted ? (this.desc ? ' ▼' : ' ▲') : ''));
      return th;
    }));
  }

  sortBy(key) {
    this.desc = key === this.sortKey ? !this.desc : false;
    this.sortKey = key;
    this.renderHead();
    this.render(this.rows);
  }

  render(rows) {
    this.rows = rows;
    const col = this.columns.find((c) => c.key === this.sortKey);
    const sorted = col && col.value ? [...rows].sort((a, b) => {
      const x = col.value(a), y = col.value(b);
      const r = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return this.desc ? -r : r;
    }) : rows;
    if (!sorted.length) {
      this.body.replaceChildren(h('tr', {}, h('td', { colspan: this.columns.length, class: 'muted' }, this.empty)));
      return;
    }
    // Rows are rebuilt every update: keep keyboard focus on the same row and column.
    const active = this.body.contains(document.activeElement) ? document.activeElement.closest('td') : null;
    const focus = active && [active.parentElement.dataset.key, active.cellIndex];
    this.body.replaceChildren(...sorted.map((row) => h('tr', { 'data-key': this.rowKey(row) },
      this.columns.map((c) => h('td', { class: c.class }, c.cell ? c.cell(row) : String(c.value(row) ?? '–'))))));
    if (focus) {
      const tr = [...this.body.rows].find((r) => r.dataset.key === focus[0]);
      const target = tr && tr.cells[focus[1]] && tr.cells[focus[1]].querySelector('a, button, input');
      if (target) target.focus({ preventScroll: true });
    }
  }
}
