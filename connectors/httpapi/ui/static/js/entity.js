// An entity's page: the incidents and alerts that name it, the actions on
// it, and its recent telemetry from the hunting partitions.
import {api, seg} from './api.js';
import {h, fill, sev, ago, when, table, badge, plural} from './dom.js';
import {actionTable} from './actions.js';
import {resultTable} from './hunt.js';

// entityPath is the API path of an entity: the id is one escaped segment
// (a URL's slashes included), which the API's {id...} route unescapes.
export function entityPath(type, id) {
  return 'entities/' + seg(type) + '/' + seg(id);
}

export async function render(main, [type, id], _query, ctx) {
  const d = await api(entityPath(type, id));
  const e = d.entity || {type, id};
  const incidents = d.incidents || [], alerts = d.alerts || [], actions = d.actions || [];
  fill(main,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/incidents'}, 'Incidents'), ' / ', e.type),
    h('div', {class: 'page-head'}, h('h1', {id: 'entity-title'}, h('span', {class: 'etype'}, e.type), ' ', e.id),
      h('a', {href: '#/incidents?entity=' + encodeURIComponent(e.type + ':' + e.id)}, 'Filter the queue by it')),
    h('p', {class: 'facts'}, plural(incidents.length, 'incident'), ' · ', plural(alerts.length, 'alert'), ' · ', plural(actions.length, 'action')),
    h('h2', {}, 'Incidents'),
    table([
      {label: 'Severity', cell: i => sev(i.severity)},
      {label: 'Incident', class: 'wide', cell: i => h('a', {href: '#/incidents/' + encodeURIComponent(i.id)}, i.displayName || i.id)},
      {label: 'Status', cell: i => badge(i.status, 'status-' + i.status)},
      {label: 'Alerts', class: 'num', cell: i => String(i.alertCount)},
      {label: 'Last update', cell: i => ago(i.lastUpdateDateTime)},
    ], incidents, {caption: 'Incidents', empty: 'No incident names it.'}),
    h('h2', {}, 'Alerts'),
    table([
      {label: 'Time', cell: a => when(a.createdDateTime)},
      {label: 'Severity', cell: a => sev(a.severity)},
      {label: 'Alert', class: 'wide', cell: a => a.title},
      {label: 'Category', cell: a => a.category || ''},
      {label: 'Incident', cell: a => h('a', {href: '#/incidents/' + encodeURIComponent(a.incidentId) + '?tab=alerts', class: 'mono small'}, a.incidentId)},
    ], alerts, {caption: 'Alerts', empty: 'No alert names it.'}),
    h('h2', {}, 'Response actions'),
    actionTable(actions, ctx, {empty: 'No action on it.', onChange: () => render(main, [type, id], _query, ctx)}),
    h('h2', {}, 'Recent telemetry'),
    d.telemetry ? [h('p', {class: 'muted'}, 'Latest rows of ', h('code', {}, d.telemetry.table), ' naming it', d.telemetry.truncated ? ' (more exist: hunt for them)' : ''),
      resultTable(d.telemetry)]
      : h('p', {class: 'muted'}, d.telemetryError || 'No telemetry for this kind of entity, or no hunting partitions yet.'));
}
