// Small DOM helpers. Every string reaches the page as text (textContent or
// an attribute), never as HTML: incident titles, command lines and URLs come
// from attackers' data.

// h builds an element: h('a', {href: '#/x', class: 'y'}, 'text', child, [more]).
// Attributes whose value is null, undefined or false are left out; on* keys
// with a function add listeners.
export function h(tag, attrs, ...children) {
  const svg = SVG_TAGS.has(tag);
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else if (c instanceof Node) e.appendChild(c);
    else e.appendChild(document.createTextNode(String(c)));
  }
}

const SVG_TAGS = new Set(['svg', 'g', 'circle', 'rect', 'line', 'path', 'text', 'title', 'polygon', 'marker', 'defs', 'tspan']);

// fill replaces the children of e.
export function fill(e, ...children) {
  e.replaceChildren();
  append(e, children);
  return e;
}

const SEVERITY = ['informational', 'low', 'medium', 'high'];

// sev is a severity badge: a word, never a colour alone.
export function sev(s) {
  s = s || 'unknown';
  return h('span', {class: 'sev sev-' + (SEVERITY.includes(s) ? s : 'unknown')}, s);
}

export function badge(text, kind) {
  return h('span', {class: 'badge' + (kind ? ' badge-' + kind : '')}, text);
}

const dateFmt = new Intl.DateTimeFormat(undefined, {year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: 'UTC', hour12: false});

// when is a UTC time element, with the ISO time as its machine value.
export function when(iso) {
  if (!iso || iso.startsWith('0001-')) return h('span', {class: 'muted'}, '—');
  const d = new Date(iso);
  if (isNaN(d)) return h('span', {}, iso);
  return h('time', {datetime: iso, title: iso}, dateFmt.format(d) + ' UTC');
}

// ago says how long ago, for dense tables.
export function ago(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d) || iso.startsWith('0001-')) return h('span', {class: 'muted'}, '—');
  let s = Math.round((Date.now() - d) / 1000);
  if (Math.abs(s) > 30 * 86400) return when(iso);
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  let out = 'now';
  for (const [u, n] of units) {
    if (Math.abs(s) >= n) { out = Math.floor(s / n) + u + ' ago'; break; }
  }
  return h('time', {datetime: iso, title: dateFmt.format(d) + ' UTC'}, out);
}

export const ASSET_TYPES = [
  // [impactedAssets key, entity type, label]
  ['devices', 'device', 'Devices'],
  ['users', 'user', 'Users'],
  ['mailboxes', 'mailbox', 'Mailboxes'],
  ['files', 'file', 'Files'],
  ['ips', 'ip', 'IPs'],
  ['urls', 'url', 'URLs'],
  ['apps', 'app', 'Apps'],
];

// entityHref is the page of an entity; its id is one escaped segment of
// the fragment.
export function entityHref(type, id) {
  return '#/entities/' + encodeURIComponent(type) + '/' + encodeURIComponent(id);
}

export function entityLink(type, id, label) {
  return h('a', {href: entityHref(type, id), class: 'entity entity-' + type}, label || id);
}

// table builds a table from column specs {label, cell(row) -> Node|string, class}.
export function table(cols, rows, opts = {}) {
  const head = h('thead', {}, h('tr', {}, cols.map(c => h('th', {scope: 'col', class: c.class}, c.label))));
  const body = h('tbody', {});
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const tr = h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {}, cols.map(c => h('td', {class: c.class}, c.cell(r))));
    frag.appendChild(tr);
  }
  body.appendChild(frag);
  const t = h('table', {class: 'grid' + (opts.class ? ' ' + opts.class : '')}, opts.caption ? h('caption', {class: 'sr'}, opts.caption) : null, head, body);
  if (!rows.length && opts.empty) {
    body.appendChild(h('tr', {}, h('td', {colspan: cols.length, class: 'empty'}, opts.empty)));
  }
  return t;
}

// tabs makes an ARIA tab list: arrow keys, Home and End move between tabs;
// select(id) is called with the chosen tab's id.
export function tabs(items, current, select, label) {
  const list = h('div', {role: 'tablist', 'aria-label': label, class: 'tabs'});
  const buttons = items.map(([id, text]) => h('button', {
    role: 'tab', id: 'tab-' + id, type: 'button', 'aria-selected': id === current ? 'true' : 'false',
    'aria-controls': 'tabpanel', tabindex: id === current ? '0' : '-1', dataset: {tab: id},
    onclick: () => select(id),
  }, text));
  list.addEventListener('keydown', e => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % buttons.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + buttons.length) % buttons.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = buttons.length - 1;
    if (j === null) return;
    e.preventDefault();
    buttons[j].focus();
    select(items[j][0]);
  });
  fill(list, buttons);
  return list;
}

export function plural(n, one, many) {
  return n + ' ' + (n === 1 ? one : (many || one + 's'));
}

// debounce runs f once calls have stopped for ms.
export function debounce(f, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}
