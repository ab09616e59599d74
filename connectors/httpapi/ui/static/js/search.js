// The results of a header search that named no single entity.
import {api} from './api.js';
import {h, fill, table, entityLink} from './dom.js';

export async function render(main, _params, query) {
  const q = query.get('q') || '';
  const d = q ? await api('entities/search', {query: {q, limit: 50}}) : {results: []};
  if (d.exact) {
    location.replace('#/entities/' + encodeURIComponent(d.exact.type) + '/' + encodeURIComponent(d.exact.id));
    return;
  }
  fill(main,
    h('h1', {}, 'Entities matching ', h('q', {}, q)),
    table([
      {label: 'Type', cell: r => h('span', {class: 'etype'}, r.type)},
      {label: 'Entity', class: 'wide', cell: r => entityLink(r.type, r.id, r.label)},
      {label: 'Incidents', class: 'num', cell: r => String(r.incidents || 0)},
    ], d.results || [], {caption: 'Entities', empty: 'No device, user, file, IP, URL or mailbox of your incidents matches.'}));
  main.querySelector('tbody a')?.focus();
}
