// The action center: pending actions to approve or reject (with a comment)
// and the history of every decided action. actionTable is shared with the
// incident and entity pages.
import {api, seg} from './api.js';
import {h, fill, ago, table, tabs, badge, plural, debounce} from './dom.js';
import {setQuery, flash} from './app.js';

const VIEWS = [['pending', 'Pending'], ['history', 'History']];
const HISTORY = ['approved', 'rejected', 'sent', 'succeeded', 'failed', 'expired'];
const POLL_MS = 5000;

let st;
let following = 0; // decisions whose new status is awaited

export async function render(main, _params, query, ctx) {
  st = {view: query.get('view') === 'history' ? 'history' : 'pending', filters: {tenant: query.get('tenant') || '', type: query.get('type') || '', incident: query.get('incident') || ''},
    cursors: [''], page: 0, seq: null, ctx, main, timer: null};
  const text = debounce(() => { readFilters(); restart(); }, 300);
  fill(main,
    h('div', {class: 'page-head'}, h('h1', {}, 'Action center'), h('span', {id: 'actions-total', class: 'muted', 'aria-live': 'polite'})),
    tabs(VIEWS, st.view, select, 'Actions'),
    h('form', {class: 'filters inline', id: 'action-filters', onsubmit: e => e.preventDefault()},
      [['tenant', 'Tenant'], ['type', 'Action type'], ['incident', 'Incident']].map(([k, l]) =>
        h('label', {}, l, h('input', {name: k, value: st.filters[k], oninput: text, spellcheck: 'false'})))),
    h('section', {id: 'tabpanel', role: 'tabpanel', 'aria-labelledby': 'tab-' + st.view}),
    h('nav', {class: 'pager', 'aria-label': 'Pages'},
      h('button', {type: 'button', id: 'prev', onclick: () => turn(-1)}, '← Previous'),
      h('span', {id: 'page-info', class: 'muted'}),
      h('button', {type: 'button', id: 'next', onclick: () => turn(1)}, 'Next →')));
  await load();
  // A decision being written or followed is never redrawn away.
  st.timer = setInterval(() => { if (!document.hidden && !following && !main.querySelector('.decide')) load(true); }, POLL_MS);
  return () => clearInterval(st.timer);
}

export function update(query) {
  const v = query.get('view') === 'history' ? 'history' : 'pending';
  if (v !== st.view) select(v);
}

function select(v) {
  st.view = v;
  for (const b of st.main.querySelectorAll('[role=tab]')) {
    b.setAttribute('aria-selected', b.dataset.tab === v ? 'true' : 'false');
    b.tabIndex = b.dataset.tab === v ? 0 : -1;
  }
  document.getElementById('tabpanel').setAttribute('aria-labelledby', 'tab-' + v);
  syncURL();
  restart();
}

function readFilters() {
  const f = document.getElementById('action-filters').elements;
  st.filters = {tenant: f.tenant.value.trim(), type: f.type.value.trim(), incident: f.incident.value.trim()};
  syncURL();
}

function syncURL() { setQuery({...(st.view === 'history' ? {view: 'history'} : {}), ...st.filters}); }

function restart() { st.cursors = ['']; st.page = 0; st.seq = null; load(); }

function turn(d) {
  const n = st.page + d;
  if (n < 0 || n >= st.cursors.length || (d > 0 && !st.cursors[n])) return;
  st.page = n;
  load();
}

async function load(quiet) {
  let data;
  try {
    data = await api('actions', {query: {status: st.view === 'pending' ? 'pending' : HISTORY, ...st.filters, limit: 50, cursor: st.cursors[st.page]}});
  } catch (e) {
    if (!quiet) fill(document.getElementById('tabpanel'), h('div', {class: 'error-box', role: 'alert'}, e.message));
    return;
  }
  if (quiet && data.seq === st.seq) return;
  st.seq = data.seq;
  st.cursors.length = st.page + 1;
  st.cursors.push(data.nextCursor || '');
  document.getElementById('actions-total').textContent = plural(data.total, st.view === 'pending' ? 'pending action' : 'decided action');
  const list = data.actions || [];
  document.getElementById('page-info').textContent = list.length ? `${st.page * 50 + 1}–${st.page * 50 + list.length} of ${data.total}` : '';
  document.getElementById('prev').disabled = st.page === 0;
  document.getElementById('next').disabled = !data.nextCursor;
  fill(document.getElementById('tabpanel'), actionTable(list, st.ctx, {onChange: () => load(true), empty: st.view === 'pending' ? 'Nothing waits for a decision.' : 'No action was decided yet.'}));
}

// target says what an action acts on, in a person's words.
export function target(a) {
  const t = a.target || {};
  return [t.deviceName || t.deviceId, t.upn || t.accountObjectId || t.sid, t.recipient, t.sha256 || t.sha1, t.indicator].filter(Boolean).join(' · ');
}

// actionTable lists actions; a pending one has Approve and Reject buttons for
// those who may decide, which ask for a comment, send the decision, then
// follow the action until the respond stage publishes its new status.
export function actionTable(list, ctx, {onChange, empty = 'No action.', showIncident = true} = {}) {
  const may = ctx.can('approve');
  const cols = [
    {label: 'Action', class: 'wide', cell: a => [h('b', {}, a.description || a.type), h('div', {class: 'muted small'}, a.reason)]},
    {label: 'Target', cell: a => h('span', {class: 'mono small'}, target(a))},
    showIncident ? {label: 'Incident', cell: a => a.incidentId ? h('a', {href: '#/incidents/' + encodeURIComponent(a.incidentId), class: 'mono small'}, a.incidentId) : '—'} : null,
    {label: 'Automation', cell: a => a.automation},
    {label: 'Status', cell: a => h('span', {class: 'action-status'}, badge(a.status, 'status-' + a.status),
      (a.approvals || []).length ? h('div', {class: 'muted small'}, a.approvals.map(p => `${p.decision} by ${p.by}${p.comment ? ': “' + p.comment + '”' : ''}`).join('; ')) : null,
      a.error ? h('div', {class: 'error small'}, a.error) : null)},
    {label: 'Updated', cell: a => ago(a.lastUpdateDateTime)},
    {label: 'Decide', cell: a => a.status === 'pending' && may ? h('span', {class: 'decide-buttons'},
      h('button', {type: 'button', class: 'approve', onclick: e => decide(e.target, a, 'approve', onChange)}, 'Approve'), ' ',
      h('button', {type: 'button', class: 'reject', onclick: e => decide(e.target, a, 'reject', onChange)}, 'Reject'))
      : (a.status === 'pending' ? h('span', {class: 'muted small'}, 'a responder decides') : '')},
  ].filter(Boolean);
  return table(cols, list, {class: 'actions', caption: 'Actions', empty, rowAttrs: a => ({dataset: {action: a.id}})});
}

function decide(button, a, verb, onChange) {
  const row = button.closest('tr');
  if (row.nextElementSibling?.classList.contains('decide')) row.nextElementSibling.remove();
  const cols = row.children.length;
  const form = h('form', {class: 'decide-form'},
    h('label', {}, (verb === 'approve' ? 'Approve' : 'Reject') + ' “' + (a.description || a.type) + '”. Comment (optional)',
      h('textarea', {name: 'comment', rows: '2', maxlength: '1024'})),
    h('div', {class: 'buttons'},
      h('button', {class: verb === 'approve' ? 'primary confirm' : 'danger confirm'}, verb === 'approve' ? 'Approve' : 'Reject'), ' ',
      h('button', {type: 'button', class: 'cancel', onclick: () => { extra.remove(); button.focus(); }}, 'Cancel'),
      h('span', {class: 'error', role: 'alert'})));
  const extra = h('tr', {class: 'decide'}, h('td', {colspan: cols}, form));
  row.after(extra);
  form.elements.comment.focus();
  form.addEventListener('keydown', e => { if (e.key === 'Escape') { extra.remove(); button.focus(); } });
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const status = row.querySelector('.action-status');
    form.querySelector('.confirm').disabled = true;
    try {
      await api('actions/' + seg(a.id) + '/' + verb, {method: 'POST', body: {comment: form.elements.comment.value.trim()}});
    } catch (err) {
      form.querySelector('.confirm').disabled = false;
      form.querySelector('.error').textContent = err.message;
      return;
    }
    extra.remove();
    row.querySelectorAll('.decide-buttons button').forEach(b => { b.disabled = true; });
    fill(status, badge(verb === 'approve' ? 'approving…' : 'rejecting…', 'status-pending'));
    following++;
    const done = await follow(a.id).finally(() => { following--; });
    if (done) {
      fill(status, badge(done.status, 'status-' + done.status));
      row.querySelector('.decide-buttons')?.replaceChildren();
      flash(`${done.description || done.type}: ${done.status}.`);
    } else {
      fill(status, badge('decision sent', 'status-pending'));
      flash('The decision was recorded; the respond stage has not published the new status yet.', 'error');
    }
    if (onChange) setTimeout(onChange, 3000);
  });
}

// follow polls an action until its status moves from pending (30 s at most).
async function follow(id) {
  for (let i = 0; i < 60; i++) {
    await new Promise(r => setTimeout(r, 500));
    try {
      const {action} = await api('actions/' + seg(id));
      if (action.status !== 'pending') return action;
    } catch { /* try again */ }
  }
  return null;
}
