// The incident graph: alerts in a column in the order they happened, the
// entities their evidence names in a second column (placed beside the
// alerts that name them, so few lines cross), evidence as thin lines and
// the correlation links between alerts as curves. SVG, no library.
import {h, entityHref} from './dom.js';

const ROW = 34, R = 8, PAD = 24;
const AX = 430, EX = 720, W = 1060;
const KINDS = ['device', 'user', 'mailbox', 'file', 'process', 'ip', 'url', 'app', 'cloudapp'];
const ENTITY_PAGE = {device: 'device', user: 'user', mailbox: 'mailbox', file: 'file', ip: 'ip', url: 'url', app: 'app', cloudapp: 'app'};

export function drawGraph(g, timeline) {
  const nodes = g.nodes || [], edges = g.edges || [];
  if (!nodes.length) return h('p', {class: 'muted'}, 'No graph yet.');
  const order = new Map(timeline.map((t, i) => ['alert:' + t.alertId, i]));
  const alerts = nodes.filter(n => n.kind === 'alert').sort((a, b) => (order.get(a.id) ?? 1e9) - (order.get(b.id) ?? 1e9) || String(a.label).localeCompare(b.label));
  const ents = nodes.filter(n => n.kind !== 'alert');
  const ai = new Map(alerts.map((a, i) => [a.id, i]));
  // An entity sits at the mean row of the alerts that name it.
  const bary = new Map();
  for (const e of edges) {
    const [a, n] = ai.has(e.from) ? [e.from, e.to] : ai.has(e.to) ? [e.to, e.from] : [null, null];
    if (!a || ai.has(n)) continue;
    const b = bary.get(n) || [0, 0];
    bary.set(n, [b[0] + ai.get(a), b[1] + 1]);
  }
  const mean = n => { const b = bary.get(n.id); return b ? b[0] / b[1] : 1e9; };
  ents.sort((a, b) => mean(a) - mean(b) || KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) || String(a.label).localeCompare(b.label));

  const rows = Math.max(alerts.length, ents.length);
  const height = rows * ROW + 2 * PAD + 20;
  const pos = new Map();
  const off = (n, len) => PAD + 20 + ((rows - len) * ROW) / 2 + n * ROW + ROW / 2;
  alerts.forEach((a, i) => pos.set(a.id, [AX, off(i, alerts.length)]));
  ents.forEach((e, i) => pos.set(e.id, [EX, off(i, ents.length)]));

  const edgeEls = [];
  for (const e of edges) {
    const p = pos.get(e.from), q = pos.get(e.to);
    if (!p || !q) continue;
    let el;
    if (e.kind === 'link' || (ai.has(e.from) && ai.has(e.to))) {
      const bulge = 50 + Math.abs(q[1] - p[1]) * 0.35;
      el = h('path', {class: 'edge link', d: `M${p[0] + R},${p[1]} C${p[0] + bulge},${p[1]} ${q[0] + bulge},${q[1]} ${q[0] + R},${q[1]}`},
        h('title', {}, 'link: ' + (e.reason || 'shared entity')));
    } else {
      el = h('line', {class: 'edge evidence', x1: p[0] + R, y1: p[1], x2: q[0] - R, y2: q[1]}, h('title', {}, 'evidence'));
    }
    el.dataset.from = e.from;
    el.dataset.to = e.to;
    edgeEls.push(el);
  }

  const nodeEl = (n, anchor) => {
    const [x, y] = pos.get(n.id);
    const label = String(n.label || n.id);
    const short = label.length > 46 ? label.slice(0, 44) + '…' : label;
    const kind = n.kind === 'alert' ? 'alert' : n.kind;
    const page = ENTITY_PAGE[n.kind];
    const isAlert = n.kind === 'alert';
    const entityId = n.id.includes(':') ? n.id.slice(n.id.indexOf(':') + 1) : n.id;
    const tx = anchor === 'end' ? x - R - 8 : x + R + 8;
    const g = h('g', {class: 'node node-' + kind + (n.severity ? ' sev-' + n.severity : ''), tabindex: '0',
      role: page || isAlert ? 'link' : 'img', 'aria-label': (n.kind === 'alert' ? 'alert' : n.kind) + ': ' + label + (n.severity ? ', ' + n.severity : ''),
      dataset: {id: n.id, kind: n.kind}},
      h('title', {}, label),
      n.kind === 'alert' ? h('rect', {x: x - R, y: y - R, width: 2 * R, height: 2 * R, rx: 3}) : h('circle', {cx: x, cy: y, r: R}),
      h('text', {x: tx, y: y + 4, 'text-anchor': anchor}, n.kind === 'alert' ? short : [h('tspan', {class: 'kind'}, n.kind + ' '), short]));
    if (page || isAlert) {
      // An entity opens its page; an alert opens in the Alerts tab.
      const go = () => {
        if (page) location.hash = entityHref(page, entityId);
        else g.dispatchEvent(new CustomEvent('stitch:alert', {bubbles: true, detail: entityId}));
      };
      g.addEventListener('click', go);
      g.addEventListener('keydown', e => { if (e.key === 'Enter') { e.preventDefault(); go(); } });
    }
    return g;
  };

  const svg = h('svg', {class: 'graph', viewBox: `0 0 ${W} ${height}`, width: W, height, role: 'group',
    'aria-label': `Incident graph: ${alerts.length} alerts, ${ents.length} entities, ${edges.filter(e => e.kind === 'link').length} links`},
  h('text', {x: AX, y: PAD, 'text-anchor': 'end', class: 'col-head'}, 'Alerts'),
  h('text', {x: EX, y: PAD, class: 'col-head'}, 'Entities'),
  h('g', {class: 'edges'}, edgeEls),
  h('g', {class: 'nodes'}, alerts.map(a => nodeEl(a, 'end')), ents.map(e => nodeEl(e, 'start'))));

  // Pointing at or focusing a node lights its lines and neighbours.
  const light = id => {
    svg.classList.toggle('focus', !!id);
    const near = new Set([id]);
    for (const el of edgeEls) {
      const on = id && (el.dataset.from === id || el.dataset.to === id);
      el.classList.toggle('hot', !!on);
      if (on) { near.add(el.dataset.from); near.add(el.dataset.to); }
    }
    for (const n of svg.querySelectorAll('g.node')) n.classList.toggle('hot', !!id && near.has(n.dataset.id));
  };
  svg.addEventListener('focusin', e => light(e.target.closest('g.node')?.dataset.id));
  svg.addEventListener('focusout', () => light(null));
  svg.addEventListener('mouseover', e => { const n = e.target.closest('g.node'); if (n) light(n.dataset.id); });
  svg.addEventListener('mouseout', () => { if (!svg.contains(document.activeElement)) light(null); });

  return h('div', {class: 'graph-wrap'}, svg,
    h('p', {class: 'legend small'}, h('span', {class: 'lg lg-alert'}), ' alert ', h('span', {class: 'lg lg-entity'}), ' entity ',
      h('span', {class: 'lg lg-evidence'}), ' evidence ', h('span', {class: 'lg lg-link'}), ' correlation link'));
}
