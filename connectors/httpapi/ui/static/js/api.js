// The API client: every call carries the token of this tab (if any); an
// error answer becomes an Error with the API's reason.

const KEY = 'stitch.token';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY); }

export class APIError extends Error {
  constructor(status, code, reason) {
    super(reason || code || ('HTTP ' + status));
    this.status = status;
    this.code = code;
  }
}

// api calls path (under /api/) and returns the decoded JSON.
export async function api(path, {method = 'GET', body, signal, query, headers: extra} = {}) {
  const headers = {Accept: 'application/json', ...(extra || {})};
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let url = '/api/' + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && !v.length)) q.set(k, Array.isArray(v) ? v.join(',') : v);
    }
    const s = q.toString();
    if (s) url += '?' + s;
  }
  let r;
  try {
    r = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store'});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(0, 'unavailable', 'stitch did not answer: ' + e.message);
  }
  let data = null;
  try { data = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) {
    const err = new APIError(r.status, data && data.error, data && data.reason);
    if (r.status === 401) window.dispatchEvent(new CustomEvent('stitch:unauthorized', {detail: err}));
    throw err;
  }
  return data;
}

// seg escapes one path segment.
export const seg = encodeURIComponent;
