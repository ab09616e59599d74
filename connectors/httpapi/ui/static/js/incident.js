// One incident's story: tabs for its summary, alerts, devices, users,
// mailboxes, evidence and response, and the graph of how its alerts were
// joined with the timeline of the attack.
import {api, seg} from './api.js';
import {h, fill, sev, when, ago, table, tabs, badge, plural, entityLink, ASSET_TYPES} from './dom.js';
import {setQuery, flash} from './app.js';
import {drawGraph} from './graph.js';
import {actionTable} from './actions.js';

const TABS = [['summary', 'Summary'], ['alerts', 'Alerts'], ['devices', 'Devices'], ['users', 'Users'], ['mailboxes', 'Mailboxes'],
  ['evidence', 'Evidence and response'], ['graph', 'Graph']];
const STATUSES = ['active', 'inProgress', 'resolved'];
const CLASSIFICATIONS = ['', 'unknown', 'falsePositive', 'truePositive', 'informationalExpectedActivity'];
const DETERMINATIONS = ['', 'unknown', 'apt', 'malware', 'securityPersonnel', 'securityTesting', 'unwantedSoftware', 'other', 'multiStagedAttack',
  'compromisedAccount', 'phishing', 'maliciousUserActivity', 'notMalicious', 'notEnoughDataToValidate', 'confirmedUserActivity', 'lineOfBusinessApplication'];
const POLL_MS = 5000;

let st;

export async function render(main, [id], query, ctx) {
  st = {id, tab: TABS.some(t => t[0] === query.get('tab')) ? query.get('tab') : 'summary', data: null, ctx, main, timer: null};
  st.data = await api('incidents/' + seg(id));
  draw();
  // Live: a new alert or action shows without a reload; a form being
  // filled in is never redrawn under the person typing.
  st.timer = setInterval(async () => {
    const form = main.querySelector('form.manage');
    if (document.hidden || (form && (form.classList.contains('editing') || form.contains(document.activeElement)))) return;
    try {
      const d = await api('incidents/' + seg(id));
      if (JSON.stringify(d) !== JSON.stringify(st.data)) { st.data = d; draw(true); }
    } catch { /* keep what is shown */ }
  }, POLL_MS);
  return () => clearInterval(st.timer);
}

export function update(query) {
  const t = query.get('tab') || 'summary';
  if (t !== st.tab && TABS.some(x => x[0] === t)) { st.tab = t; drawTab(); }
}

function draw(keepFocus) {
  const inc = st.data.incident;
  const focused = keepFocus && document.activeElement && document.activeElement.id;
  // A live redraw keeps the alerts a person opened open.
  const opened = [...st.main.querySelectorAll('tr[data-alert] details[open]')].map(d => d.closest('tr').dataset.alert);
  const alerts = inc.alerts || [];
  fill(st.main,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/incidents'}, 'Incidents'), ' / ', h('span', {class: 'mono'}, inc.id)),
    h('div', {class: 'incident-head'},
      h('h1', {id: 'incident-title'}, inc.displayName || inc.id),
      h('div', {class: 'facts'},
        sev(inc.severity), ' ', badge(inc.status, 'status-' + inc.status), ' ',
        h('span', {id: 'alert-count', 'data-count': alerts.length}, plural(alerts.length, 'alert')), ' · ',
        'tenant ', h('span', {class: 'mono'}, inc.tenantId), ' · ',
        'created ', when(inc.createdDateTime), ' · updated ', ago(inc.lastUpdateDateTime),
        inc.assignedTo ? [' · assigned to ', h('b', {}, inc.assignedTo)] : null,
        inc.classification && inc.classification !== 'unknown' ? [' · ', badge(inc.classification + (inc.determination && inc.determination !== 'unknown' ? ' / ' + inc.determination : ''))] : null,
        (inc.tags || []).map(t => [' ', badge(t)]))),
    tabs(TABS.map(([k, l]) => [k, l + count(k)]), st.tab, select, 'Incident'),
    h('section', {id: 'tabpanel', role: 'tabpanel', tabindex: '0', 'aria-labelledby': 'tab-' + st.tab}));
  drawTab();
  for (const id of opened) {
    const d = st.main.querySelector(`tr[data-alert="${CSS.escape(id)}"] details`);
    if (d) d.open = true;
  }
  if (focused) document.getElementById(focused)?.focus({preventScroll: true});
}

function count(tab) {
  const inc = st.data.incident, a = inc.impactedAssets || {};
  const n = {alerts: (inc.alerts || []).length, devices: (a.devices || []).length, users: (a.users || []).length,
    mailboxes: (a.mailboxes || []).length, evidence: (st.data.actions || []).length}[tab];
  return n === undefined ? '' : ` (${n})`;
}

function select(tab) {
  st.tab = tab;
  setQuery(tab === 'summary' ? {} : {tab});
  for (const b of st.main.querySelectorAll('[role=tab]')) {
    const on = b.dataset.tab === tab;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.tabIndex = on ? 0 : -1;
  }
  drawTab();
}

function drawTab() {
  const p = document.getElementById('tabpanel');
  p.setAttribute('aria-labelledby', 'tab-' + st.tab);
  const f = {summary, alerts: alertsTab, devices: () => assetsTab('devices'), users: () => assetsTab('users'),
    mailboxes: () => assetsTab('mailboxes'), evidence: evidenceTab, graph: graphTab}[st.tab];
  fill(p, f());
}

function summary() {
  const d = st.data, inc = d.incident;
  const a = inc.impactedAssets || {};
  return [
    h('div', {class: 'cols'},
      h('div', {},
        h('h2', {}, 'What happened'),
        h('p', {}, inc.description),
        h('h2', {}, 'Impacted assets'),
        h('dl', {class: 'assets'}, ASSET_TYPES.filter(([k]) => (a[k] || []).length).map(([k, type, label]) =>
          [h('dt', {}, label), h('dd', {}, a[k].map(id => [entityLink(type, id), ' ']))])),
        h('h2', {}, 'Why these alerts are one incident'),
        linksList(d.links || []),
        h('h2', {}, 'Timeline'),
        timeline(d.timeline || [])),
      h('div', {},
        st.ctx.can('update') ? manageForm(inc) : null,
        h('h2', {}, 'Comments'),
        (inc.comments || []).length ? h('ul', {class: 'comments'}, inc.comments.map(c => h('li', {}, h('b', {}, c.by), ' ', ago(c.time), h('p', {}, c.text))))
          : h('p', {class: 'muted'}, 'No comment yet.'),
        h('h2', {}, 'History'),
        table([
          {label: 'Version', cell: v => v.version + (v.revision ? '.' + v.revision : '')},
          {label: 'By', cell: v => v.source === 'analyst' ? (v.by || 'analyst') : v.source},
          {label: 'When', cell: v => ago(v.time)},
          {label: 'Change', cell: v => v.change || [v.status, v.severity, v.alertCount !== undefined ? plural(v.alertCount, 'alert') : null].filter(Boolean).join(', ')},
        ], (d.history || []).slice().reverse(), {class: 'compact', caption: 'Version history'}))),
  ];
}

// linksList says, for each correlation link, which two alerts share which
// entity: what an analyst reads first.
function linksList(links) {
  if (!links.length) return h('p', {class: 'muted'}, 'One alert: nothing joined it to another yet.');
  const titles = new Map((st.data.incident.alerts || []).map(a => [a.id, a.title]));
  const alert = id => h('q', {title: id}, titles.get(id) || id);
  return h('ul', {class: 'links'}, links.map(l => h('li', {},
    alert(l.alerts[0]), ' and ', alert(l.alerts[1]), ' share ',
    l.type ? entityLink(l.type, l.id, l.type + ' ' + l.id) : h('span', {class: 'mono'}, l.entity),
    l.mergedIncidentId ? [' (merged incident ', h('span', {class: 'mono'}, l.mergedIncidentId), ')'] : null)));
}

export function timeline(items) {
  if (!items.length) return h('p', {class: 'muted'}, 'No alert yet.');
  return h('ol', {class: 'timeline', 'aria-label': 'Attack story'}, items.map(t => h('li', {class: 'tl-' + (t.severity || 'unknown')},
    when(t.time), ' ', sev(t.severity), ' ', h('b', {}, t.title), t.category ? h('span', {class: 'muted'}, ' · ' + t.category) : null,
    h('span', {class: 'muted mono small'}, ' ' + t.alertId))));
}

function manageForm(inc) {
  const sel = (name, values, cur) => h('select', {name}, values.map(v => h('option', {value: v, selected: v === (cur || '')}, v || '—')));
  const form = h('form', {class: 'manage', 'aria-labelledby': 'manage-title'},
    h('h2', {id: 'manage-title'}, 'Manage incident'),
    h('label', {}, 'Status', sel('status', STATUSES, inc.status)),
    h('label', {}, 'Classification', sel('classification', CLASSIFICATIONS, inc.classification)),
    h('label', {}, 'Determination', sel('determination', DETERMINATIONS, inc.determination)),
    h('label', {}, 'Assigned to', h('input', {name: 'assignedTo', value: inc.assignedTo || '', placeholder: 'name@example.com'})),
    h('label', {}, 'Tags (comma-separated)', h('input', {name: 'tags', value: (inc.tags || []).filter(t => !t.startsWith('stitch:')).join(', ')})),
    h('label', {}, 'Comment', h('textarea', {name: 'comment', rows: '3', maxlength: '4096'})),
    h('div', {class: 'buttons'}, h('button', {class: 'primary'}, 'Save'), h('span', {class: 'error', role: 'alert'})));
  for (const ev of ['input', 'change']) form.addEventListener(ev, () => form.classList.add('editing'));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const f = form.elements, body = {};
    if (f.status.value !== inc.status) body.status = f.status.value;
    if (f.classification.value !== (inc.classification || '') && f.classification.value) body.classification = f.classification.value;
    if (f.determination.value !== (inc.determination || '') && f.determination.value) body.determination = f.determination.value;
    if (f.assignedTo.value.trim() !== (inc.assignedTo || '')) body.assignedTo = f.assignedTo.value.trim();
    const tags = f.tags.value.split(',').map(s => s.trim()).filter(Boolean);
    if (tags.join(',') !== (inc.tags || []).filter(t => !t.startsWith('stitch:')).join(',')) body.tags = tags;
    if (f.comment.value.trim()) body.comment = f.comment.value.trim();
    if (!Object.keys(body).length) { form.querySelector('.error').textContent = 'Nothing changed.'; return; }
    try {
      // If-Match: the revision this form was drawn from, so that a change
      // another analyst saved meanwhile is not overwritten unseen.
      const res = await api('incidents/' + seg(inc.id), {method: 'PATCH', body, headers: {'If-Match': '"' + (inc.revision || 0) + '"'}});
      st.data.incident = res.incident;
      try { st.data = await api('incidents/' + seg(inc.id)); } catch { /* the answer is enough */ }
      flash('Saved.');
      draw();
    } catch (err) {
      if (err.status === 412) {
        // Someone else saved first: show their change, keep nothing stale.
        try { st.data = await api('incidents/' + seg(inc.id)); draw(); } catch { /* keep the form */ }
        flash(err.message + ' Your change was not saved.', 'error');
        return;
      }
      form.querySelector('.error').textContent = err.message;
    }
  });
  return form;
}

function alertsTab() {
  const alerts = (st.data.incident.alerts || []).slice().sort((a, b) => String(a.createdDateTime).localeCompare(String(b.createdDateTime)));
  return table([
    {label: 'Time', cell: a => when(a.createdDateTime)},
    {label: 'Severity', cell: a => sev(a.severity)},
    {label: 'Alert', class: 'wide', cell: a => h('details', {}, h('summary', {}, a.title), alertDetail(a))},
    {label: 'Category', cell: a => a.category},
    {label: 'Service source', cell: a => a.serviceSource},
    {label: 'Detection source', cell: a => a.detectionSource},
    {label: 'MITRE', cell: a => (a.mitreTechniques || []).join(', ')},
    {label: 'Evidence', class: 'num', cell: a => String((a.evidence || []).length)},
  ], alerts, {caption: 'Alerts', class: 'alerts', rowAttrs: a => ({dataset: {alert: a.id}})});
}

function alertDetail(a) {
  return h('div', {class: 'detail'},
    h('p', {class: 'mono small'}, a.id),
    a.description ? h('p', {}, a.description) : null,
    h('p', {}, 'First activity ', when(a.firstActivityDateTime), ', last ', when(a.lastActivityDateTime)),
    evidenceTable(a.evidence || [], false));
}

// Entity ids as the view keys them (internal/view evidenceRefs, after
// operators/correlate): a device by its first name label, lower-cased; a
// user by UPN, object id, SID or DOMAIN\name; hashes and addresses lower-cased.
const deviceId = ev => {
  const n = (ev.deviceDnsName || '').trim();
  if (n && !/^[0-9.]+$|:/.test(n)) return n.split('.')[0].toLowerCase();
  return (ev.mdeDeviceId || n).toLowerCase();
};
const userId = u => {
  if (u.userPrincipalName) return u.userPrincipalName.trim().toLowerCase();
  if (u.azureAdUserId) return u.azureAdUserId.trim().replace(/^\{|\}$/g, '').toLowerCase();
  if (u.userSid) return u.userSid.trim().toUpperCase();
  let d = (u.domainName || '').toLowerCase(), n = (u.accountName || '').toLowerCase();
  if (n.includes('\\')) [d, n] = n.split('\\', 2);
  return d.split('.')[0] + '\\' + n;
};

// describe says what one evidence names, and links it to its entity page.
function describe(ev) {
  const t = (ev['@odata.type'] || '').replace('#microsoft.graph.security.', '').replace(/Evidence$/, '');
  const u = ev.userAccount || {}, f = ev.fileDetails || {};
  const hash = (f.sha256 || f.sha1 || '').toLowerCase();
  switch (t) {
    case 'device': return [t, entityLink('device', deviceId(ev), ev.deviceDnsName || ev.mdeDeviceId)];
    case 'user': return [t, entityLink('user', userId(u), u.userPrincipalName || (u.domainName ? u.domainName + '\\' : '') + (u.accountName || ''))];
    case 'mailbox': return [t, entityLink('mailbox', (ev.primaryAddress || '').trim().toLowerCase(), ev.primaryAddress || ev.displayName)];
    case 'file': case 'process': return [t, hash ? entityLink('file', hash, f.fileName || hash) : (f.fileName || ''),
      ev.processCommandLine ? h('div', {class: 'mono small cmd'}, ev.processCommandLine) : null];
    case 'ip': return [t, entityLink('ip', ev.ipAddress)];
    case 'url': return [t, entityLink('url', ev.url)];
    case 'analyzedMessage': return ['email', ev.subject || ev.networkMessageId];
    case 'cloudApplication': return ['app', ev.appId ? entityLink('app', ev.appId, ev.displayName || ev.appId) : ev.displayName];
    case 'registryKey': case 'registryValue': return [t, h('span', {class: 'mono small'}, [ev.registryKey, ev.registryValueName, ev.registryValue].filter(Boolean).join(' · '))];
    default: return [t || 'evidence', ev.displayName || ''];
  }
}

function evidenceTable(rows, withAlert) {
  return table([
    withAlert ? {label: 'Alert', cell: r => r.alert.title} : null,
    {label: 'Kind', cell: r => describe(r.ev || r)[0]},
    {label: 'Entity', class: 'wide', cell: r => describe(r.ev || r).slice(1)},
    {label: 'Roles', cell: r => ((r.ev || r).roles || []).join(', ')},
  ].filter(Boolean), rows, {class: 'compact', caption: 'Evidence', empty: 'No evidence.'});
}

function assetsTab(key) {
  const [, type, label] = ASSET_TYPES.find(a => a[0] === key);
  const ids = (st.data.incident.impactedAssets || {})[key] || [];
  // Which alerts name each entity: the graph's evidence edges say it.
  const g = st.data.graph || {nodes: [], edges: []};
  const byNode = new Map(g.nodes.map(n => [n.id, n]));
  const named = new Map();
  for (const e of g.edges) {
    if (e.kind !== 'evidence') continue;
    const n = byNode.get(e.to);
    if (!n || n.kind !== type) continue;
    const a = byNode.get(e.from);
    const k = n.label || n.id;
    if (!named.has(k)) named.set(k, []);
    named.get(k).push(a ? a.label : e.from);
  }
  const acts = st.data.actions || [];
  return table([
    {label: {device: 'Device', user: 'User', mailbox: 'Mailbox'}[type] || label, class: 'wide', cell: id => entityLink(type, id)},
    {label: 'Alerts naming it', cell: id => (named.get(id) || []).join('; ') || h('span', {class: 'muted'}, '—')},
    {label: 'Actions', cell: id => acts.filter(a => JSON.stringify(a.target).toLowerCase().includes(id.toLowerCase())).map(a => [badge(a.type + ': ' + a.status, 'status-' + a.status), ' '])},
  ], ids, {caption: label, empty: 'No ' + label.toLowerCase() + ' in this incident.'});
}

function evidenceTab() {
  const rows = [];
  for (const a of st.data.incident.alerts || []) for (const ev of a.evidence || []) rows.push({alert: a, ev});
  return [
    h('h2', {}, 'Response actions'),
    actionTable(st.data.actions || [], st.ctx, {onChange: refresh, showIncident: false}),
    h('h2', {}, 'Evidence'),
    evidenceTable(rows, true),
  ];
}

async function refresh() {
  try { st.data = await api('incidents/' + seg(st.id)); draw(true); } catch (e) { flash(e.message, 'error'); }
}

// withAlertLinks makes an alert of the graph open in the Alerts tab.
function withAlertLinks(graph) {
  graph.addEventListener('stitch:alert', e => {
    select('alerts');
    const row = document.querySelector(`tr[data-alert="${CSS.escape(e.detail)}"]`);
    if (!row) return;
    row.querySelector('details').open = true;
    // Focus the row, not the summary: the Enter that chose the node may
    // still be on its way, and on a summary it would close the alert.
    row.tabIndex = -1;
    row.focus();
  });
  return graph;
}

function graphTab() {
  const d = st.data;
  return [
    h('p', {class: 'muted'}, 'Alerts on the left in the order they happened; the entities their evidence names on the right. Curved lines join alerts that share an entity: the links that made this one incident. Point at or Tab to a node to see its lines; click or Enter opens it.'),
    withAlertLinks(drawGraph(d.graph || {nodes: [], edges: []}, d.timeline || [])),
    h('h2', {}, 'Links that joined them'),
    linksList(d.links || []),
    h('h2', {}, 'Timeline of the attack story'),
    timeline(d.timeline || []),
  ];
}
