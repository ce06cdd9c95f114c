// Cluster: the Ray nodes and what each runs (RTMP gateway, playback replicas, stream actors).

import { get } from './api.js';
import { Table, h } from './ui.js';

export function clusterView(main, ctx) {
  const summary = h('p', { class: 'muted' });
  const error = h('p', { class: 'error', role: 'alert' });
  const health = (n) => {
    if (!n.alive) return h('span', { class: 'badge state-ended' }, 'down');
    if (!n.rtmp_port) return h('span', { class: 'badge state-reconnecting' }, 'no gateway');
    return h('span', { class: 'badge state-live' }, 'healthy');
  };
  const table = new Table([
    { key: 'address', label: 'Node', value: (n) => n.address, cell: (n) => h('span', { title: n.node_id }, n.address) },
    { key: 'health', label: 'Health', value: (n) => (n.alive ? (n.rtmp_port ? 2 : 1) : 0), cell: health },
    { key: 'cpus', label: 'CPUs', value: (n) => n.cpus, class: 'num' },
    { key: 'gpus', label: 'GPUs', value: (n) => n.gpus, class: 'num hide-narrow' },
    { key: 'gateway', label: 'RTMP gateway', value: (n) => n.rtmp_port, cell: (n) => (n.rtmp_port ? `:${n.rtmp_port} · ${n.rtmp_connections} conn.` : '–'), class: 'hide-narrow' },
    { key: 'replicas', label: 'Playback replicas', value: (n) => n.playback_replicas, class: 'num' },
    { key: 'streams', label: 'Stream actors', value: (n) => n.streams.length,
      cell: (n) => (n.streams.length ? h('span', {}, `${n.streams.length}: `, n.streams.flatMap((s, i) => [i ? ', ' : '', h('a', { href: `#/stream/${encodeURIComponent(s)}` }, s)])) : '0') },
  ], { sortKey: 'address', empty: 'No nodes.' });
  const dashboard = h('p');
  const load = async () => {
    try {
      const c = await get('/api/v1/cluster');
      ctx.cluster = c;
      error.textContent = '';
      table.render(c.nodes);
      const alive = c.nodes.filter((n) => n.alive).length;
      summary.textContent = `${alive} of ${c.nodes.length} nodes alive · ${c.playback_replicas} playback replicas · publish to ${c.rtmp_url}/<stream-key>`;
      dashboard.replaceChildren(c.dashboard_url
        ? h('a', { href: c.dashboard_url, target: '_blank', rel: 'noopener noreferrer' }, 'Ray dashboard ↗')
        : h('span', { class: 'muted' }, 'The Ray dashboard is off (raylive up --no-dashboard).'));
    } catch (e) { error.textContent = e.message; }
  };
  main.replaceChildren(h('h1', {}, 'Cluster'), summary, error, h('div', { class: 'scroll' }, table.el), dashboard);
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
