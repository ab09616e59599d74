// The incident queue: filters kept in the URL, one page at a time (cursor
// pagination: the server sorts and counts, so 10k incidents cost one page of
// rows here), live updates by polling the view's seq, j/k and Enter.
import {api} from './api.js';
import {h, fill, sev, ago, table, debounce, plural, badge} from './dom.js';
import {setQuery} from './app.js';

const STATUSES = ['active', 'inProgress', 'resolved', 'redirected'];
const SEVERITIES = ['high', 'medium', 'low', 'informational', 'unknown'];
const SORTS = [['lastUpdate', 'Last update (newest)'], ['-lastUpdate', 'Last update (oldest)'], ['created', 'Created (newest)'], ['-created', 'Created (oldest)'], ['severity', 'Severity (highest)'], ['alerts', 'Alerts (most)']];
const TEXT_FILTERS = [['q', 'Title', 'words of the title'], ['entity', 'Entity', 'device:ws5, an IP, a UPN…'], ['tenant', 'Tenant', 'tenant id'],
  ['serviceSource', 'Service source', 'e.g. Microsoft Defender for Endpoint'], ['detectionSource', 'Detection source', 'e.g. EDR'], ['assignedTo', 'Assigned to', 'name@example.com']];
const POLL_MS = 5000;

let state;

export async function render(main, _params, query) {
  state = {filters: fromQuery(query), cursors: [''], page: 0, seq: null, data: null, selected: null, timer: null, ctl: null};
  fill(main,
    h('div', {class: 'page-head'}, h('h1', {}, 'Incidents'), h('span', {id: 'queue-total', class: 'muted'}),
      h('span', {id: 'queue-live', class: 'muted small', title: 'The queue checks for changes every 5 seconds'})),
    filterBar(),
    h('div', {id: 'queue-table', class: 'table-wrap'}),
    h('nav', {class: 'pager', 'aria-label': 'Pages'},
      h('button', {type: 'button', id: 'prev', onclick: () => turn(-1)}, '← Previous'),
      h('span', {id: 'page-info', class: 'muted'}),
      h('button', {type: 'button', id: 'next', onclick: () => turn(1)}, 'Next →')));
  await load();
  state.timer = setInterval(poll, POLL_MS);
  const keys = e => onKey(e);
  document.addEventListener('keydown', keys);
  return () => { clearInterval(state.timer); document.removeEventListener('keydown', keys); if (state.ctl) state.ctl.abort(); };
}

// update follows a change of the fragment's query (back, forward, a link).
export function update(query) {
  const f = fromQuery(query);
  if (JSON.stringify(f) === JSON.stringify(state.filters)) return;
  state.filters = f;
  syncForm();
  restart();
}

function fromQuery(q) {
  const list = k => (q.get(k) || '').split(',').filter(Boolean);
  const f = {status: list('status'), severity: list('severity'), sort: q.get('sort') || 'lastUpdate', from: q.get('from') || '', to: q.get('to') || '', limit: q.get('limit') || '50'};
  for (const [k] of TEXT_FILTERS) f[k] = q.get(k) || '';
  return f;
}

function filterBar() {
  const f = state.filters;
  const checks = (name, values, label) => h('fieldset', {class: 'checks'}, h('legend', {}, label),
    values.map(v => h('label', {}, h('input', {type: 'checkbox', name, value: v, checked: f[name].includes(v), onchange: changed}), ' ', v, ' ', h('span', {class: 'count', 'data-count': name + ':' + v}))));
  const text = debounce(changed, 300);
  return h('form', {class: 'filters', id: 'filters', 'aria-label': 'Filters', onsubmit: e => { e.preventDefault(); changed(); }},
    checks('status', STATUSES, 'Status'),
    checks('severity', SEVERITIES, 'Severity'),
    h('div', {class: 'fields'},
      TEXT_FILTERS.map(([k, label, hint]) => h('label', {}, label, h('input', {type: 'text', name: k, value: f[k], oninput: text, spellcheck: 'false', placeholder: hint}))),
      h('label', {}, 'Updated from (UTC)', h('input', {type: 'datetime-local', name: 'from', value: toLocal(f.from), onchange: changed})),
      h('label', {}, 'to (UTC)', h('input', {type: 'datetime-local', name: 'to', value: toLocal(f.to), onchange: changed})),
      h('label', {}, 'Sort', h('select', {name: 'sort', onchange: changed}, SORTS.map(([v, l]) => h('option', {value: v, selected: v === f.sort}, l)))),
      h('label', {}, 'Per page', h('select', {name: 'limit', onchange: changed}, ['25', '50', '100', '200'].map(v => h('option', {value: v, selected: v === f.limit}, v)))),
      h('button', {type: 'button', onclick: clear}, 'Clear filters')));
}

// datetime-local shows UTC here, as every time on the pane does.
function toLocal(iso) { return iso ? iso.replace(/Z$/, '').slice(0, 16) : ''; }
function fromLocal(v) { return v ? v + ':00Z' : ''; }

function readForm() {
  const form = document.getElementById('filters');
  const f = {status: [], severity: []};
  for (const c of form.querySelectorAll('input[type=checkbox]:checked')) f[c.name].push(c.value);
  for (const [k] of TEXT_FILTERS) f[k] = form.elements[k].value.trim();
  f.from = fromLocal(form.elements.from.value);
  f.to = fromLocal(form.elements.to.value);
  f.sort = form.elements.sort.value;
  f.limit = form.elements.limit.value;
  return f;
}

function syncForm() {
  const form = document.getElementById('filters');
  const f = state.filters;
  for (const c of form.querySelectorAll('input[type=checkbox]')) c.checked = f[c.name].includes(c.value);
  for (const [k] of TEXT_FILTERS) form.elements[k].value = f[k];
  form.elements.from.value = toLocal(f.from);
  form.elements.to.value = toLocal(f.to);
  form.elements.sort.value = f.sort;
  form.elements.limit.value = f.limit;
}

function changed() {
  state.filters = readForm();
  setQuery(Object.fromEntries(Object.entries(state.filters).filter(([k, v]) => !(k === 'sort' && v === 'lastUpdate') && !(k === 'limit' && v === '50'))));
  restart();
}

function clear() {
  state.filters = fromQuery(new URLSearchParams());
  syncForm();
  changed();
}

function restart() {
  state.cursors = [''];
  state.page = 0;
  load();
}

function turn(d) {
  const next = state.page + d;
  if (next < 0 || next >= state.cursors.length || (d > 0 && !state.cursors[next])) return;
  state.page = next;
  load().then(() => document.getElementById('queue-table').querySelector('a')?.focus());
}

function request() {
  const f = state.filters;
  const q = {...f, cursor: state.cursors[state.page]};
  return q;
}

async function load(quiet) {
  if (state.ctl) state.ctl.abort();
  const ctl = state.ctl = new AbortController();
  let data;
  try {
    data = await api('incidents', {query: request(), signal: ctl.signal});
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (!quiet) fill(document.getElementById('queue-table'), h('div', {class: 'error-box', role: 'alert'}, e.message));
    return;
  }
  if (quiet && data.seq === state.seq) return;
  const changedLive = quiet && state.seq !== null;
  state.seq = data.seq;
  state.data = data;
  state.cursors.length = state.page + 1;
  state.cursors.push(data.nextCursor || '');
  draw();
  // Live: say when the rows last changed, quietly (a busy queue changes
  // every few seconds; a screen reader should not announce each).
  document.getElementById('queue-live').textContent = (changedLive ? 'live · updated ' : 'live · loaded ') + new Date().toISOString().slice(11, 19) + ' UTC';
}

// poll redraws only when the view moved, and not while the page is hidden.
function poll() {
  if (document.hidden) return;
  load(true);
}

function draw() {
  const d = state.data;
  const incidents = d.incidents || [];
  const limit = Number(state.filters.limit) || 50;
  const first = state.page * limit;
  document.getElementById('queue-total').textContent = plural(d.total, 'incident');
  document.getElementById('page-info').textContent = incidents.length ? `${first + 1}–${first + incidents.length} of ${d.total}` : '';
  document.getElementById('prev').disabled = state.page === 0;
  document.getElementById('next').disabled = !d.nextCursor;
  for (const c of document.querySelectorAll('[data-count]')) {
    const [k, v] = c.dataset.count.split(':');
    const n = d.counts && d.counts[k] && d.counts[k][v];
    c.textContent = n ? '(' + n + ')' : '';
  }
  const focusedId = document.activeElement && document.activeElement.closest('tr')?.dataset.id;
  const cols = [
    {label: 'Severity', cell: i => sev(i.severity)},
    {label: 'Incident', class: 'wide', cell: i => [h('a', {href: '#/incidents/' + encodeURIComponent(i.id), class: 'title'}, i.displayName || i.id),
      (i.tags || []).length ? h('span', {class: 'tags'}, i.tags.map(t => badge(t))) : null]},
    {label: 'Status', cell: i => badge(i.status, 'status-' + i.status)},
    {label: 'Alerts', class: 'num', cell: i => String(i.alertCount)},
    {label: 'Impacted', cell: impacted},
    {label: 'Sources', cell: i => (i.serviceSources || []).join(', ')},
    {label: 'Assigned', cell: i => i.assignedTo || h('span', {class: 'muted'}, '—')},
    {label: 'Tenant', cell: i => h('span', {class: 'mono small'}, i.tenantId)},
    {label: 'Last update', cell: i => ago(i.lastUpdateDateTime)},
  ];
  const t = table(cols, incidents, {
    class: 'queue', caption: 'Incidents',
    empty: 'No incident matches these filters.',
    rowAttrs: i => ({dataset: {id: i.id}, class: i.id === state.selected ? 'selected' : null}),
  });
  fill(document.getElementById('queue-table'), t);
  if (focusedId) t.querySelector(`tr[data-id="${CSS.escape(focusedId)}"] a`)?.focus({preventScroll: true});
}

function impacted(i) {
  const a = i.impactedAssets || {};
  const parts = [];
  const n = (k, one) => { const c = (a[k] || []).length; if (c) parts.push(plural(c, one)); };
  n('devices', 'device'); n('users', 'user'); n('mailboxes', 'mailbox', 'mailboxes');
  return parts.join(', ') || h('span', {class: 'muted'}, '—');
}

// j/k (or ↓/↑ on a row) move through the queue's rows; Enter follows the link.
function onKey(e) {
  const t = e.target;
  if (t && /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const links = [...document.querySelectorAll('#queue-table a.title')];
  if (!links.length) return;
  const i = links.indexOf(document.activeElement);
  let j = null;
  if (e.key === 'j' || (e.key === 'ArrowDown' && i >= 0)) j = Math.min(i + 1, links.length - 1);
  else if (e.key === 'k' || (e.key === 'ArrowUp' && i >= 0)) j = Math.max(i - 1, 0);
  else if (e.key === 'n') return turn(1);
  else if (e.key === 'p') return turn(-1);
  if (j === null) return;
  e.preventDefault();
  links[j].focus();
  state.selected = links[j].closest('tr').dataset.id;
}
