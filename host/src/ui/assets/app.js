// host ui: one page app over /api. Every value from the store reaches the page as text
// (textContent, attributes through setAttribute), never as markup.
'use strict';

const main = document.getElementById('main');
const PALETTE = ['#1f6feb', '#cf222e', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#6e7781'];
let generation = 0; // bumped on every navigation: late answers for an old page are dropped

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, kids);
  return el;
}

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.body = body;
    error.status = response.status;
    throw error;
  }
  return body;
}

function go(url) {
  history.pushState(null, '', url);
  route();
}

document.addEventListener('click', (event) => {
  const a = event.target.closest('a');
  if (!a || a.origin !== location.origin || a.target || a.pathname.startsWith('/files/')) return;
  if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  go(a.pathname + a.search);
});
window.addEventListener('popstate', route);

function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter(Boolean));
}

function fail(error) {
  show(h('h1', {}, 'Something went wrong'), h('p', { class: 'error' }, error.message));
}

function short(sha) {
  return sha ? String(sha).slice(0, 12) : '';
}

function fmt(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toPrecision(5).replace(/\.?0+$/, '');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function runLink(id) {
  return h('a', { href: '/run/' + encodeURIComponent(id), class: 'mono' }, id);
}

function statusBadge(status) {
  return h('span', { class: 'status status-' + status }, status);
}

function flatten(value, prefix, out) {
  out = out || {};
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? prefix + '.' + key : key, out);
  } else if (prefix) {
    out[prefix] = value;
  }
  return out;
}

function route() {
  generation += 1;
  redraws = [];
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(location.search);
  const page = parts[0] || 'runs';
  const pages = {
    runs: () => runsPage(params),
    run: () => runPage(parts[1]),
    compare: () => comparePage(params),
    sweeps: () => sweepsPage(),
    sweep: () => sweepPage(parts[1]),
    sha256: () => lookupPage(parts[1] || params.get('q') || ''),
    plugins: () => pluginsPage(),
  };
  (pages[page] || (() => show(h('h1', {}, 'No such page'))))();
}

// ---------------------------------------------------------------- charts
// Layout follows the text: margins leave room for every label, measured at CHAR pixels per
// character of the 11px chart text. Ticks are round numbers labelled with the fewest digits that
// tell them apart; an axis of whole numbers (epochs, seeds) has whole-number ticks only. Charts
// are drawn to the width of the page's content, and again when that width changes.
// Markup the browser tests read: an axis is <g class="axis ..."> (data-integer on a whole-number
// axis) holding text.tick labels and a text.axis-label caption; legend entries are
// .legend-label elements inside the chart's figure.chart.

const CHAR = 7;
const textWidth = (text) => String(text).length * CHAR;
const clean = (value) => Number(value.toPrecision(12));

function contentWidth() {
  const style = getComputedStyle(main);
  return Math.max(320, Math.floor(main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)));
}

// Each chart of the current page registers how to draw itself; all are drawn again when the
// content's width changes (a resized window, a scroll bar that came or went).
let redraws = [];
let drawnAt = 0;
function drawn(draw) {
  redraws.push(draw);
  drawnAt = contentWidth();
  draw();
}
let resizing = null;
new ResizeObserver(() => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    if (contentWidth() === drawnAt) return;
    drawnAt = contentWidth();
    redraws.forEach((draw) => draw());
  }, 100);
}).observe(main);

// Labels with the fewest digits that tell the values apart and are exact to a millionth of step.
function tickLabels(values, step) {
  const trim = (text) => {
    const [mantissa, exponent] = text.split('e');
    let out = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
    if (out === '-0') out = '0';
    return exponent === undefined ? out : out + 'e' + exponent.replace(/^\+/, '');
  };
  const fits = (labels) => new Set(labels).size === labels.length
    && values.every((v, i) => Math.abs(Number(labels[i]) - v) <= Math.abs(step) * 1e-6);
  for (let digits = 0; digits <= 6; digits++) {
    const labels = values.map((v) => trim(v.toFixed(digits)));
    if (fits(labels)) return labels;
  }
  for (let digits = 0; digits <= 10; digits++) {
    const labels = values.map((v) => (v === 0 ? '0' : trim(v.toExponential(digits))));
    if (fits(labels)) return labels;
  }
  return values.map(String);
}

// The step of 1, 2 or 5 times a power of ten cutting span into at most count parts (at least 1
// on an integer axis).
function niceStep(span, count, integer) {
  const raw = span / Math.max(1, count);
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => clean(m * power)).find((s) => s >= raw * (1 - 1e-9)) || power * 10;
  return integer ? Math.max(1, Math.round(step)) : step;
}

// An axis over data from lo to hi: round ticks at most count steps apart; widen stretches the
// range to whole steps, so its ends are ticks.
function axisOf(lo, hi, count, integer, widen) {
  if (!(hi > lo)) {
    const pad = integer ? 0.5 : lo !== 0 ? Math.abs(lo) * 0.5 : 0.5;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, count, integer);
  if (widen) [lo, hi] = [clean(Math.floor(lo / step) * step), clean(Math.ceil(hi / step) * step)];
  const values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9) && values.length < 200; k++) values.push(clean(k * step));
  const labels = tickLabels(values, step);
  return { lo, hi, integer, ticks: values.map((v, i) => [v, labels[i]]) };
}

const widest = (axis) => Math.max(0, ...axis.ticks.map(([, label]) => textWidth(label)));
const at = (axis, value, start, length) => start + (value - axis.lo) / (axis.hi - axis.lo) * length;

// An axis length pixels long whose labels do not crowd: a tick per 60px across (no closer than
// its labels are wide), per 40px up.
function fittedAxis(lo, hi, length, integer, widen, across) {
  for (let count = Math.max(1, Math.min(12, Math.floor(length / (across ? 60 : 40)))); ; count--) {
    const axis = axisOf(lo, hi, count, integer, widen);
    const [a, b] = axis.ticks;
    const spacing = b ? (b[0] - a[0]) / (axis.hi - axis.lo) * length : Infinity;
    if (spacing >= (across ? widest(axis) + 12 : 16) || count <= 1) return axis;
  }
}

// How far the first and last labels, centred on their ticks, reach past an axis's ends.
function overhang(axis, length) {
  const reach = ([value, label], end) => textWidth(label) / 2 - Math.abs(at(axis, value, 0, length) - end);
  const ticks = axis.ticks;
  return ticks.length ? [Math.max(0, reach(ticks[0], 0)), Math.max(0, reach(ticks[ticks.length - 1], length))] : [0, 0];
}

function extent(values) {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length ? [Math.min(...finite), Math.max(...finite)] : [0, 1];
}

function axisGroup(axis, which) {
  return svg('g', { class: 'axis ' + which, 'data-integer': axis.integer ? '' : null });
}

// A plot with a y axis at the left and an x axis below: margins from the labels, the x axis
// fitted to what is left of the width.
function frame(W, PH, xData, yData, xInteger, yInteger) {
  const T = 12;
  const y = fittedAxis(yData[0], yData[1], PH, yInteger, true, false);
  let [L, R] = [Math.max(36, widest(y) + 12), 16];
  let x = fittedAxis(xData[0], xData[1], W - L - R, xInteger, false, true);
  const [first, last] = overhang(x, W - L - R);
  if (first + 4 > L || last + 4 > R) {
    [L, R] = [Math.max(L, first + 4), Math.max(R, last + 4)];
    x = fittedAxis(xData[0], xData[1], W - L - R, xInteger, false, true);
  }
  const PW = W - L - R;
  return { x, y, L, R, T, PW, PH, H: T + PH + 38, sx: (v) => at(x, v, L, PW), sy: (v) => T + PH - at(y, v, 0, PH) };
}

function drawFrame(chart, f, xLabel) {
  const grid = svg('g', { class: 'grid' });
  const yAxis = axisGroup(f.y, 'y');
  for (const [v, label] of f.y.ticks) {
    grid.append(svg('line', { x1: f.L, x2: f.L + f.PW, y1: f.sy(v), y2: f.sy(v) }));
    yAxis.append(svg('text', { class: 'tick', x: f.L - 6, y: f.sy(v) + 4, 'text-anchor': 'end' }, label));
  }
  yAxis.append(svg('line', { x1: f.L, x2: f.L, y1: f.T, y2: f.T + f.PH }));
  const xAxis = axisGroup(f.x, 'x');
  for (const [v, label] of f.x.ticks) xAxis.append(svg('text', { class: 'tick', x: f.sx(v), y: f.T + f.PH + 16, 'text-anchor': 'middle' }, label));
  xAxis.append(svg('line', { x1: f.L, x2: f.L + f.PW, y1: f.T + f.PH, y2: f.T + f.PH }));
  xAxis.append(svg('text', { class: 'axis-label', x: f.L + f.PW / 2, y: f.T + f.PH + 32, 'text-anchor': 'middle' }, xLabel));
  chart.append(grid, yAxis, xAxis);
}

function legend(entries) {
  return h('div', { class: 'legend' }, entries.map((entry, i) => {
    const swatch = h('i');
    swatch.style.background = PALETTE[i % PALETTE.length];
    return h('span', { class: 'legend-label', title: entry.title || null }, swatch, entry.name);
  }));
}

function chartSvg(W, H, label, attrs) {
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': label, ...attrs });
}

// series: [{name, title?, points: [[x, y], ...]}]
function lineChart(series, xLabel, yLabel) {
  const finite = (p) => Number.isFinite(p[0]) && Number.isFinite(p[1]);
  const points = series.flatMap((s) => s.points.filter(finite));
  const f = frame(contentWidth(), 240, extent(points.map((p) => p[0])), extent(points.map((p) => p[1])),
    points.every((p) => Number.isInteger(p[0])), false);
  const chart = chartSvg(contentWidth(), f.H, yLabel);
  drawFrame(chart, f, xLabel);
  series.forEach((s, i) => {
    const shown = s.points.filter(finite);
    if (!shown.length) return;
    const d = shown.map((p, j) => (j ? 'L' : 'M') + f.sx(p[0]).toFixed(1) + ' ' + f.sy(p[1]).toFixed(1)).join(' ');
    const color = PALETTE[i % PALETTE.length];
    chart.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 2 }, svg('title', {}, s.title || s.name)));
    if (shown.length <= 30) shown.forEach((p) => chart.append(svg('circle', { cx: f.sx(p[0]), cy: f.sy(p[1]), r: 3, fill: color })));
  });
  return h('figure', { class: 'chart' }, chart, series.length > 1 ? legend(series) : null);
}

// axes: [{name, value: (item) => number|string}], items: [{name, ...}]
function parallelChart(axes, items, highlight) {
  const [T, PH] = [14, 230];
  const scales = axes.map((axis) => {
    const values = items.map(axis.value);
    if (values.every((v) => typeof v === 'number' || v === null || v === undefined)) {
      const numbers = values.filter((v) => Number.isFinite(v));
      const scale = axisOf(...extent(numbers), 4, numbers.every(Number.isInteger), true);
      return { ...scale, at: (v) => (typeof v === 'number' ? T + PH - at(scale, v, 0, PH) : null) };
    }
    const categories = [...new Set(values.map(fmt))].sort();
    const place = (c) => T + PH - (categories.indexOf(c) + 0.5) / categories.length * PH;
    return { integer: false, ticks: categories.map((c) => [c, c]), at: (v) => place(fmt(v)), categorical: true };
  });
  // The first axis's labels lie left of its line, the others' right of theirs (away from most
  // lines); each caption is centred under its axis.
  const rightOf = (i) => Math.max(i > 0 ? widest(scales[i]) + 6 : 0, textWidth(axes[i].name) / 2) + 6;
  const leftOf = (i) => Math.max(i === 0 ? widest(scales[i]) + 6 : 0, textWidth(axes[i].name) / 2) + 6;
  const W = Math.max(contentWidth(), leftOf(0) + axes.reduce((sum, _, i) => sum + rightOf(i) + leftOf(i), 0));
  const [L, R] = [leftOf(0), rightOf(axes.length - 1)];
  const x = (i) => L + i * (W - L - R) / Math.max(1, axes.length - 1);
  // Captions that would meet their neighbour's alternate between two rows.
  const spacing = (W - L - R) / Math.max(1, axes.length - 1);
  const stagger = axes.some((axis, i) => i > 0 && textWidth(axis.name) / 2 + textWidth(axes[i - 1].name) / 2 + 8 > spacing);
  const H = T + PH + (stagger ? 44 : 30);
  const chart = chartSvg(W, H, 'parallel coordinates');
  axes.forEach((axis, i) => {
    const g = axisGroup(scales[i], 'y');
    g.append(svg('line', { x1: x(i), x2: x(i), y1: T, y2: T + PH }));
    g.append(svg('text', { class: 'axis-label', x: x(i), y: T + PH + 18 + (stagger && i % 2 ? 14 : 0), 'text-anchor': 'middle' }, axis.name));
    for (const [v, label] of scales[i].ticks) {
      const y = scales[i].categorical ? scales[i].at(v) : T + PH - at(scales[i], v, 0, PH);
      g.append(svg('text', { class: 'tick', x: i ? x(i) + 5 : x(i) - 5, y: y + 4, 'text-anchor': i ? 'start' : 'end' }, label));
    }
    chart.append(g);
  });
  items.forEach((item, n) => {
    const points = axes.map((axis, i) => [x(i), scales[i].at(axis.value(item))]).filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (points.length < 2) return;
    const color = item.name === highlight ? '#1a7f37' : PALETTE[n % PALETTE.length];
    chart.append(svg('path', { d: points.map((p, j) => (j ? 'L' : 'M') + p[0].toFixed(1) + ' ' + p[1].toFixed(1)).join(' '),
      fill: 'none', stroke: color, 'stroke-width': item.name === highlight ? 3 : 1.5, opacity: 0.85 }, svg('title', {}, item.name)));
  });
  return h('figure', { class: 'chart' }, chart);
}

function scatterChart(points, xLabel, yLabel) {
  const shown = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  // A little room around the points, never below zero for values that cannot be negative.
  const padded = (values) => {
    const [lo, hi] = extent(values);
    const pad = hi > lo ? (hi - lo) * 0.05 : 0;
    return [lo >= 0 ? Math.max(0, lo - pad) : lo - pad, hi + pad];
  };
  const xs = shown.map((p) => p.x);
  const ys = shown.map((p) => p.y);
  const integerX = xs.every(Number.isInteger);
  const f = frame(contentWidth(), 240, padded(xs), padded(ys), integerX, false);
  const chart = chartSvg(contentWidth(), f.H, yLabel + ' against ' + xLabel);
  drawFrame(chart, f, xLabel);
  shown.forEach((p, i) => {
    chart.append(svg('circle', { cx: f.sx(p.x), cy: f.sy(p.y), r: 5, fill: PALETTE[i % PALETTE.length] }, svg('title', {}, p.label)));
  });
  return h('figure', { class: 'chart' }, chart);
}

// ---------------------------------------------------------------- runs

function caretError(error, text) {
  const body = error.body || {};
  const out = [h('p', { class: 'error', id: 'query-error' }, error.message)];
  if (body.column && text) out.push(h('pre', { class: 'caret mono' }, text + '\n' + ' '.repeat(body.column - 1) + '^'));
  return out;
}

async function runsPage(params) {
  const mine = generation;
  const state = {
    filter: params.get('filter') || '',
    order_by: params.get('order_by') || '',
    columns: params.get('columns') || '',
    offset: Number(params.get('offset') || 0),
  };
  const link = (change) => {
    const next = new URLSearchParams();
    for (const [key, value] of Object.entries({ ...state, ...change })) if (value) next.set(key, value);
    const text = next.toString();
    return '/runs' + (text ? '?' + text : '');
  };
  const filter = h('input', { type: 'search', class: 'filter mono', id: 'filter', name: 'filter', value: state.filter,
    placeholder: "metrics.test.accuracy > 0.9 and params.training.learning_rate = 0.001", 'aria-label': 'query' });
  const columns = h('input', { type: 'text', class: 'mono', id: 'columns', name: 'columns', value: state.columns, size: 40,
    placeholder: 'columns (default: experiment, status, ...)', 'aria-label': 'columns' });
  const form = h('form', { class: 'query', id: 'query', onsubmit: (e) => { e.preventDefault(); go(link({ filter: filter.value.trim(), columns: columns.value.trim(), offset: 0 })); } },
    filter, columns, h('button', { class: 'primary', type: 'submit', id: 'search' }, 'Search'));
  const picker = h('details', { class: 'picker' }, h('summary', {}, 'Choose columns'));
  const compare = h('button', { type: 'button', id: 'compare', onclick: () => {
    const ids = [...main.querySelectorAll('input.pick:checked')].map((c) => c.value);
    if (ids.length) go('/compare?runs=' + ids.map(encodeURIComponent).join(','));
  } }, 'Compare selected');
  show(h('h1', {}, 'Runs'), form, picker, h('p', { class: 'muted' }, 'Loading…'));
  api('/api/keys').then((keys) => {
    if (mine !== generation) return;
    const chosen = new Set(columns.value.split(',').map((c) => c.trim()).filter(Boolean));
    for (const key of [...keys.attributes, ...keys.params, ...keys.metrics]) {
      const box = h('input', { type: 'checkbox', value: key, checked: chosen.has(key), onchange: () => {
        box.checked ? chosen.add(key) : chosen.delete(key);
        columns.value = [...chosen].join(', ');
      } });
      picker.append(h('label', {}, box, ' ', key));
    }
  }).catch(() => {});
  const query = new URLSearchParams({ limit: 50, offset: state.offset });
  for (const key of ['filter', 'order_by', 'columns']) if (state[key]) query.set(key, state[key]);
  let page;
  try {
    // Checked first, so a typo is an answer, not a failed request.
    const checked = await api('/api/check?' + query);
    if (!checked.ok) {
      const error = Object.assign(new Error(checked.error), { body: checked });
      if (mine !== generation) return;
      const text = checked.field === 'columns' ? state.columns : checked.field === 'order_by' ? state.order_by : state.filter;
      show(h('h1', {}, 'Runs'), form, picker, caretError(error, text));
      return;
    }
    page = await api('/api/runs?' + query);
  } catch (error) {
    if (mine === generation) show(h('h1', {}, 'Runs'), form, picker, h('p', { class: 'error' }, error.message));
    return;
  }
  if (mine !== generation) return;
  const sortLink = (label) => {
    const current = state.order_by.trim();
    const next = current === label + ' desc' ? label + ' asc' : label + ' desc';
    const arrow = current === label + ' desc' ? ' ▼' : current === label + ' asc' || current === label ? ' ▲' : '';
    return h('a', { href: link({ order_by: next, offset: 0 }), class: 'sort' }, label + arrow);
  };
  const head = h('tr', {}, h('th', {}), h('th', {}, sortLink('run_id')), page.columns.map((c) => h('th', {}, sortLink(c))));
  const body = h('tbody');
  const open = new Set(JSON.parse(sessionStorage.getItem('open-sweeps') || '[]'));
  const groups = new Map();
  for (const row of page.rows) {
    const cells = [h('td', {}, h('input', { type: 'checkbox', class: 'pick', value: row.run_id, 'aria-label': 'select ' + row.run_id })), h('td', {}, runLink(row.run_id))];
    page.columns.forEach((column, i) => {
      const value = row.values[i];
      cells.push(column === 'status' || column === 'attributes.status'
        ? h('td', {}, statusBadge(value))
        : h('td', { class: typeof value === 'number' ? 'num' : '' }, fmt(value)));
    });
    const tr = h('tr', { class: 'run', 'data-run': row.run_id }, cells);
    if (row.sweep) {
      if (!groups.has(row.sweep)) {
        const group = { rows: [], header: null };
        groups.set(row.sweep, group);
        const count = h('span', { class: 'muted' });
        group.header = h('tr', { class: 'group', onclick: () => {
          const hidden = group.rows[0].classList.contains('hidden');
          group.rows.forEach((r) => r.classList.toggle('hidden', !hidden));
          hidden ? open.add(row.sweep) : open.delete(row.sweep);
          sessionStorage.setItem('open-sweeps', JSON.stringify([...open]));
        } }, h('td', {}, '▸'), h('td', { colspan: page.columns.length + 1 }, 'sweep ', h('a', { href: '/sweep/' + encodeURIComponent(row.sweep) }, row.sweep), ' ', count));
        group.count = count;
        body.append(group.header);
      }
      const group = groups.get(row.sweep);
      if (!open.has(row.sweep)) tr.classList.add('hidden');
      group.rows.push(tr);
      group.count.textContent = `(${group.rows.length} trial runs on this page; click to ${open.has(row.sweep) ? 'fold' : 'unfold'})`;
      // Keep a group's runs together under its header.
      const last = group.rows.length > 1 ? group.rows[group.rows.length - 2] : group.header;
      last.after(tr);
    } else {
      body.append(tr);
    }
  }
  const end = Math.min(page.offset + page.rows.length, page.total);
  const pager = h('div', { class: 'pager' },
    page.offset > 0 ? h('a', { href: link({ offset: Math.max(0, page.offset - page.limit) }) }, '← newer') : null,
    h('span', { id: 'count' }, page.total ? `${page.offset + 1}–${end} of ${page.total}${page.exact ? '' : '+'} runs` : 'no runs match'),
    end < page.total || !page.exact ? h('a', { href: link({ offset: page.offset + page.limit }), id: 'next' }, 'older →') : null,
    h('span', { class: 'muted' }, `server ${page.server_ms.toFixed(1)} ms`),
    compare);
  show(h('h1', {}, 'Runs'), form, picker, pager, wide(h('table', { id: 'runs' }, h('thead', {}, head), body)));
  if (page.rows.some((r) => r.status === 'running')) {
    setTimeout(() => { if (mine === generation) route(); }, 3000);
  }
}

// ---------------------------------------------------------------- one run

function factsList(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// A table that may be wider than the page scrolls inside this wrapper (the one place content
// may be wider than its container; the browser tests name it).
function wide(table) {
  return h('div', { class: 'table-wrap' }, table);
}

function keyValueTable(object, id) {
  const rows = Object.entries(object).map(([k, v]) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', { class: typeof v === 'number' ? 'num' : '' }, fmt(v))));
  return wide(h('table', { id }, h('thead', {}, h('tr', {}, h('th', {}, 'key'), h('th', {}, 'value'))), h('tbody', {}, rows)));
}

function smooth(points, weight) {
  let last = null;
  return points.map(([x, y]) => {
    last = last === null || !Number.isFinite(last) ? y : last * weight + (1 - weight) * y;
    return [x, last];
  });
}

async function postAnnotation(run, what, payload) {
  const headers = { 'Content-Type': 'application/json' };
  const token = sessionStorage.getItem('token');
  if (token) headers.Authorization = 'Bearer ' + token;
  try {
    return await api(`/api/runs/${encodeURIComponent(run)}/${what}`, { method: 'POST', headers, body: JSON.stringify(payload) });
  } catch (error) {
    if (error.status === 401) {
      const given = prompt('This server needs its token to add tags and notes:');
      if (given) {
        sessionStorage.setItem('token', given);
        return postAnnotation(run, what, payload);
      }
    }
    throw error;
  }
}

// Text of at most chars characters: its end kept (a file's name), its start marked with "…".
function tail(text, chars) {
  text = String(text);
  return text.length <= chars ? text : '…' + text.slice(text.length - Math.max(1, chars - 1));
}

// The run's lineage, one column per kind of entity, laid out to the content's width: boxes as
// wide as the columns allow, each label cut to its box (the full text in its tooltip).
function lineageGraph(lineage) {
  const order = ['source', 'raw', 'dataset', 'split', 'model', 'metrics', 'predictions', 'history', 'report'];
  const column = (kind) => {
    const i = order.findIndex((k) => kind === k || kind.startsWith(k));
    return i < 0 ? order.length : i;
  };
  const columns = new Map();
  for (const node of lineage.nodes) {
    const c = column(node.kind);
    if (!columns.has(c)) columns.set(c, []);
    columns.get(c).push(node);
  }
  const used = [...columns.keys()].sort((a, b) => a - b);
  const [GX, GY, NH, P] = [28, 12, 68, 8];
  const NW = Math.max(120, Math.min(240, Math.floor((contentWidth() - 2 - (used.length - 1) * GX) / Math.max(1, used.length))));
  const W = used.length * (NW + GX) - GX + 2;
  const H = Math.max(1, ...used.map((c) => columns.get(c).length)) * (NH + GY) - GY + 2;
  const chars = Math.floor((NW - 2 * P) / CHAR);
  const place = new Map();
  used.forEach((c, i) => columns.get(c).forEach((node, j) => place.set(node.id, [1 + i * (NW + GX), 1 + j * (NH + GY)])));
  const chart = chartSvg(W, H, 'lineage', { id: 'lineage' });
  chart.style.maxWidth = W + 'px'; // its drawn size at most (CSSOM: the page's policy refuses style attributes)
  for (const edge of lineage.edges) {
    const [a, b] = [place.get(edge.from), place.get(edge.to)];
    if (!a || !b) continue;
    chart.append(svg('path', { class: 'edge', d: `M${a[0] + NW} ${a[1] + NH / 2} C${a[0] + NW + GX / 2} ${a[1] + NH / 2} ${b[0] - GX / 2} ${b[1] + NH / 2} ${b[0]} ${b[1] + NH / 2}` }, svg('title', {}, edge.activity || '')));
  }
  for (const node of lineage.nodes) {
    const [x, y] = place.get(node.id);
    const others = node.runs - 1;
    const label = String(node.label);
    const a = svg('a', { href: '/sha256/' + node.id, class: 'node' },
      svg('rect', { x, y, width: NW, height: NH, rx: 6 }),
      svg('text', { x: x + P, y: y + 15, class: 'kind' }, tail(node.kind, chars)),
      svg('text', { x: x + P, y: y + 30 }, label === node.kind ? '' : tail(label, chars)),
      svg('text', { x: x + P, y: y + 45, class: 'sha' }, short(node.id)),
      svg('text', { x: x + P, y: y + 60, class: 'others' }, others > 0 ? tail(`${others} other run${others > 1 ? 's' : ''}`, chars) : ''),
      svg('title', {}, `${node.kind} ${node.label}\n${node.id}\nused by ${node.runs} run(s)`));
    a.addEventListener('click', (event) => { event.preventDefault(); go('/sha256/' + node.id); });
    chart.append(a);
  }
  return chart;
}

async function runPage(runId) {
  const mine = generation;
  let data;
  try {
    data = await api('/api/runs/' + encodeURIComponent(runId));
  } catch (error) {
    if (mine === generation) fail(error);
    return;
  }
  if (mine !== generation) return;
  const r = data.record;
  const tags = h('div', { id: 'tags' });
  const renderTags = (current) => tags.replaceChildren(...Object.entries(current).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)), Object.keys(current).length ? '' : h('span', { class: 'muted' }, 'no tags'));
  renderTags(data.tags);
  const notes = h('div', { id: 'notes' });
  const renderNotes = (annotations) => notes.replaceChildren(...annotations.filter((a) => a.kind === 'note').map((a) => h('div', { class: 'note' }, a.value, h('div', { class: 'muted' }, `${a.author}, ${a.created_at}`))));
  renderNotes(data.annotations);
  const annotateError = h('p', { class: 'error', id: 'annotate-error' });
  const tagKey = h('input', { type: 'text', id: 'tag-key', placeholder: 'key', size: 12, 'aria-label': 'tag key' });
  const tagValue = h('input', { type: 'text', id: 'tag-value', placeholder: 'value (empty removes)', size: 20, 'aria-label': 'tag value' });
  const tagForm = h('form', { class: 'query', id: 'tag-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const answer = await postAnnotation(runId, 'tags', { key: tagKey.value.trim(), value: tagValue.value });
      renderTags(answer.tags);
      annotateError.textContent = '';
      tagKey.value = tagValue.value = '';
    } catch (error) { annotateError.textContent = error.message; }
  } }, tagKey, tagValue, h('button', { type: 'submit', id: 'add-tag' }, 'Set tag'));
  const noteText = h('textarea', { id: 'note-text', placeholder: 'a note', 'aria-label': 'note' });
  const noteForm = h('form', { id: 'note-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const answer = await postAnnotation(runId, 'notes', { text: noteText.value });
      renderNotes(answer.annotations);
      annotateError.textContent = '';
      noteText.value = '';
    } catch (error) { annotateError.textContent = error.message; }
  } }, noteText, h('button', { type: 'submit' }, 'Add note'));

  // Curves: a metric, smoothing and the x-axis to plot it against.
  const names = Object.keys(data.curves).filter((n) => n !== 'epoch_seconds');
  const chartBox = h('div', { id: 'curve' });
  const metricSelect = h('select', { id: 'curve-metric', 'aria-label': 'metric' }, names.map((n) => h('option', { value: n }, n)));
  const smoothing = h('input', { type: 'range', min: 0, max: 0.95, step: 0.05, value: 0, id: 'smoothing', 'aria-label': 'smoothing' });
  const xAxis = h('select', { id: 'x-axis', 'aria-label': 'x-axis' }, h('option', { value: 'epoch' }, 'epoch'), data.curves.epoch_seconds ? h('option', { value: 'time' }, 'training time (s)') : null);
  const drawCurve = () => {
    const points = data.curves[metricSelect.value] || [];
    let xs = new Map(points.map(([step]) => [step, step]));
    if (xAxis.value === 'time') {
      let total = 0;
      xs = new Map((data.curves.epoch_seconds || []).map(([step, s]) => [step, (total += s)]));
    }
    const series = [{ name: metricSelect.value, points: smooth(points.map(([step, v]) => [xs.get(step) ?? step, v]), Number(smoothing.value)) }];
    chartBox.replaceChildren(names.length ? lineChart(series, xAxis.value === 'time' ? 'training time (s)' : 'epoch', metricSelect.value) : h('p', { class: 'muted' }, 'no per-epoch metrics'));
  };
  [metricSelect, smoothing, xAxis].forEach((el) => el.addEventListener('input', drawCurve));
  drawn(drawCurve);
  const lineageBox = h('div', { class: 'lineage' });
  drawn(() => lineageBox.replaceChildren(lineageGraph(data.lineage)));

  const verifyBox = h('div', { id: 'verify-result' });
  const files = h('table', { id: 'files' }, h('thead', {}, h('tr', {}, h('th', {}, 'role'), h('th', {}, 'file'), h('th', {}, 'SHA-256'), h('th', {}, 'state'))),
    h('tbody', {}, data.files.map((f) => h('tr', { 'data-path': f.path }, h('td', {}, f.role), h('td', { class: 'mono' }, h('a', { href: f.link }, f.path)),
      h('td', { class: 'mono' }, h('a', { href: '/sha256/' + f.sha256 }, short(f.sha256))), h('td', { class: 'state' })))));
  const verifyButton = h('button', { type: 'button', id: 'verify', onclick: async () => {
    verifyBox.textContent = 'Verifying…';
    try {
      const result = await api(`/api/runs/${encodeURIComponent(runId)}/verify`);
      const states = new Map(result.files.map((c) => [c.path, c.state]));
      for (const tr of files.querySelectorAll('tbody tr')) {
        const state = states.get(tr.getAttribute('data-path')) || '';
        const cell = tr.querySelector('td.state');
        cell.textContent = state;
        cell.className = 'state check-' + state;
      }
      const bad = result.files.filter((c) => c.state !== 'ok').length;
      verifyBox.textContent = result.verified ? `all ${result.files.length} files verified` : `${bad} of ${result.files.length} files changed or missing`;
      verifyBox.className = result.verified ? 'check-ok' : 'check-changed';
    } catch (error) { verifyBox.textContent = error.message; }
  } }, 'Verify files');
  const reports = data.files.filter((f) => f.report);
  const stages = h('table', { id: 'stages' }, h('thead', {}, h('tr', {}, h('th', {}, 'stage'), h('th', {}, 'status'), h('th', {}, 'seconds'), h('th', {}, 'reused from'))),
    h('tbody', {}, (r.stages || []).map((s) => h('tr', {}, h('td', {}, s.name), h('td', {}, s.status), h('td', { class: 'num' }, fmt(s.seconds)), h('td', {}, s.reused_from ? runLink(s.reused_from) : '')))));
  const metrics = Object.fromEntries(Object.entries(flatten(r.metrics || {})).filter(([, v]) => typeof v === 'number'));
  show(
    h('h1', {}, 'Run ', h('span', { class: 'mono', id: 'run-id' }, r.run_id), ' ', statusBadge(r.status)),
    h('div', { class: 'grid' },
      h('section', {}, factsList([
        ['experiment', h('a', { href: '/runs?filter=' + encodeURIComponent(`experiment = '${r.experiment_name.replace(/'/g, "''")}'`) }, r.experiment_name)],
        ['started', r.started_at], ['finished', r.finished_at], ['seconds', fmt(r.seconds)],
        ['config', h('span', { class: 'mono' }, r.config_file)], ['seed', r.seed], ['threads', r.threads],
        ['machine', r.owner && r.owner.hostname], ['git', r.git && r.git.commit ? short(r.git.commit) + (r.git.dirty ? ' (dirty)' : '') : ''],
        ['sweep', r.trial ? h('a', { href: '/sweep/' + encodeURIComponent(r.trial.sweep_id) }, `${r.trial.sweep_id} trial ${r.trial.trial}`) : ''],
        ['replay of', r.replay_of ? runLink(r.replay_of) : ''],
        ['earlier attempt', r.previous_attempt ? runLink(r.previous_attempt) : ''],
        ['error', r.error ? h('span', { class: 'error' }, r.error) : ''],
        ['plugins', h('span', {}, (r.plugins || []).map((p) => h('div', {}, `${p.kind} ${p.class} `, h('a', { href: '/sha256/' + p.sha256, class: 'mono' }, short(p.sha256)))))],
        ['verified', data.verifications.length ? (() => { const v = data.verifications[data.verifications.length - 1]; return `${v.ok ? 'yes' : 'no'} (${v.checked_at})`; })() : 'never'],
        ['compare', h('a', { href: '/runs?filter=' + encodeURIComponent(`experiment = '${r.experiment_name.replace(/'/g, "''")}'`) }, 'runs of this experiment')],
      ])),
      h('section', {}, h('h2', {}, 'Tags'), tags, tagForm, h('h2', {}, 'Notes'), notes, noteForm, annotateError)),
    h('h2', {}, 'Metrics per epoch'), h('div', { class: 'query' }, metricSelect, ' smoothing ', smoothing, ' x-axis ', xAxis), chartBox,
    h('div', { class: 'grid' },
      h('section', {}, h('h2', {}, 'Parameters'), keyValueTable(flatten(r.config || {}), 'params')),
      h('section', {}, h('h2', {}, 'Final metrics'), keyValueTable(metrics, 'metrics'))),
    h('h2', {}, 'Stages'), wide(stages),
    reports.length ? [h('h2', {}, 'Reports'), h('ul', { id: 'reports' }, reports.map((f) => h('li', {}, h('a', { href: f.link }, f.path.split('/').pop()))))] : null,
    h('h2', {}, 'Files ', verifyButton), verifyBox, wide(files),
    h('h2', {}, 'Lineage'), h('p', { class: 'muted' }, 'Each node links to every run that shares it.'), lineageBox);
}

// ---------------------------------------------------------------- compare

// The shortest ends of ids (at least six characters, a run id's random part) that tell them
// apart, marked "…" where the start was left off.
function shortIds(ids) {
  const longest = Math.max(0, ...ids.map((id) => id.length));
  for (let n = Math.min(6, longest); n < longest; n++) {
    const ends = ids.map((id) => id.slice(-n));
    if (new Set(ends).size === ids.length) return ends.map((end, i) => (end.length < ids[i].length ? '…' + end : end));
  }
  return ids;
}

// Names for compared runs' curves: the parameter values that differ between them when those
// tell every run apart, else each run's shortest distinguishing id (with those values).
function seriesNames(runs, paramRows) {
  const differing = paramRows.filter((row) => row.differs).slice(0, 3);
  const byParams = runs.map((_, i) => differing.map((row) => `${row.key}=${fmt(row.values[i])}`).join(', '));
  if (differing.length && new Set(byParams).size === runs.length) return byParams;
  const ids = shortIds(runs.map((r) => r.run_id));
  const names = ids.map((id, i) => (byParams[i] ? `${id} (${byParams[i]})` : id));
  return new Set(names).size === names.length ? names : names.map((name, i) => `${name} #${i + 1}`);
}

async function comparePage(params) {
  const mine = generation;
  const ids = (params.get('runs') || '').split(',').filter(Boolean);
  let data;
  try {
    data = await api('/api/compare?runs=' + ids.map(encodeURIComponent).join(','));
  } catch (error) {
    if (mine === generation) fail(error);
    return;
  }
  if (mine !== generation) return;
  const runs = data.runs;
  const onlyDiff = params.get('diff') === '1';
  const rowsOf = (field) => {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r[field])))].sort();
    return keys.map((key) => {
      const values = runs.map((r) => r[field][key]);
      const differs = new Set(values.map((v) => JSON.stringify(v === undefined ? null : v))).size > 1;
      return { key, values, differs };
    });
  };
  const plugins = runs.map((r) => Object.fromEntries(r.plugins.map((p) => [`${p.kind}`, `${p.class} ${short(p.sha256)}`])));
  const pluginRows = [...new Set(plugins.flatMap(Object.keys))].map((key) => {
    const values = plugins.map((p) => p[key]);
    return { key: 'plugin ' + key, values, differs: new Set(values).size > 1 };
  });
  const table = (title, rows, id) => {
    const shown = rows.filter((r) => !onlyDiff || r.differs);
    return [h('h2', {}, title, h('span', { class: 'muted' }, ` (${shown.length} of ${rows.length})`)),
      wide(h('table', { id, 'data-only-diff': onlyDiff }, h('thead', {}, h('tr', {}, h('th', {}, 'key'), runs.map((r) => h('th', {}, runLink(r.run_id))))),
        h('tbody', {}, shown.map((row) => h('tr', { class: row.differs ? 'diff' : '' }, h('td', { class: 'mono' }, row.key), row.values.map((v) => h('td', { class: typeof v === 'number' ? 'num' : '' }, fmt(v))))))))];
  };
  const paramRows = rowsOf('params');
  const metricRows = rowsOf('metrics');
  const toggle = h('label', {}, h('input', { type: 'checkbox', id: 'only-diff', checked: onlyDiff, onchange: (e) => {
    const next = new URLSearchParams(location.search);
    e.target.checked ? next.set('diff', '1') : next.delete('diff');
    go('/compare?' + next);
  } }), ' only differences');
  // Overlaid curves of one metric.
  const curveNames = [...new Set(runs.flatMap((r) => Object.keys(r.curves)))].filter((n) => n !== 'epoch_seconds').sort();
  const curveSelect = h('select', { id: 'compare-metric', 'aria-label': 'metric' }, curveNames.map((n) => h('option', { value: n }, n)));
  const curveBox = h('div', { id: 'compare-curves' });
  const names = seriesNames(runs, paramRows);
  const drawCurves = () => curveBox.replaceChildren(curveNames.length
    ? lineChart(runs.map((r, i) => ({ name: names[i], title: r.run_id, points: r.curves[curveSelect.value] || [] })), 'epoch', curveSelect.value)
    : h('p', { class: 'muted' }, 'no per-epoch metrics'));
  curveSelect.addEventListener('input', drawCurves);
  drawn(drawCurves);
  // Parallel coordinates over what differs, and one metric against one parameter.
  const numericDiff = paramRows.filter((r) => r.differs && r.values.every((v) => typeof v === 'number' || typeof v === 'string'));
  const metricNames = metricRows.map((r) => r.key).filter((k) => runs.some((r) => typeof r.metrics[k] === 'number'));
  const focus = metricNames.includes('test.accuracy') ? 'test.accuracy' : metricNames.includes('test.r2') ? 'test.r2' : metricNames[0];
  const axes = [...numericDiff.slice(0, 6).map((row) => ({ name: row.key, value: (item) => item.params[row.key] ?? null })),
    ...(focus ? [{ name: focus, value: (item) => item.metrics[focus] ?? null }] : [])];
  // Parameters that differ first: the one a reader most likely wants on the x-axis.
  const numericParams = paramRows.filter((r) => r.values.some((v) => typeof v === 'number')).sort((a, b) => b.differs - a.differs);
  const xSelect = h('select', { id: 'scatter-x', 'aria-label': 'parameter' }, numericParams.map((r) => h('option', { value: r.key }, r.key)));
  const ySelect = h('select', { id: 'scatter-y', 'aria-label': 'metric' }, metricNames.map((n) => h('option', { value: n, selected: n === focus }, n)));
  const scatterBox = h('div', { id: 'scatter' });
  const drawScatter = () => scatterBox.replaceChildren(xSelect.value && ySelect.value
    ? scatterChart(runs.map((r) => ({ x: r.params[xSelect.value], y: r.metrics[ySelect.value], label: r.run_id })), xSelect.value, ySelect.value)
    : h('p', { class: 'muted' }, 'no numeric parameter to plot against'));
  [xSelect, ySelect].forEach((el) => el.addEventListener('input', drawScatter));
  drawn(drawScatter);
  const parallelBox = h('div', { id: 'parallel' });
  if (axes.length >= 2) drawn(() => parallelBox.replaceChildren(parallelChart(axes, runs.map((r, i) => ({ ...r, name: names[i] })))));
  show(h('h1', {}, `Compare ${runs.length} runs`), toggle,
    table('Plugins', pluginRows, 'compare-plugins'), table('Parameters', paramRows, 'compare-params'), table('Final metrics', metricRows, 'compare-metrics'),
    h('h2', {}, 'Curves'), curveSelect, curveBox,
    axes.length >= 2 ? [h('h2', {}, 'Parallel coordinates'), parallelBox] : null,
    h('h2', {}, 'A metric against a parameter'), h('div', { class: 'query' }, xSelect, ySelect), scatterBox);
}

// ---------------------------------------------------------------- sweeps

async function sweepsPage() {
  const mine = generation;
  let sweeps;
  try { sweeps = await api('/api/sweeps'); } catch (error) { if (mine === generation) fail(error); return; }
  if (mine !== generation) return;
  show(h('h1', {}, 'Sweeps'), sweeps.length ? wide(h('table', { id: 'sweeps' },
    h('thead', {}, h('tr', {}, ['sweep', 'name', 'metric', 'trials', 'done', 'best', 'created'].map((c) => h('th', {}, c)))),
    h('tbody', {}, sweeps.map((s) => h('tr', {}, h('td', {}, h('a', { href: '/sweep/' + encodeURIComponent(s.sweep_id), class: 'mono' }, s.sweep_id)), h('td', {}, s.name),
      h('td', {}, `${s.metric} (${s.maximize ? 'max' : 'min'})`), h('td', { class: 'num' }, s.trials), h('td', { class: 'num' }, s.done),
      h('td', {}, s.best ? `trial ${s.best.trial}: ${fmt(s.best.metric)}` : ''), h('td', {}, s.created_at)))))) : h('p', { class: 'muted' }, 'no sweeps yet'));
}

async function sweepPage(sweepId) {
  const mine = generation;
  let sweep;
  try { sweep = await api('/api/sweeps/' + encodeURIComponent(sweepId)); } catch (error) { if (mine === generation) fail(error); return; }
  if (mine !== generation) return;
  const scored = sweep.trials.filter((t) => typeof t.metric === 'number');
  const best = scored.reduce((b, t) => (!b || (sweep.maximize ? t.metric > b.metric : t.metric < b.metric) ? t : b), null);
  const keys = [...new Set(sweep.trials.flatMap((t) => Object.keys(t.parameters || {})))].sort();
  const axes = [...keys.map((k) => ({ name: k, value: (t) => (t.parameters || {})[k] ?? null })), { name: sweep.metric, value: (t) => t.metric ?? null }];
  const parallelBox = h('div', { id: 'parallel' });
  if (scored.length >= 1 && axes.length >= 2) {
    drawn(() => parallelBox.replaceChildren(parallelChart(axes, sweep.trials.map((t) => ({ ...t, name: 'trial ' + t.trial })), best ? 'trial ' + best.trial : null)));
  }
  show(h('h1', {}, 'Sweep ', h('span', { class: 'mono' }, sweep.sweep_id)),
    factsList([['name', sweep.name], ['metric', `${sweep.metric} (${sweep.maximize ? 'maximize' : 'minimize'})`], ['created', sweep.created_at],
      ['trials', `${sweep.trials.length}, ${scored.length} with a result`], ['best', best ? h('span', {}, `trial ${best.trial}: ${fmt(best.metric)} `, best.run_id ? runLink(best.run_id) : '') : ''],
      ['runs', h('a', { href: '/runs?filter=' + encodeURIComponent(`sweep = '${sweep.sweep_id}'`) }, 'every run of this sweep')]]),
    scored.length >= 1 && axes.length >= 2 ? [h('h2', {}, 'Parallel coordinates'), parallelBox] : null,
    h('h2', {}, 'Trials'),
    wide(h('table', { id: 'trials' }, h('thead', {}, h('tr', {}, h('th', {}, 'trial'), keys.map((k) => h('th', {}, k)), h('th', {}, 'status'), h('th', {}, sweep.metric), h('th', {}, 'run'), h('th', {}, 'job'))),
      h('tbody', {}, sweep.trials.map((t) => h('tr', { class: best && t.trial === best.trial ? 'best' : '' }, h('td', { class: 'num' }, t.trial),
        keys.map((k) => h('td', {}, fmt((t.parameters || {})[k]))), h('td', {}, statusBadge(t.status)), h('td', { class: 'num' }, fmt(t.metric)),
        h('td', {}, t.run_id ? runLink(t.run_id) : ''), h('td', { class: 'mono' }, t.job ? `${t.job.job_id} ${t.job.state}` : '')))))));
}

// ---------------------------------------------------------------- lookup and plugin builds

async function lookupPage(prefix) {
  const mine = generation;
  const input = h('input', { type: 'search', class: 'filter mono', id: 'sha', value: prefix, placeholder: 'a SHA-256 or its first digits', 'aria-label': 'SHA-256' });
  const form = h('form', { class: 'query', onsubmit: (e) => { e.preventDefault(); go('/sha256/' + encodeURIComponent(input.value.trim())); } }, input, h('button', { class: 'primary', type: 'submit' }, 'Look up'));
  if (!prefix) { show(h('h1', {}, 'SHA-256 lookup'), form); return; }
  let result;
  try { result = await api('/api/sha256/' + encodeURIComponent(prefix)); } catch (error) { if (mine === generation) show(h('h1', {}, 'SHA-256 lookup'), form, h('p', { class: 'error' }, error.message)); return; }
  if (mine !== generation) return;
  show(h('h1', {}, 'SHA-256 lookup'), form,
    result.found.length ? result.found.map((f) => h('section', { class: 'found' }, h('h2', { class: 'mono' }, f.sha256),
      factsList([['kind', f.kind], ['what', f.label], ['runs', `${f.total} runs used or produced it`]]),
      h('ul', {}, f.runs.map((id) => h('li', {}, runLink(id)))),
      h('a', { href: '/runs?filter=' + encodeURIComponent(`sha256 = '${f.sha256}'`) }, 'these runs in the runs table')))
      : h('p', { class: 'muted' }, `nothing recorded has a SHA-256 starting with ${result.prefix}`));
}

async function pluginsPage() {
  const mine = generation;
  let builds;
  try { builds = await api('/api/plugins'); } catch (error) { if (mine === generation) fail(error); return; }
  if (mine !== generation) return;
  show(h('h1', {}, 'Plugin builds'), wide(h('table', { id: 'plugins' },
    h('thead', {}, h('tr', {}, ['plugin', 'version', 'SDK', 'SHA-256', 'library', 'runs'].map((c) => h('th', {}, c)))),
    h('tbody', {}, builds.map((b) => h('tr', {}, h('td', {}, b.plugin_name), h('td', {}, b.plugin_version), h('td', {}, b.sdk_version),
      h('td', { class: 'mono' }, h('a', { href: '/sha256/' + b.sha256 }, short(b.sha256))), h('td', { class: 'mono' }, b.path),
      h('td', { class: 'num' }, h('a', { href: '/runs?filter=' + encodeURIComponent(`plugin.sha256 = '${b.sha256}'`) }, b.runs))))))));
}

route();
