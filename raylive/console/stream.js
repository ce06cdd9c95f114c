// One stream: a low-latency player, live charts (history from the analytics API, then a point a
// second from the WebSocket), how to publish, and the actions an admin may take.

import { ApiError, del, get, post, put, subscribe } from './api.js';
import { Chart, Table, copyField, dialog, fmtDuration, fmtNum, fmtTime, h, toast } from './ui.js';
import { play } from './playback.js';
import { LIVE, ladderPicker, showKey, stateBadge } from './streams.js';

const HISTORY_S = 1800;

export function streamView(main, ctx, name) {
  const path = `/api/v1/streams/${encodeURIComponent(name)}`;
  let info = null, player = null, playerFor = null, retry = null;
  const badge = h('span');
  const video = h('video', { id: 'player', muted: true, autoplay: true, playsinline: true, controls: true });
  const levels = h('select', { 'aria-label': 'Rendition', disabled: true }, h('option', { value: '-1' }, 'Auto'));
  const playerNote = h('p', { class: 'muted', role: 'status' });
  const stats = h('dl', { class: 'stats' });
  const renditions = h('div');
  const charts = h('div', { class: 'charts' });
  const errorBox = h('p', { class: 'error', role: 'alert' });

  levels.addEventListener('change', () => player && player.setLevel(Number(levels.value)));

  const startPlayer = async (recording = null) => {
    stopPlayer();
    playerFor = recording ? `recording ${recording}` : info.started_at;
    playerNote.textContent = recording ? `Recording ${recording}` : 'Loading…';
    try {
      player = await play(ctx, info, video, {
        path: recording ? `recordings/${recording}/index.m3u8` : 'index.m3u8',
        onLevels: (ls) => {
          levels.replaceChildren(h('option', { value: '-1' }, 'Auto'), ls.map((l) => h('option', { value: String(l.index) }, l.label)));
          levels.disabled = ls.length < 2;
          if (!recording) playerNote.textContent = '';
        },
        onError: (text) => {  // e.g. a publish so new that its playlist is not written yet: again in 2 s while live
          playerNote.textContent = `Player: ${text} (retrying)`;
          if (player) player.destroy();
          player = null;
          if (!recording) retry = setTimeout(() => { retry = null; if (info && LIVE.has(info.state)) startPlayer(); }, 2000);
        },
      });
    } catch (e) {
      playerNote.textContent = e.message;
    }
  };
  const stopPlayer = () => {
    clearTimeout(retry);
    retry = null;
    if (player) player.destroy();
    player = null;
    playerFor = null;
    levels.disabled = true;
  };

  const row = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
  const renderInfo = () => {
    const live = LIVE.has(info.state);
    badge.replaceChildren(stateBadge(info.state), ...(info.revoked ? [h('span', { class: 'badge state-ended' }, 'key revoked')] : []));
    stats.replaceChildren(...[
      row('Viewers', `${info.viewers ?? 0} now · ${info.peak_viewers ?? 0} peak · ${info.unique_viewers ?? 0} unique`),
      row('Ingest', live ? `${fmtNum(info.bitrate_kbps, 0, ' kb/s')} · ${fmtNum(info.fps, 1, ' fps')} · ${info.resolution || '–'}` : '–'),
      row('Codecs', [info.video_codec, info.audio_codec].filter(Boolean).join(' + ') || '–'),
      row('Keyframe interval', live ? fmtNum(info.keyframe_interval_ms, 0, ' ms') : '–'),
      row('Transcode lag', live && info.transcode_lag_s !== null && info.transcode_lag_s !== undefined ? fmtNum(info.transcode_lag_s, 2, ' s') : '–'),
      row('Ladder', info.ladder ? info.ladder.join(', ') : `default (${ctx.cluster.renditions.join(', ')})`),
      row('Node', info.node || '–'),
      row(live ? 'Uptime' : 'Last live', live ? fmtDuration(Date.now() / 1000 - info.started_at) : fmtTime(info.ended_at)),
      row('Playback', info.playback || 'public'),
      row('Recording', info.recording ? (info.recording.enabled ? 'on' : 'off') : 'configured default'),
    ].flat());
    const outs = Object.entries(info.renditions || {});
    renditions.replaceChildren(outs.length ? h('ul', { class: 'plain' }, outs.map(([r, o]) =>
      h('li', {}, `${r}: ${fmtNum((o.bandwidth || 0) / 1000, 0, ' kb/s')} · ${(info.viewers_by_rendition || {})[r] ?? 0} viewers`))) : '');
    const watchingRecording = typeof playerFor === 'string';
    if (live && playerFor !== info.started_at && !watchingRecording) startPlayer();
    if (!live && playerFor !== null && !watchingRecording) stopPlayer();
    if (!live) playerNote.textContent = info.state === 'ended' ? 'The stream ended.' : 'Not live: the player starts when a publisher does.';
  };

  const load = async () => {
    try {
      info = await get(path);
      errorBox.textContent = '';
      renderInfo();
    } catch (e) {
      errorBox.textContent = e instanceof ApiError && e.status === 404 ? `No stream named “${name}”.` : e.message;
    }
  };

  // Charts: history first, then live points.
  const mk = (title, series) => new Chart(charts, title, series, { keep: HISTORY_S });
  const chViewers = mk('Viewers', ['viewers']);
  const chBitrate = mk('Ingest bitrate (kb/s)', ['kb/s']);
  const chFps = mk('Frames per second', ['fps']);
  const chKeyframe = mk('Keyframe interval (ms)', ['ms']);
  const chLag = mk('Transcode lag (s)', ['s']);
  const history = async () => {
    const now = Date.now() / 1000;
    try {
      const a = await get(`${path}/analytics?from=${Math.floor(now - HISTORY_S)}&to=${Math.ceil(now)}&step=10`);
      chViewers.set(a.viewers.map((p) => [p.t, p.viewers]));
      chBitrate.set(a.ingest.map((p) => [p.t, p.bitrate_kbps]));
      chFps.set(a.ingest.map((p) => [p.t, p.fps]));
      chKeyframe.set(a.ingest.map((p) => [p.t, p.keyframe_interval_ms]));
      chLag.set(a.ingest.map((p) => [p.t, p.transcode_lag_s]));
    } catch (e) {
      charts.prepend(h('p', { class: 'muted' }, `No history: ${e.message}`));
    }
  };
  const onPush = (m) => {
    if (m.type === 'event' && (m.event === 'publish' || m.event === 'unpublish' || m.event === 'recording')) { load(); loadRecordings(); return; }
    if (m.type !== 'status' || !info) return;
    if (m.state === 'deleted') { errorBox.textContent = 'This stream was deleted.'; stopPlayer(); return; }
    Object.assign(info, m);
    renderInfo();
    if (!LIVE.has(m.state)) return;
    const t = Math.floor(m.time);
    chViewers.push([t, m.viewers ?? 0]);
    chBitrate.push([t, m.bitrate_kbps]);
    chFps.push([t, m.fps]);
    chKeyframe.push([t, m.keyframe_interval_ms]);
    chLag.push([t, m.transcode_lag_s]);
  };

  // Actions, each confirmed; a failure leaves the API's text in the dialog.
  const act = (label, question, run, after = load) => h('button', {
    type: 'button',
    class: label === 'Delete' || label === 'Revoke key' ? 'danger' : '',
    onclick: async () => {
      const done = await dialog({ title: `${label}: ${name}`, body: h('p', {}, question), ok: label, action: run });
      if (done) await after(done);
    },
  }, label);
  const actions = ctx.admin ? h('div', { class: 'actions' },
    act('Rotate key', 'A new key replaces the current one: the next publish with the old key fails. A publisher already live stays live.',
      () => post(`${path}/key/rotate`), (created) => showKey(ctx, created, `New key for ${name}`)),
    h('button', { type: 'button', onclick: setLadder }, 'Set ladder'),
    h('button', { type: 'button', onclick: setRecording }, 'Recording'),
    act('Stop', 'Disconnects the publisher now. Its key keeps working: it may publish again.', () => post(`${path}/stop`)),
    act('Revoke key', 'Disconnects the publisher and the key stops working for good (rotate to publish again).', () => post(`${path}/revoke`)),
    act('Delete', 'Deletes the stream, its key and what it has written. This cannot be undone.', () => del(path),
      () => { toast(`Stream ${name} deleted`); location.hash = '#/streams'; }),
  ) : h('p', { class: 'muted' }, 'Read-only token: actions need the admin scope.');

  async function setLadder() {
    const picker = ladderPicker(ctx, info && info.ladder);
    const done = await dialog({
      title: `Ladder of ${name}`, ok: 'Save',
      body: [picker.el, h('p', { class: 'muted' }, 'Takes effect at the next publish.')],
      action: () => put(`${path}/ladder`, { ladder: picker.value() }),
    });
    if (done) { info = done; renderInfo(); toast('Ladder saved: it applies from the next publish'); }
  }

  // Recordings: each publish session of a recorded stream; play one here, delete one.
  const recordings = new Table([
    { key: 'start', label: 'Started', value: (r) => r.started_at, cell: (r) => fmtTime(r.started_at) },
    { key: 'duration', label: 'Duration', value: (r) => r.duration_s, cell: (r) => fmtDuration(r.duration_s), class: 'num' },
    { key: 'size', label: 'Size', value: (r) => r.bytes, cell: (r) => fmtNum(r.bytes / 1e6, 1, ' MB'), class: 'num hide-narrow' },
    { key: 'state', label: 'State', value: (r) => r.state, cell: (r) => h('span', { title: r.error }, r.state, r.error ? ` (${r.error})` : '') },
    { key: 'actions', label: '', cell: (r) => h('span', { class: 'actions' },
      h('button', { type: 'button', onclick: () => startPlayer(r.id) }, 'Play'),
      ctx.admin ? h('button', { type: 'button', onclick: () => makeClip(r) }, 'Clip') : null,
      ctx.admin && r.state !== 'recording' ? h('button', { type: 'button', class: 'danger', onclick: async () => {
        const done = await dialog({ title: 'Delete recording', body: h('p', {}, `Recording ${r.id} and its files go for good.`), ok: 'Delete',
          action: () => del(`${path}/recordings/${r.id}`) });
        if (done) loadRecordings();
      } }, 'Delete') : null) },
  ], { sortKey: 'start', desc: true, empty: 'No recordings.', rowKey: (r) => r.id });
  const clips = new Table([
    { key: 'created', label: 'Made', value: (c) => c.created_at, cell: (c) => fmtTime(c.created_at) },
    { key: 'span', label: 'Of recording', value: (c) => c.recording, cell: (c) => `${c.recording} ${fmtDuration(c.from_s)}–${fmtDuration(c.to_s)}` },
    { key: 'duration', label: 'Duration', value: (c) => c.duration_s, cell: (c) => fmtDuration(c.duration_s), class: 'num' },
    { key: 'file', label: '', cell: (c) => h('a', { href: c.url, download: `${name}-${c.id}.mp4` }, `MP4, ${fmtNum(c.bytes / 1e6, 1, ' MB')}`) },
  ], { sortKey: 'created', desc: true, empty: 'No clips.', rowKey: (c) => c.id });
  const recordingsNote = h('p', { class: 'muted' });
  const loadRecordings = async () => {
    try {
      const [recs, made] = await Promise.all([get(`${path}/recordings`), get(`${path}/clips`)]);
      recordings.render(recs);
      clips.render(made);
      recordingsNote.textContent = '';
    } catch (e) { recordingsNote.textContent = e.message; }
  };
  async function makeClip(r) {
    const from = h('input', { type: 'number', min: 0, step: 'any', value: '0' });
    const to = h('input', { type: 'number', min: 0, step: 'any', value: String(Math.min(30, Math.floor(r.duration_s))) });
    const made = await dialog({
      title: `Clip of ${r.id}`, ok: 'Make clip',
      body: [h('p', { class: 'muted' }, `Seconds into the recording (${fmtDuration(r.duration_s)} long); cut on the nearest keyframes, not re-encoded.`),
        h('label', {}, 'From (s)', from), h('label', {}, 'To (s)', to)],
      action: () => post(`${path}/clips`, { recording: r.id, from: Number(from.value), to: Number(to.value) }),
    });
    if (made) { toast(`Clip made: ${fmtDuration(made.duration_s)}`); loadRecordings(); }
  }
  async function setRecording() {
    const p = (info && info.recording) || { enabled: true, max_age_s: 0, max_bytes: 0 };
    const enabled = h('input', { type: 'checkbox', checked: p.enabled });
    const useDefault = h('input', { type: 'checkbox', checked: !(info && info.recording) });
    const days = h('input', { type: 'number', min: 0, step: 'any', value: String(p.max_age_s / 86400) });
    const gb = h('input', { type: 'number', min: 0, step: 'any', value: String(p.max_bytes / 1e9) });
    const done = await dialog({
      title: `Recording of ${name}`, ok: 'Save',
      body: [h('label', { class: 'check' }, useDefault, 'the configured default'), h('br'),
        h('label', { class: 'check' }, enabled, 'record each publish'),
        h('label', {}, 'Keep for (days, 0: for good)', days), h('label', {}, 'Keep at most (GB, 0: no limit)', gb),
        h('p', { class: 'muted' }, 'Takes effect at the next publish.')],
      action: () => put(`${path}/recording`, { recording: useDefault.checked ? null
        : { enabled: enabled.checked, max_age_s: Number(days.value) * 86400, max_bytes: Math.round(Number(gb.value) * 1e9) } }),
    });
    if (done) { info = done; renderInfo(); toast('Recording policy saved: it applies from the next publish'); }
  }

  const publish = h('section', { class: 'card' }, h('h2', {}, 'Publish'),
    copyField('Server', ctx.cluster.rtmp_url),
    h('p', {}, 'Stream key: shown once, when the stream is created or its key rotated.'),
    h('details', {}, h('summary', {}, 'OBS settings'), h('ul', { class: 'plain' },
      h('li', {}, 'Settings → Stream: Service “Custom…”, Server as above, Stream Key as given'),
      h('li', {}, 'Output → Encoder x264 (or NVENC H.264/HEVC/AV1), Rate control CBR'),
      h('li', {}, 'Keyframe interval 1 s for the lowest latency (2 s at most)'),
      h('li', {}, 'Audio: AAC, 48 kHz'))));

  main.replaceChildren(
    h('div', { class: 'bar' }, h('a', { href: '#/streams' }, '← Streams'), h('h1', { class: 'title' }, h('span', {}, name), badge)),
    errorBox,
    actions,
    h('div', { class: 'split' },
      h('section', { class: 'card' }, video, h('div', { class: 'bar' }, h('label', {}, 'Rendition ', levels),
        h('button', { type: 'button', onclick: () => { stopPlayer(); renderInfo(); } }, 'Live')), playerNote),
      h('section', { class: 'card' }, h('h2', {}, 'Now'), stats, renditions)),
    h('section', { class: 'card' }, h('h2', {}, 'Last 30 minutes'), charts),
    h('section', { class: 'card' }, h('h2', {}, 'Recordings'), recordingsNote, h('div', { class: 'scroll' }, recordings.el),
      h('h3', {}, 'Clips'), h('div', { class: 'scroll' }, clips.el)),
    publish,
  );
  load().then(history);
  loadRecordings();
  const close = subscribe(`/api/v1/ws/streams/${encodeURIComponent(name)}`, onPush);
  return () => { close(); stopPlayer(); };
}
