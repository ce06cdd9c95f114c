// The console's entry: sign-in, then one view per route (#/streams, #/stream/NAME, #/analytics,
// #/cluster). A view returns a function that stops its timers and sockets when the route changes.

import { ApiError, get, token } from './api.js';
import { analyticsView } from './analytics.js';
import { clusterView } from './cluster.js';
import { streamView } from './stream.js';
import { streamsView } from './streams.js';
import { h } from './ui.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let ctx = null;
let leave = () => {};

function signInView(message = '') {
  top.hidden = true;
  const input = h('input', { type: 'password', id: 'token', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-help' });
  const error = h('p', { class: 'error', role: 'alert', id: 'sign-in-error' }, message);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card sign-in', onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = '';
    token.set(input.value.trim());
    const failure = await start();
    if (failure) { token.clear(); error.textContent = failure; button.disabled = false; input.focus(); }
  } },
  h('h1', {}, 'raylive console'),
  h('label', {}, 'API token', input),
  h('p', { id: 'token-help', class: 'muted' }, 'The admin token (raylive up prints where it is) or an API token. It stays in this tab only.'),
  error, button);
  main.replaceChildren(form);
  input.focus();
}

// Checks the token and loads what every view needs; returns an error text, or '' when signed in.
async function start() {
  try {
    const [me, cluster] = await Promise.all([get('/api/v1/me'), get('/api/v1/cluster')]);
    ctx = { name: me.name, scopes: me.scopes, admin: me.scopes.includes('admin'), cluster };
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return 'That token is not valid here: check it and try again.';
    return `Could not sign in: ${e.message}`;
  }
  document.getElementById('who').textContent = ctx.name === 'admin' ? 'admin token' : `${ctx.name} (${ctx.admin ? 'admin' : 'read-only'})`;
  top.hidden = false;
  route();
  return '';
}

function route() {
  leave();
  leave = () => {};
  if (!ctx) return;
  const [, section = 'streams', arg] = location.hash.split('/');
  for (const a of top.querySelectorAll('nav a')) {
    const current = a.dataset.section === (section === 'stream' ? 'streams' : section);
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const views = {
    streams: () => streamsView(main, ctx),
    stream: () => streamView(main, ctx, decodeURIComponent(arg || '')),
    analytics: () => analyticsView(main, ctx),
    cluster: () => clusterView(main, ctx),
  };
  leave = (views[section] || views.streams)();
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
function signOut(message) {
  leave();
  leave = () => {};
  token.clear();
  ctx = null;
  signInView(message);
}
document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('raylive:unauthorized', () => { if (ctx) signOut('Your token is no longer valid here: sign in again.'); });

if (token.get()) start().then((failure) => failure && (token.clear(), signInView(failure)));
else signInView();
