// Streams: every stream with its live state, pushed once a second over the WebSocket; new streams
// appear and ended ones change state without a reload.

import { get, post, subscribe } from './api.js';
import { Table, copyField, dialog, fmtDuration, fmtNum, h } from './ui.js';
import { thumbnailUrl } from './playback.js';

export const LIVE = new Set(['live', 'reconnecting']);

export function stateBadge(state) {
  return h('span', { class: `badge state-${state}` }, state || '–');
}

export function streamsView(main, ctx) {
  const streams = new Map();  // name -> StreamInfo, updated by pushes
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter streams by name' });
  const stateFilter = h('select', { 'aria-label': 'Filter by state' },
    h('option', { value: '' }, 'Any state'), ['live', 'reconnecting', 'idle', 'ended'].map((s) => h('option', { value: s }, s)));
  const status = h('span', { class: 'muted', id: 'push-state' });
  const thumbs = new Map();  // name -> <img>, kept across renders so a refresh does not flicker

  const thumb = (s) => {
    if (!LIVE.has(s.state)) return h('span', { class: 'thumb none', 'aria-hidden': 'true' });
    let img = thumbs.get(s.name);
    if (!img) {
      img = h('img', { class: 'thumb', alt: `latest frame of ${s.name}`, loading: 'lazy', width: 128, height: 72 });
      img.addEventListener('error', () => img.classList.add('none'));
      img.addEventListener('load', () => img.classList.remove('none'));
      thumbs.set(s.name, img);
    }
    return img;
  };
  const table = new Table([
    { key: 'thumb', label: '', class: 'col-thumb', cell: thumb },
    { key: 'name', label: 'Name', value: (s) => s.name, cell: (s) => h('a', { href: `#/stream/${encodeURIComponent(s.name)}` }, s.name) },
    { key: 'state', label: 'State', value: (s) => s.state, cell: (s) => stateBadge(s.state) },
    { key: 'viewers', label: 'Viewers', value: (s) => s.viewers ?? 0, class: 'num' },
    { key: 'bitrate', label: 'Bitrate', value: (s) => (LIVE.has(s.state) ? s.bitrate_kbps : null), cell: (s) => (LIVE.has(s.state) ? fmtNum(s.bitrate_kbps, 0, ' kb/s') : '–'), class: 'num hide-narrow' },
    { key: 'fps', label: 'fps', value: (s) => (LIVE.has(s.state) ? s.fps : null), cell: (s) => (LIVE.has(s.state) ? fmtNum(s.fps, 1) : '–'), class: 'num hide-narrow' },
    { key: 'resolution', label: 'Resolution', value: (s) => s.resolution, class: 'hide-narrow' },
    { key: 'ladder', label: 'Ladder', value: (s) => (s.ladder || ctx.cluster.renditions).join(' '), cell: (s) => (s.ladder ? s.ladder.join(', ') : 'default'), class: 'hide-narrow' },
    { key: 'node', label: 'Node', value: (s) => s.node, class: 'hide-narrow' },
    { key: 'uptime', label: 'Uptime', value: (s) => (LIVE.has(s.state) && s.started_at ? Date.now() / 1000 - s.started_at : null), cell: (s) => (LIVE.has(s.state) && s.started_at ? fmtDuration(Date.now() / 1000 - s.started_at) : '–'), class: 'num hide-narrow' },
  ], { sortKey: 'name', empty: 'No streams yet.' });

  const render = () => {
    const q = filter.value.trim().toLowerCase(), st = stateFilter.value;
    table.render([...streams.values()].filter((s) => (!q || s.name.toLowerCase().includes(q)) && (!st || s.state === st)));
  };
  let queued = false;  // pushes come once a second per stream: one render for a burst of them
  const soon = () => { if (!queued) { queued = true; setTimeout(() => { queued = false; render(); }, 200); } };
  filter.addEventListener('input', render);
  stateFilter.addEventListener('change', render);

  // Every 5 s a new frame; a missing one (a stream that just went live has no segment yet) every second.
  const refreshThumbs = async (onlyMissing = false) => {
    for (const s of streams.values()) {
      const img = thumbs.get(s.name);
      if (!img || !LIVE.has(s.state) || (onlyMissing && img.complete && img.naturalWidth && !img.classList.contains('none'))) continue;
      const url = await thumbnailUrl(ctx, s);
      if (url) img.src = url;
    }
  };

  const load = async () => {
    for (const s of await get('/api/v1/streams')) streams.set(s.name, s);
    render();
    refreshThumbs();
  };
  const fetching = new Set();
  const onPush = async (m) => {
    if (m.type !== 'status') return;
    if (m.state === 'deleted') { streams.delete(m.name); thumbs.delete(m.name); soon(); return; }
    const known = streams.get(m.name);
    if (!known) {  // a new stream: its whole record once, then pushes keep it fresh
      if (fetching.has(m.name)) return;
      fetching.add(m.name);
      try { streams.set(m.name, await get(`/api/v1/streams/${encodeURIComponent(m.name)}`)); } catch { /* deleted meanwhile */ }
      fetching.delete(m.name);
      soon();
      refreshThumbs();
      return;
    }
    const wasLive = LIVE.has(known.state);
    Object.assign(known, m);
    soon();
    if (!wasLive && LIVE.has(m.state)) setTimeout(refreshThumbs, 250);
  };

  const actions = ctx.admin ? h('button', { type: 'button', class: 'primary', onclick: () => createStream(ctx) }, 'New stream') : null;
  main.replaceChildren(
    h('div', { class: 'bar' }, h('h1', {}, 'Streams'), actions),
    h('div', { class: 'bar filters' }, filter, stateFilter, status),
    h('div', { class: 'scroll' }, table.el),
  );
  render();
  load().catch((e) => status.replaceChildren(h('span', { class: 'error' }, e.message)));
  const close = subscribe('/api/v1/ws/streams', onPush, (up) => { status.textContent = up ? 'live updates on' : 'reconnecting…'; });
  const timers = [setInterval(refreshThumbs, 5000), setInterval(() => refreshThumbs(true), 1000), setInterval(render, 1000), setInterval(() => load().catch(() => {}), 30000)];
  return () => { close(); timers.forEach(clearInterval); };
}

// Shows a new key once, with what OBS needs: the server URL and the key apart.
export function showKey(ctx, created, title) {
  return dialog({
    title,
    cancel: null,
    ok: 'Done',
    body: [
      h('p', {}, 'The stream key is shown once: only its hash is kept. Copy it now.'),
      copyField('Server (OBS: Settings → Stream → Custom)', ctx.cluster.rtmp_url),
      copyField('Stream key', created.key, { secret: true }),
      copyField('Publish URL (ffmpeg)', created.publish_url, { secret: true }),
    ],
  });
}

export function ladderPicker(ctx, current) {
  const boxes = ctx.cluster.renditions.map((r) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: r, checked: current ? current.includes(r) : false }), r));
  const useDefault = h('input', { type: 'checkbox', checked: !current });
  const sync = () => boxes.forEach((b) => { b.firstChild.disabled = useDefault.checked; });
  useDefault.addEventListener('change', sync);
  sync();
  return {
    el: h('fieldset', {}, h('legend', {}, 'Ladder'), h('label', { class: 'check' }, useDefault, 'the configured default'), h('div', { class: 'checks' }, boxes)),
    value: () => (useDefault.checked ? null : boxes.map((b) => b.firstChild).filter((i) => i.checked).map((i) => i.value)),
  };
}

async function createStream(ctx) {
  const name = h('input', { required: true, maxlength: 64, autocomplete: 'off', 'aria-describedby': 'name-help' });
  const ladder = ladderPicker(ctx, null);
  const playback = h('select', {}, h('option', { value: 'public' }, 'public'), h('option', { value: 'signed' }, 'signed (token in every URL)'));
  const created = await dialog({
    title: 'New stream',
    ok: 'Create',
    body: [
      h('label', {}, 'Name', name),
      h('p', { id: 'name-help', class: 'muted' }, '1–64 letters, digits, - or _'),
      ladder.el,
      h('label', {}, 'Playback', playback),
    ],
    action: () => post('/api/v1/streams', { name: name.value.trim(), ladder: ladder.value(), playback: playback.value }),
  });
  if (created) {
    await showKey(ctx, created, `Stream ${created.name} created`);
    location.hash = `#/stream/${encodeURIComponent(created.name)}`;
  }
}
