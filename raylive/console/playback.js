// Playback from the console: thumbnails and the hls.js player, with a playback token for a
// signed stream (an admin token can mint one; a read-only one cannot, so it shows no picture).

import { post } from './api.js';

const tokens = new Map();  // stream -> {token, expires_at}

async function playbackQuery(ctx, stream) {
  if (stream.playback !== 'signed') return '';
  if (!ctx.admin) return null;
  let t = tokens.get(stream.name);
  if (!t || t.expires_at - 60 < Date.now() / 1000) {
    t = await post(`/api/v1/streams/${encodeURIComponent(stream.name)}/playback-token`, { ttl_s: 3600 });
    tokens.set(stream.name, t);
  }
  return `token=${encodeURIComponent(t.token)}`;
}

export async function thumbnailUrl(ctx, stream) {
  const q = await playbackQuery(ctx, stream).catch(() => null);
  if (q === null) return null;
  return `/live/${encodeURIComponent(stream.name)}/thumbnail.jpg?${q ? q + '&' : ''}t=${Date.now()}`;
}

// An LL-HLS player on `video`; `onLevels(levels)` when the renditions are known, `onError(text)`
// for a fatal error. Returns {setLevel(i), destroy()}.
// `path`: the multivariant playlist under /live/NAME/ (a recording's: recordings/REC/index.m3u8).
export async function play(ctx, stream, video, { onLevels = () => {}, onError = () => {}, path = 'index.m3u8' } = {}) {
  const q = await playbackQuery(ctx, stream);
  if (q === null) throw new Error('Signed playback: a token with the admin scope plays it here.');
  const src = `/live/${encodeURIComponent(stream.name)}/${path}${q ? '?' + q : ''}`;
  if (!window.Hls || !Hls.isSupported()) {  // Safari plays HLS itself
    video.src = src;
    video.play().catch(() => {});
    return { setLevel() {}, destroy() { video.removeAttribute('src'); video.load(); } };
  }
  const hls = new Hls({ lowLatencyMode: path === 'index.m3u8', backBufferLength: 30 });
  window.consolePlayer = hls;  // for the tests and for a curious operator's devtools
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
    onLevels(d.levels.map((l, i) => ({ index: i, label: l.height ? `${l.height}p` : `${Math.round(l.bitrate / 1000)} kb/s`, bitrate: l.bitrate })));
    video.play().catch(() => {});
  });
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (!d.fatal) return;
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
    onError(`${d.type}: ${d.details}`);
  });
  hls.loadSource(src);
  hls.attachMedia(video);
  return {
    setLevel(i) { hls.currentLevel = i; },
    destroy() { hls.destroy(); if (window.consolePlayer === hls) window.consolePlayer = null; },
  };
}
