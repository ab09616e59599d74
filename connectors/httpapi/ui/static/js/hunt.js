// The hunting console: a KQL or SQL query over the hunting partitions, its
// rows as a table and a bar chart of one column (counted, or summed by
// another).
import {api} from './api.js';
import {h, fill, table, plural} from './dom.js';
import {flash} from './app.js';

const EXAMPLES = [
  ['Processes by device (KQL)', 'kql', 'DeviceProcessEvents\n| summarize Processes = count() by DeviceName\n| top 15 by Processes'],
  ['Logons by account (KQL)', 'kql', 'DeviceLogonEvents\n| summarize Logons = count() by AccountName\n| top 15 by Logons'],
  ['Alerts by category (KQL)', 'kql', 'AlertInfo\n| summarize Alerts = count() by Category'],
  ['Latest network events (SQL)', 'sql', 'SELECT Timestamp, DeviceName, RemoteIP, RemotePort, RemoteUrl\nFROM DeviceNetworkEvents\nORDER BY Timestamp DESC\nLIMIT 100'],
];
const MAX_ROWS_SHOWN = 500;
const KEY = 'stitch.hunt';

let st;

export async function render(main, _params, _query, ctx) {
  const saved = JSON.parse(sessionStorage.getItem(KEY) || 'null') || {query: EXAMPLES[0][2], language: 'kql', since: '', tenant: '', limit: '1000'};
  st = {result: null, ctx};
  const may = ctx.can('hunt');
  fill(main,
    h('div', {class: 'page-head'}, h('h1', {}, 'Hunting'),
      h('span', {class: 'muted'}, 'Queries run over the Parquet hunting partitions of your tenants.')),
    !may ? h('p', {class: 'error-box', role: 'alert'}, 'Your role may not hunt (analysts and admins may).') : null,
    h('form', {id: 'hunt-form', class: 'hunt', 'aria-label': 'Hunting query'},
      h('label', {for: 'hunt-query'}, 'Query ', h('span', {class: 'muted small'}, '(Ctrl+Enter runs it)')),
      h('textarea', {id: 'hunt-query', name: 'query', rows: '8', spellcheck: 'false', class: 'mono'}, saved.query),
      h('div', {class: 'fields'},
        h('label', {}, 'Language', h('select', {name: 'language'}, [['kql', 'KQL'], ['sql', 'SQL']].map(([v, l]) => h('option', {value: v, selected: v === saved.language}, l)))),
        h('label', {}, 'Tenant', h('input', {name: 'tenant', value: saved.tenant, placeholder: (ctx.me && ctx.me.tenants || []).filter(t => t !== '*').join(', ') || 'all of yours'})),
        h('label', {}, 'Since', h('input', {name: 'since', value: saved.since, size: '6', placeholder: 'all, or 24h'})),
        h('label', {}, 'Row limit', h('input', {name: 'limit', type: 'number', min: '1', max: '30000', value: saved.limit})),
        h('label', {}, 'Examples', h('select', {name: 'example', onchange: example}, h('option', {value: ''}, 'Pick one…'), EXAMPLES.map(([l], i) => h('option', {value: String(i)}, l)))),
        h('button', {class: 'primary', id: 'hunt-run', disabled: !may}, 'Run query'))),
    h('div', {id: 'hunt-status', role: 'status', 'aria-live': 'polite', class: 'muted'}),
    h('section', {id: 'hunt-results', 'aria-label': 'Results'}));
  const form = document.getElementById('hunt-form');
  form.addEventListener('submit', e => { e.preventDefault(); run(); });
  form.elements.query.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
}

function example(e) {
  const ex = EXAMPLES[Number(e.target.value)];
  if (!ex) return;
  const f = document.getElementById('hunt-form').elements;
  f.query.value = ex[2];
  f.language.value = ex[1];
  e.target.value = '';
  f.query.focus();
}

async function run() {
  const f = document.getElementById('hunt-form').elements;
  const body = {query: f.query.value, language: f.language.value, since: f.since.value.trim() || undefined,
    tenant: f.tenant.value.trim() || undefined, limit: Number(f.limit.value) || undefined};
  sessionStorage.setItem(KEY, JSON.stringify({query: body.query, language: body.language, since: f.since.value, tenant: f.tenant.value, limit: f.limit.value}));
  const status = document.getElementById('hunt-status');
  status.textContent = 'Running…';
  const btn = document.getElementById('hunt-run');
  btn.disabled = true;
  try {
    st.result = await api('hunt', {method: 'POST', body});
  } catch (e) {
    status.textContent = '';
    fill(document.getElementById('hunt-results'), h('div', {class: 'error-box', role: 'alert'}, e.message));
    return;
  } finally {
    btn.disabled = false;
  }
  const r = st.result;
  const rows = r.rows || [];
  status.textContent = `${plural(rows.length, 'row')}${r.truncated ? ' (truncated at the limit)' : ''} in ${r.elapsedMs} ms`;
  drawResults();
}

function drawResults() {
  const r = st.result;
  const cols = r.columns || [];
  const numeric = cols.map((c, i) => isNumeric(r.types && r.types[i]) || (r.rows || []).slice(0, 50).every(row => row[i] === null || typeof row[i] === 'number'));
  const catDefault = cols.findIndex((c, i) => !numeric[i]);
  const valDefault = cols.findIndex((c, i) => numeric[i]);
  const chartBox = h('div', {id: 'hunt-chart'});
  const controls = h('form', {class: 'fields chart-controls', 'aria-label': 'Chart', onchange: () => drawChart()},
    h('label', {}, 'Chart bars by', h('select', {name: 'cat'}, cols.map((c, i) => h('option', {value: String(i), selected: i === Math.max(catDefault, 0)}, c)))),
    h('label', {}, 'Bar length', h('select', {name: 'val'}, h('option', {value: '-1', selected: valDefault < 0}, 'count of rows'),
      cols.map((c, i) => numeric[i] ? h('option', {value: String(i), selected: i === valDefault}, 'sum of ' + c) : null))));
  const drawChart = () => {
    const c = Number(controls.elements.cat.value), v = Number(controls.elements.val.value);
    fill(chartBox, barChart(r.rows || [], c, v, cols[c], v < 0 ? 'rows' : cols[v]));
  };
  fill(document.getElementById('hunt-results'),
    cols.length ? [h('h2', {}, 'Chart'), controls, chartBox] : null,
    h('h2', {}, 'Rows'),
    resultTable(r));
  if (cols.length) drawChart();
}

function isNumeric(t) {
  return /^(BIGINT|INTEGER|INT|SMALLINT|TINYINT|HUGEINT|UBIGINT|UINTEGER|DOUBLE|FLOAT|REAL|DECIMAL|long|int|real|double|decimal)/i.test(t || '');
}

// resultTable shows rows of a query answer ({columns, types, rows}).
export function resultTable(r) {
  const cols = r.columns || [], rows = r.rows || [];
  const shown = rows.slice(0, MAX_ROWS_SHOWN);
  const t = table(cols.map((c, i) => ({label: c, class: isNumeric(r.types && r.types[i]) ? 'num' : null, cell: row => cellText(row[i])})), shown,
    {class: 'results compact', caption: 'Query results', empty: 'No row.'});
  return h('div', {class: 'table-wrap'}, t, rows.length > shown.length ? h('p', {class: 'muted'}, `Showing the first ${shown.length} of ${rows.length} rows.`) : null);
}

function cellText(v) {
  if (v === null || v === undefined) return h('span', {class: 'muted'}, 'null');
  if (typeof v === 'object') return h('span', {class: 'mono small'}, JSON.stringify(v));
  return String(v);
}

// barChart draws the top 20 values of column c, by count of rows or the sum
// of column v, as horizontal bars with their numbers written out.
function barChart(rows, c, v, cname, vname) {
  const agg = new Map();
  for (const row of rows) {
    const k = row[c] === null || row[c] === undefined ? '(null)' : (typeof row[c] === 'object' ? JSON.stringify(row[c]) : String(row[c]));
    agg.set(k, (agg.get(k) || 0) + (v < 0 ? 1 : Number(row[v]) || 0));
  }
  const bars = [...agg].sort((a, b) => b[1] - a[1]).slice(0, 20);
  if (!bars.length) return h('p', {class: 'muted'}, 'Nothing to chart.');
  const max = Math.max(...bars.map(b => b[1]), 1);
  const BH = 22, LW = 260, W = 900, BW = W - LW - 90;
  const height = bars.length * BH + 10;
  return h('svg', {class: 'chart', viewBox: `0 0 ${W} ${height}`, width: W, height, role: 'img', 'aria-label': `Bar chart of ${vname} by ${cname}`},
    bars.map(([k, n], i) => {
      const y = 5 + i * BH, w = Math.max(1, (n / max) * BW);
      const label = k.length > 38 ? k.slice(0, 36) + '…' : k;
      return h('g', {class: 'bar'}, h('title', {}, `${k}: ${n}`),
        h('text', {x: LW - 8, y: y + 15, 'text-anchor': 'end'}, label),
        h('rect', {x: LW, y: y + 3, width: w, height: BH - 6, rx: 2}),
        h('text', {x: LW + w + 6, y: y + 15, class: 'value'}, Number.isInteger(n) ? String(n) : n.toFixed(2)));
    }));
}
