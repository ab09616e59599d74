// The pane's shell: the router (the URL's fragment names the page), the
// header's entity search, who is signed in, and keyboard shortcuts.
import {api, setToken, token} from './api.js';
import {h, fill, debounce, entityHref} from './dom.js';
import * as queue from './queue.js';
import * as incident from './incident.js';
import * as entity from './entity.js';
import * as actions from './actions.js';
import * as hunt from './hunt.js';
import * as search from './search.js';

const main = document.getElementById('main');
export const ctx = {me: null, can: p => !!(ctx.me && ctx.me.permissions && ctx.me.permissions.includes(p))};

// Each route: a pattern of the path after '#', the page module and the nav
// section it belongs to.
const routes = [
  [/^\/?$/, queue, 'incidents'],
  [/^\/incidents\/?$/, queue, 'incidents'],
  [/^\/incidents\/([^/]+)$/, incident, 'incidents'],
  [/^\/entities\/([^/]+)\/(.+)$/, entity, null],
  [/^\/actions\/?$/, actions, 'actions'],
  [/^\/hunt\/?$/, hunt, 'hunt'],
  [/^\/search\/?$/, search, null],
];

let cleanup = null;
let lastPath = null;

// parse splits the fragment into its path parts and query.
export function current() {
  const frag = location.hash.replace(/^#/, '') || '/incidents';
  const [path, qs] = frag.split('?');
  return {path, query: new URLSearchParams(qs || '')};
}

// setQuery rewrites the fragment's query without a new history entry or a
// re-render: filters are part of the URL, so a view can be shared.
export function setQuery(query) {
  const {path} = current();
  const s = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v !== undefined && v !== null && !(Array.isArray(v) && !v.length)).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v])).toString();
  const url = '#' + path + (s ? '?' + s : '');
  if (url !== location.hash) {
    history.replaceState(null, '', url);
  }
}

async function route() {
  const {path, query} = current();
  const samePage = path === lastPath;
  for (const [re, page, section] of routes) {
    const m = path.match(re);
    if (!m) continue;
    if (cleanup && !(samePage && page.update)) { cleanup(); cleanup = null; }
    document.querySelectorAll('[data-nav]').forEach(a => a.toggleAttribute('aria-current', a.dataset.nav === section));
    if (samePage && page.update) {
      page.update(query);
      return;
    }
    lastPath = path;
    fill(main, h('p', {class: 'muted'}, 'Loading…'));
    try {
      const params = m.slice(1).map(decodeURIComponent); // throws on a malformed %
      cleanup = (await page.render(main, params, query, ctx)) || null;
    } catch (e) {
      showError(e);
    }
    // The tab's title names the page, as a screen reader announces it.
    const h1 = main.querySelector('h1');
    document.title = (h1 ? h1.textContent.trim() + ' · ' : '') + 'stitch';
    if (!samePage) main.focus({preventScroll: true});
    return;
  }
  lastPath = path;
  fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No page at ', h('code', {}, path), '. ', h('a', {href: '#/incidents'}, 'Go to the incident queue')));
}

export function showError(e) {
  if (e && e.name === 'AbortError') return;
  const msg = e && e.status === 404 ? 'Not found: ' + e.message : (e && e.message) || String(e);
  fill(main, h('div', {class: 'error-box', role: 'alert'}, h('h1', {}, 'Something went wrong'), h('p', {}, msg)));
}

// flash says something briefly in the live region under the header.
export function flash(text, kind = 'info') {
  const f = document.getElementById('flash');
  fill(f, h('span', {class: 'flash-' + kind}, text));
  clearTimeout(flash.t);
  flash.t = setTimeout(() => f.replaceChildren(), 6000);
}

async function loadMe() {
  try {
    ctx.me = await api('me');
  } catch (e) {
    ctx.me = null;
  }
  const who = document.getElementById('who');
  if (ctx.me) {
    const tenants = (ctx.me.tenants || []).join(', ');
    fill(who, h('span', {title: 'tenants: ' + tenants}, ctx.me.name || 'signed in', ' · ', h('b', {}, ctx.me.role)),
      token() ? h('button', {type: 'button', class: 'link', onclick: () => { setToken(''); location.reload(); }}, 'Sign out') : null);
  } else {
    fill(who, h('button', {type: 'button', class: 'link', onclick: signIn}, 'Sign in'));
  }
}

function signIn() {
  const d = document.getElementById('signin');
  if (d.open) return;
  document.getElementById('signin-error').textContent = '';
  document.getElementById('signin-token').value = '';
  d.showModal();
}

async function signedIn(e) {
  const d = document.getElementById('signin');
  if (d.returnValue !== 'ok') return;
  const t = document.getElementById('signin-token').value.trim();
  setToken(t);
  await loadMe();
  if (!ctx.me) {
    setToken('');
    document.getElementById('signin-error').textContent = 'That token was not accepted.';
    d.showModal();
    return;
  }
  lastPath = null;
  route();
}

// The header's search: suggestions as one types (a listbox driven by the
// arrow keys), Enter opens the chosen one, the exact entity, or the results.
function setupSearch() {
  const form = document.getElementById('search');
  const input = document.getElementById('search-q');
  const list = document.getElementById('search-list');
  let items = [], active = -1, exact = null, ctl = null;

  const close = () => { list.hidden = true; input.setAttribute('aria-expanded', 'false'); input.removeAttribute('aria-activedescendant'); active = -1; };
  const mark = () => {
    [...list.children].forEach((li, i) => li.setAttribute('aria-selected', i === active ? 'true' : 'false'));
    if (active >= 0) input.setAttribute('aria-activedescendant', 'sugg-' + active); else input.removeAttribute('aria-activedescendant');
  };
  const go = r => { close(); input.value = ''; location.hash = entityHref(r.type, r.id); };

  const suggest = debounce(async () => {
    const q = input.value.trim();
    if (!q) { close(); return; }
    if (ctl) ctl.abort();
    ctl = new AbortController();
    try {
      const res = await api('entities/search', {query: {q, limit: 8}, signal: ctl.signal});
      items = res.results || [];
      exact = res.exact || null;
    } catch (e) {
      if (e.name === 'AbortError') return;
      items = []; exact = null;
    }
    active = -1;
    fill(list, items.map((r, i) => h('li', {id: 'sugg-' + i, role: 'option', 'aria-selected': 'false', onmousedown: ev => { ev.preventDefault(); go(r); }},
      h('span', {class: 'etype'}, r.type), ' ', r.label || r.id, r.incidents ? h('span', {class: 'muted'}, ' · ' + r.incidents + ' incident' + (r.incidents === 1 ? '' : 's')) : null)));
    if (!items.length) list.appendChild(h('li', {class: 'muted', role: 'option', 'aria-disabled': 'true'}, 'No entity matches'));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
  }, 150);

  input.addEventListener('input', suggest);
  input.addEventListener('blur', () => setTimeout(close, 100));
  input.addEventListener('keydown', e => {
    if (e.key === 'ArrowDown' && items.length) { e.preventDefault(); active = (active + 1) % items.length; mark(); }
    else if (e.key === 'ArrowUp' && items.length) { e.preventDefault(); active = (active - 1 + items.length) % items.length; mark(); }
    else if (e.key === 'Escape') { close(); input.blur(); }
  });
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    if (active >= 0 && items[active]) return go(items[active]);
    try {
      const res = await api('entities/search', {query: {q, limit: 8}});
      if (res.exact) return go(res.exact);
    } catch { /* fall through to the results page */ }
    close();
    location.hash = '#/search?q=' + encodeURIComponent(q);
  });
}

// Keyboard: '/' to search, 'g' then i/a/h to go to incidents, actions,
// hunting, '?' for the list.
function setupKeys() {
  let g = false;
  document.addEventListener('keydown', e => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (e.key === '/') { e.preventDefault(); document.getElementById('search-q').focus(); return; }
    if (e.key === 'g') { g = true; setTimeout(() => { g = false; }, 1000); return; }
    if (g) {
      g = false;
      const to = {i: '#/incidents', a: '#/actions', h: '#/hunt'}[e.key];
      if (to) { e.preventDefault(); location.hash = to; }
      return;
    }
    if (e.key === '?') { e.preventDefault(); help(); }
  });
}

function help() {
  flash('Keys: / search · g i incidents · g a action center · g h hunting · j/k move in a list, Enter opens · ←/→ switch tabs · Ctrl+Enter runs a hunt');
}

async function start() {
  document.getElementById('signin').addEventListener('close', signedIn);
  window.addEventListener('stitch:unauthorized', () => { if (!document.getElementById('signin').open) signIn(); });
  setupSearch();
  setupKeys();
  await loadMe();
  window.addEventListener('hashchange', route);
  route();
}

start();
