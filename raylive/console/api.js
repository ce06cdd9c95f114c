// The control API as the console uses it: the token lives in this tab's session storage and
// travels only in the Authorization header; WebSockets take a one-time ticket instead.

const KEY = 'raylive.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// fetch + JSON; a failure throws ApiError carrying the API's own error text.
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token.get()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `raylive did not answer (${e.message})`);
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON: keep the status line */ }
  if (!res.ok) {
    // The token stopped working (deleted, or the deployment's admin token changed): sign in again.
    if (res.status === 401 && token.get()) window.dispatchEvent(new Event('raylive:unauthorized'));
    const text = data && (data.error || (typeof data.detail === 'string' ? data.detail : JSON.stringify(data.detail)));
    throw new ApiError(res.status, text || `${res.status} ${res.statusText}`);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

// A WebSocket that stays open: a fresh ticket for every (re)connect, backing off 1 s doubling to 15 s.
// Returns a function that closes it for good.
export function subscribe(path, onMessage, onState = () => {}) {
  let ws = null, closed = false, delay = 1000, timer = null;
  const connect = async () => {
    if (closed) return;
    try {
      const { ticket } = await post('/api/v1/ws-tickets');
      if (closed) return;
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      ws = new WebSocket(`${scheme}://${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
      ws.onopen = () => { delay = 1000; onState(true); };
      ws.onmessage = (m) => onMessage(JSON.parse(m.data));
      ws.onclose = () => { onState(false); retry(); };
    } catch (e) {
      onState(false, e);
      if (e.status !== 401 && e.status !== 403) retry();
    }
  };
  const retry = () => {
    if (closed) return;
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, 15000);
  };
  connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    if (ws) ws.close();
  };
}
