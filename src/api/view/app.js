// twinstream's operator view. Plain JavaScript, no library, no build step:
// the node serves this file from its binary.
//
// * Every asset id and value is put into the page as text (textContent,
//   attribute values), never as markup.
// * Every URL is relative, so the page works behind a path prefix.
// * Tokens live in this script's memory only: not in storage, not in URLs.
// * Changes are pushed: one stream (`events`, Server-Sent Events read with
//   fetch so it can carry the token) resumes after a reconnect from the last
//   event id it saw. The open asset page also re-reads its one twin every
//   few seconds for sensor values and ages, which are not pushed.
'use strict';

(() => {
  const TILES_PER_PAGE = 240;
  const ASSET_REFRESH_MS = 2000;
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  const HEALTHS = ['green', 'yellow', 'red', 'offline'];

  const state = {
    readToken: null,
    writeToken: null,
    types: new Map(),
    twins: new Map(), // asset -> summary
    alerts: new Map(), // alert id -> AlertView (active ones)
    loaded: false,
    loading: null,
    buffered: null, // events that arrived while loading
    lastId: null,
    filters: { type: '', health: '', alert: '', search: '' },
    shown: new Map(), // group key -> tiles shown
    route: null,
    assetTimer: null,
  };

  // ------------------------------------------------------------- DOM

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const main = () => document.getElementById('main');

  function show(...nodes) {
    main().replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  }

  function errorBox(e) {
    return el('p', { class: 'error', role: 'alert' }, e && e.message ? e.message : String(e));
  }

  const twinHref = (asset) => '#/twin/' + encodeURIComponent(asset);

  function fmtNum(v, unit) {
    if (v === null || v === undefined) return '-';
    const s = Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v * 1000) / 1000) : v.toPrecision(4);
    return unit ? s + ' ' + unit : s;
  }

  function fmtAge(ms) {
    if (ms === null || ms === undefined) return '-';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }

  const fmtTime = (ms) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').replace('Z', ''));

  // ------------------------------------------------------------- tokens

  let asking = null;

  // Asks for a token in a dialog; resolves to it, or null when cancelled.
  function askToken(kind, why) {
    if (asking) return asking;
    const dialog = document.getElementById('token-dialog');
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    document.getElementById('token-why').textContent =
      (kind === 'write' ? 'This action needs the node\'s write token.' : 'This node needs a read token.') + (why ? ' ' + why : '');
    input.value = '';
    asking = new Promise((resolve) => {
      const done = (value) => {
        form.removeEventListener('submit', submit);
        document.getElementById('token-cancel').removeEventListener('click', cancel);
        dialog.close();
        asking = null;
        resolve(value);
      };
      const submit = (e) => {
        e.preventDefault();
        done(input.value.trim() || null);
      };
      const cancel = () => done(null);
      form.addEventListener('submit', submit);
      document.getElementById('token-cancel').addEventListener('click', cancel);
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  // ------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function authHeaders(write) {
    const token = write ? state.writeToken : state.readToken || state.writeToken;
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  // A JSON request to the node; asks for a token on 401 and retries.
  async function api(path, { method = 'GET', body, write = false } = {}) {
    let unavailable = 0;
    for (;;) {
      const headers = authHeaders(write);
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
      const text = await res.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch (_) {
        data = null;
      }
      if (res.status === 401) {
        const token = await askToken(write ? 'write' : 'read', data && data.error ? data.error.message : '');
        if (token === null) throw new ApiError(401, 'No token given: ' + (data && data.error ? data.error.message : 'unauthorized'));
        if (write) state.writeToken = token;
        else state.readToken = token;
        continue;
      }
      if (res.status === 503 && method === 'GET' && unavailable < 120) {
        // The node is starting (or a shard is moving): ask again shortly.
        unavailable++;
        setLive(false, 'node starting');
        await sleep(1000);
        continue;
      }
      if (!res.ok) throw new ApiError(res.status, data && data.error ? data.error.message : text || res.statusText);
      return data;
    }
  }

  // ------------------------------------------------------------- the fleet

  function category(t) {
    return t.offline ? 'offline' : t.health;
  }

  function groupOf(t) {
    const r = t.relations && t.relations[0];
    return r ? `${t.type} · ${r.relation} ${r.asset}` : t.type;
  }

  // Every item of a keyset-paged list (`items`, `next`), by `key`.
  async function everyPage(list, key) {
    const items = new Map();
    let after = null;
    for (;;) {
      const page = await api(list + '?limit=1000' + (after === null ? '' : '&after=' + encodeURIComponent(after)));
      for (const item of page.items) items.set(item[key], item);
      if (!page.next) return items;
      after = page.next;
    }
  }

  async function loadFleet() {
    const twins = await everyPage('twins', 'asset');
    const alerts = await everyPage('alerts', 'id');
    state.twins = twins;
    state.alerts = alerts;
  }

  async function loadTypes() {
    const types = await api('types');
    state.types = new Map(types.map((t) => [t.name, t]));
  }

  // Loads everything, applying the events that arrived meanwhile after it.
  function load() {
    if (state.loading) return state.loading;
    state.buffered = [];
    state.loading = (async () => {
      try {
        await loadTypes();
        await loadFleet();
        state.loaded = true;
        const pending = state.buffered;
        state.buffered = null;
        for (const ev of pending) apply(ev);
        render();
        // Benchmarks read how long the first view took from navigation start.
        if (!performance.getEntriesByName('twinstream:fleet-rendered').length) performance.mark('twinstream:fleet-rendered');
      } finally {
        state.loading = null;
        state.buffered = null;
      }
    })();
    return state.loading;
  }

  function matches(t) {
    const f = state.filters;
    if (f.type && t.type !== f.type) return false;
    if (f.health && category(t) !== f.health) return false;
    if (f.alert === 'active' && !(t.active_alerts > 0)) return false;
    if (f.alert === 'unacknowledged' && !(t.unacknowledged_alerts > 0)) return false;
    if (f.search && !t.asset.toLowerCase().includes(f.search.toLowerCase())) return false;
    return true;
  }

  function tile(t) {
    const c = category(t);
    const extra = [];
    if (t.active_alerts > 0) extra.push(t.active_alerts + (t.active_alerts === 1 ? ' alert' : ' alerts'));
    if (t.pending_commands > 0) extra.push(t.pending_commands + ' pending');
    return el(
      'a',
      { class: 'tile h-' + c, href: twinHref(t.asset), dataset: { asset: t.asset, health: c }, title: t.asset },
      el('span', { class: 'id' }, t.asset),
      el('span', { class: 'label' }, c + (extra.length ? ' · ' + extra.join(', ') : '')),
    );
  }

  function counts(list) {
    const n = { green: 0, yellow: 0, red: 0, offline: 0 };
    for (const t of list) n[category(t)]++;
    return n;
  }

  function renderFleet() {
    const all = [...state.twins.values()];
    const total = counts(all);
    const f = state.filters;
    const countButtons = HEALTHS.map((h) =>
      el(
        'button',
        {
          class: 'count h-' + h,
          type: 'button',
          dataset: { count: h },
          'aria-pressed': String(f.health === h),
          onclick: () => {
            f.health = f.health === h ? '' : h;
            render();
          },
        },
        el('b', {}, String(total[h])),
        h,
      ),
    );
    const types = [...new Set(all.map((t) => t.type))].sort();
    const typeSelect = el(
      'select',
      { id: 'filter-type', onchange: (e) => ((f.type = e.target.value), render()) },
      el('option', { value: '' }, 'every type'),
      types.map((t) => el('option', { value: t, selected: f.type === t }, t)),
    );
    const healthSelect = el(
      'select',
      { id: 'filter-health', onchange: (e) => ((f.health = e.target.value), render()) },
      el('option', { value: '' }, 'any health'),
      HEALTHS.map((h) => el('option', { value: h, selected: f.health === h }, h)),
    );
    const alertSelect = el(
      'select',
      { id: 'filter-alert', onchange: (e) => ((f.alert = e.target.value), render()) },
      el('option', { value: '' }, 'with or without alerts'),
      el('option', { value: 'active', selected: f.alert === 'active' }, 'an active alert'),
      el('option', { value: 'unacknowledged', selected: f.alert === 'unacknowledged' }, 'an unacknowledged alert'),
    );
    const search = el('input', {
      type: 'search',
      id: 'filter-search',
      placeholder: 'search by id',
      value: f.search,
      'aria-label': 'search by id',
      oninput: (e) => {
        f.search = e.target.value;
        clearTimeout(search.timer);
        search.timer = setTimeout(() => renderGroups(), 150);
      },
    });
    const groups = el('div', { id: 'groups' });
    show(
      el('h1', {}, 'Fleet ', el('span', { class: 'muted', id: 'fleet-total' }, `${all.length} twins`)),
      el('div', { class: 'counts', id: 'counts' }, countButtons),
      el('div', { class: 'filters' }, typeSelect, healthSelect, alertSelect, search),
      groups,
    );
    renderGroups();
  }

  function renderGroups() {
    const groups = document.getElementById('groups');
    if (!groups) return;
    const byGroup = new Map();
    for (const t of state.twins.values()) {
      if (!matches(t)) continue;
      const g = groupOf(t);
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(t);
    }
    const keys = [...byGroup.keys()].sort();
    if (keys.length === 0) {
      groups.replaceChildren(el('p', { class: 'muted' }, state.twins.size ? 'No twin matches the filters.' : 'No twins yet.'));
      return;
    }
    groups.replaceChildren(
      ...keys.map((g) => {
        const list = byGroup.get(g).sort((a, b) => (a.asset < b.asset ? -1 : a.asset > b.asset ? 1 : 0));
        const n = counts(list);
        const limit = state.shown.get(g) || TILES_PER_PAGE;
        const tiles = el('div', { class: 'tiles' }, list.slice(0, limit).map(tile));
        if (list.length > limit) {
          tiles.append(
            el(
              'button',
              {
                class: 'more',
                type: 'button',
                onclick: () => {
                  state.shown.set(g, limit + TILES_PER_PAGE * 4);
                  renderGroups();
                },
              },
              `show ${Math.min(TILES_PER_PAGE * 4, list.length - limit)} more of ${list.length - limit}`,
            ),
          );
        }
        return el(
          'details',
          { class: 'group', open: true, dataset: { group: g } },
          el(
            'summary',
            {},
            el('span', { class: 'name' }, g),
            el('span', { class: 'muted' }, list.length === 1 ? '1 twin' : `${list.length} twins`),
            HEALTHS.filter((h) => n[h] > 0).map((h) => el('span', { class: 'pill h-' + h }, `${n[h]} ${h}`)),
          ),
          tiles,
        );
      }),
    );
  }

  // A twin's summary changed: its tile and the counts follow.
  let fleetTimer = null;
  function fleetChanged(asset) {
    if (state.route !== 'fleet') return;
    const t = state.twins.get(asset);
    const old = document.querySelector(`.tile[data-asset="${CSS.escape(asset)}"]`);
    if (old && t && matches(t)) old.replaceWith(tile(t));
    // Counts, group membership and filters: re-rendered at most every 250 ms.
    if (fleetTimer) return;
    fleetTimer = setTimeout(() => {
      fleetTimer = null;
      if (state.route !== 'fleet') return;
      const total = counts([...state.twins.values()]);
      for (const b of document.querySelectorAll('[data-count]')) b.querySelector('b').textContent = String(total[b.dataset.count]);
      document.getElementById('fleet-total').textContent = `${state.twins.size} twins`;
      renderGroups();
    }, 250);
  }

  // ------------------------------------------------------------- alerts

  function alertRow(a, withAsset) {
    const ack =
      a.state === 'raised'
        ? el('button', { type: 'button', class: 'ack', dataset: { alert: a.id }, onclick: () => acknowledge(a) }, 'Acknowledge')
        : el('span', { class: 'muted' }, a.state);
    return el(
      'tr',
      { dataset: { alert: a.id } },
      withAsset ? el('td', {}, el('a', { href: twinHref(a.asset) }, a.asset)) : null,
      el('td', {}, a.rule),
      el('td', { class: 'sev-' + a.severity }, a.severity),
      el('td', {}, a.state),
      el('td', { title: fmtTime(a.since_ts) }, fmtAge(a.since_ts)),
      el('td', { class: 'num' }, fmtNum(a.last_value)),
      el('td', {}, a.message || ''),
      el('td', {}, ack),
    );
  }

  function alertTable(list, withAsset) {
    if (list.length === 0) return el('p', { class: 'muted' }, 'No alerts.');
    return el(
      'table',
      { class: 'alerts' },
      el(
        'thead',
        {},
        el('tr', {}, withAsset ? el('th', {}, 'asset') : null, ['rule', 'severity', 'state', 'since', 'value', 'message', ''].map((h) => el('th', {}, h))),
      ),
      el('tbody', {}, list.map((a) => alertRow(a, withAsset))),
    );
  }

  const bySeverityThenAge = (a, b) =>
    (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || a.since_ts - b.since_ts || (a.id < b.id ? -1 : 1);

  function renderAlerts() {
    const list = [...state.alerts.values()].filter((a) => a.state !== 'cleared').sort(bySeverityThenAge);
    const unacked = list.filter((a) => a.state === 'raised').length;
    show(
      el('h1', {}, 'Alerts ', el('span', { class: 'muted', id: 'alerts-total' }, `${list.length} active, ${unacked} unacknowledged`)),
      el('div', { id: 'alert-list' }, alertTable(list, true)),
    );
  }

  async function acknowledge(a) {
    try {
      const path = 'alerts/' + encodeURIComponent(a.id).replace(/%2F/g, '/') + '/ack';
      const acked = await api(path, { method: 'POST', write: true });
      if (acked && acked.id) state.alerts.set(acked.id, acked);
      render();
    } catch (e) {
      main().prepend(errorBox(e));
    }
  }

  // ------------------------------------------------------------- one twin

  function chooseStep(type, rangeMs) {
    const h = type && type.history;
    if (!h) return null;
    const want = rangeMs / 300;
    if (h.raw_keep_ms && h.raw_keep_ms >= rangeMs && rangeMs <= 3600000 && (!h.tiers.length || h.tiers[0].every_ms > want)) {
      return 'raw';
    }
    const kept = h.tiers.filter((t) => t.keep_ms >= rangeMs);
    const candidates = kept.length ? kept : h.tiers;
    if (!candidates.length) return h.raw_keep_ms ? 'raw' : null;
    let tier = candidates[0];
    for (const t of candidates) if (t.every_ms <= want) tier = t;
    const step = Math.max(1, Math.floor(want / tier.every_ms)) * tier.every_ms;
    return step + 'ms';
  }

  // An SVG chart of one series: the mean as a line, min..max as a band.
  function chart(series, from, to, unit) {
    const W = 600;
    const H = 140;
    const pad = { l: 44, r: 6, t: 8, b: 18 };
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('class', 'chart');
    svg.setAttribute('role', 'img');
    const pts = series.points
      ? series.points.map((p) => ({ t: p.t, y: p.mean, lo: p.min, hi: p.max }))
      : (series.readings || []).map((p) => ({ t: p.t, y: p.value, lo: p.value, hi: p.value }));
    svg.setAttribute('aria-label', `${series.sensor}: ${pts.length} points`);
    const mk = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    if (pts.length === 0) {
      mk('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data in this range');
      return svg;
    }
    let lo = Math.min(...pts.map((p) => p.lo));
    let hi = Math.max(...pts.map((p) => p.hi));
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const x = (t) => pad.l + ((t - from) / (to - from)) * (W - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (H - pad.t - pad.b);
    mk('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b });
    mk('text', { x: pad.l - 4, y: pad.t + 8, 'text-anchor': 'end' }, fmtNum(hi));
    mk('text', { x: pad.l - 4, y: H - pad.b, 'text-anchor': 'end' }, fmtNum(lo));
    mk('text', { x: pad.l, y: H - 4 }, fmtTime(from).slice(5, 16));
    mk('text', { x: W - pad.r, y: H - 4, 'text-anchor': 'end' }, fmtTime(to).slice(5, 16) + (unit ? ' · ' + unit : ''));
    if (series.points) {
      const top = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.hi).toFixed(1)}`);
      const bottom = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.lo).toFixed(1)}`).reverse();
      mk('polygon', { class: 'band', points: top.concat(bottom).join(' ') });
    }
    mk('polyline', { class: 'line', points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ') });
    // Few points: each one visible on its own.
    if (pts.length <= 60) for (const p of pts) mk('circle', { class: 'dot', cx: x(p.t).toFixed(1), cy: y(p.y).toFixed(1), r: 2.5 });
    return svg;
  }

  const RANGES = [
    ['1 h', 3600000],
    ['6 h', 6 * 3600000],
    ['24 h', 86400000],
    ['7 d', 7 * 86400000],
  ];

  async function renderTrends(box, asset, twin, type) {
    const h = type && type.history;
    if (!h) {
      box.replaceChildren(el('p', { class: 'muted' }, 'This asset type keeps no history.'));
      return;
    }
    const range = state.trendRange || 3600000;
    const end = (twin.max_ts ?? Date.now()) + 1;
    const from = end - range;
    const step = chooseStep(type, range);
    const buttons = el(
      'div',
      { class: 'ranges' },
      RANGES.map(([label, ms]) =>
        el(
          'button',
          {
            type: 'button',
            'aria-pressed': String(ms === range),
            onclick: () => {
              state.trendRange = ms;
              renderTrends(box, asset, twin, type);
            },
          },
          label,
        ),
      ),
      el('span', { class: 'muted' }, step === 'raw' ? ' every reading' : ` step ${Math.round(parseInt(step, 10) / 1000)} s`),
    );
    box.replaceChildren(buttons, el('p', { class: 'muted' }, 'loading…'));
    try {
      const q = `twins/${encodeURIComponent(asset)}/history?sensor=${encodeURIComponent(h.series.join(','))}&from=${from}&to=${end}&step=${step}&max_points=2000`;
      const data = await api(q);
      const units = new Map(type.sensors.map((s) => [s.name, s.unit]));
      box.replaceChildren(
        buttons,
        el(
          'div',
          { class: 'cards' },
          data.series.map((s) =>
            el('div', { class: 'card', dataset: { series: s.sensor } }, el('b', {}, s.sensor), chart(s, from, end, units.get(s.sensor.replace(/^est\./, '')))),
          ),
        ),
      );
    } catch (e) {
      box.replaceChildren(buttons, errorBox(e));
    }
  }

  function sensorsTable(twin, type) {
    const defs = new Map((type ? type.sensors : []).map((s) => [s.name, s]));
    const rows = Object.entries(twin.sensors).map(([name, s]) => {
      const d = defs.get(name) || {};
      const sources = (s.sources || []).map((x) => `${x.source}: ${fmtNum(x.value)}`).join(', ');
      return el(
        'tr',
        { dataset: { sensor: name } },
        el('td', {}, name),
        el('td', { class: 'num value' }, fmtNum(s.value, d.unit)),
        el('td', { class: 'quality' }, s.quality),
        el('td', { title: fmtTime(s.seen ?? s.ts) }, fmtAge(s.seen ?? s.ts)),
        el('td', { class: 'num' }, s.estimate !== s.value ? fmtNum(s.estimate, d.unit) : ''),
        el('td', {}, sources),
      );
    });
    return el(
      'table',
      { class: 'sensors' },
      el('thead', {}, el('tr', {}, ['sensor', 'value', 'quality', 'age', 'estimate', 'sources'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows),
    );
  }

  function modelBox(twin) {
    const m = twin.model;
    if (!m) return null;
    const rows = Object.entries(m.states).map(([name, e]) =>
      el('tr', {}, el('td', {}, 'est.' + name), el('td', { class: 'num' }, fmtNum(e.est)), el('td', { class: 'num' }, e.std === null ? '-' : '± ' + fmtNum(e.std))),
    );
    return el(
      'div',
      {},
      el('h2', {}, 'Model estimate'),
      el('p', { class: 'muted' }, `model ${m.version} · ${m.updates} readings taken · at ${fmtTime(m.ts)}`),
      el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'state'), el('th', {}, 'estimate'), el('th', {}, 'uncertainty (1σ)'))), el('tbody', {}, rows)),
      el('div', { id: 'forecast' }),
    );
  }

  async function renderForecast(asset) {
    const box = document.getElementById('forecast');
    if (!box) return;
    try {
      const f = await api(`twins/${encodeURIComponent(asset)}/forecast?horizon=10m&step=2m`);
      const points = f.points || [];
      const names = points.length ? Object.keys(points[0].states || {}) : [];
      box.replaceChildren(
        el('h2', {}, 'Forecast'),
        el(
          'table',
          {},
          el('thead', {}, el('tr', {}, el('th', {}, 'time'), names.map((n) => el('th', {}, 'est.' + n)))),
          el(
            'tbody',
            {},
            points.map((p) =>
              el('tr', {}, el('td', {}, fmtTime(p.ts)), names.map((n) => el('td', { class: 'num' }, `${fmtNum(p.states[n].mean)} ± ${fmtNum(p.states[n].std)}`))),
            ),
          ),
        ),
      );
    } catch (e) {
      box.replaceChildren(el('h2', {}, 'Forecast'), errorBox(e));
    }
  }

  function windowsTable(twin) {
    const open = twin.windows.filter((w) => w.state === 'open');
    if (!open.length) return el('p', { class: 'muted' }, 'No open windows.');
    return el(
      'table',
      {},
      el('thead', {}, el('tr', {}, ['window', 'sensor', 'from', 'to', 'count', 'avg', 'min', 'max'].map((h) => el('th', {}, h)))),
      el(
        'tbody',
        {},
        open.map((w) =>
          el(
            'tr',
            {},
            el('td', {}, w.window),
            el('td', {}, w.sensor),
            el('td', {}, fmtTime(w.start)),
            el('td', {}, fmtTime(w.end)),
            el('td', { class: 'num' }, String(w.count)),
            el('td', { class: 'num' }, fmtNum(w.avg)),
            el('td', { class: 'num' }, fmtNum(w.min)),
            el('td', { class: 'num' }, fmtNum(w.max)),
          ),
        ),
      ),
    );
  }

  function commandForm(asset, type) {
    const defs = type ? type.commands : [];
    if (!defs.length) return null;
    const status = el('p', { class: 'muted', id: 'command-status', role: 'status' });
    const value = el('input', { type: 'number', id: 'command-value', step: 'any', required: true });
    const key = el('input', { type: 'text', id: 'command-key', value: crypto.randomUUID(), size: 36 });
    const pick = el('select', { id: 'command-name' }, defs.map((c) => el('option', { value: c.name }, c.name)));
    const bounds = () => {
      const c = defs.find((d) => d.name === pick.value);
      value.min = c && c.min !== null ? String(c.min) : '';
      value.max = c && c.max !== null ? String(c.max) : '';
      value.placeholder = c ? `${c.min ?? '-∞'} to ${c.max ?? '∞'}` : '';
    };
    pick.addEventListener('change', bounds);
    bounds();
    const form = el(
      'form',
      {
        class: 'command',
        id: 'command-form',
        onsubmit: async (e) => {
          e.preventDefault();
          if (!form.reportValidity()) return;
          status.textContent = 'sending…';
          try {
            const body = { command: pick.value, value: Number(value.value), idempotency_key: key.value || undefined };
            const sent = await api(`twins/${encodeURIComponent(asset)}/commands`, { method: 'POST', write: true, body });
            status.textContent = `sent: ${sent.id} (${sent.state})`;
            key.value = crypto.randomUUID();
            refreshAsset(asset);
          } catch (err) {
            status.textContent = err.message;
          }
        },
      },
      el('label', {}, 'command', pick),
      el('label', {}, 'value', value),
      el('label', {}, 'idempotency key', key),
      el('button', { type: 'submit' }, 'Send'),
    );
    return el('div', {}, form, status);
  }

  function commandLog(twin) {
    if (!twin.command_log.length) return el('p', { class: 'muted' }, 'No commands yet.');
    return el(
      'table',
      { id: 'command-log' },
      el('thead', {}, el('tr', {}, ['id', 'value', 'state', 'origin', 'issued', 'finished'].map((h) => el('th', {}, h)))),
      el(
        'tbody',
        {},
        [...twin.command_log].reverse().map((c) =>
          el(
            'tr',
            { dataset: { command: c.id } },
            el('td', {}, c.id),
            el('td', { class: 'num' }, fmtNum(c.value)),
            el('td', { class: 'state-' + c.state }, c.state),
            el('td', {}, c.origin + (c.rule ? ' ' + c.rule : '')),
            el('td', {}, fmtTime(c.issued_at)),
            el('td', {}, fmtTime(c.finished_at)),
          ),
        ),
      ),
    );
  }

  async function renderAsset(asset) {
    show(el('h1', {}, asset), el('p', { class: 'muted' }, 'loading…'));
    let twin;
    try {
      twin = await api('twins/' + encodeURIComponent(asset));
    } catch (e) {
      show(el('h1', {}, asset), errorBox(e));
      return;
    }
    if (state.route !== 'twin:' + asset) return;
    const type = state.types.get(twin.type);
    const c = category(twin);
    const trends = el('div', { id: 'trends' });
    show(
      el(
        'h1',
        {},
        asset,
        ' ',
        el('span', { class: 'pill h-' + c, id: 'twin-health' }, c),
        ' ',
        el('span', { class: 'muted' }, twin.type),
      ),
      el('p', { class: 'muted', id: 'twin-meta' }, `version ${twin.version} · latest event ${fmtTime(twin.max_ts)} · watermark ${fmtTime(twin.watermark)}`),
      twin.relations.length
        ? el(
            'p',
            { id: 'relations' },
            'Relations: ',
            twin.relations.map((r, i) => [i ? ', ' : '', r.relation + ' ', el('a', { href: twinHref(r.asset) }, r.asset)]),
          )
        : null,
      el('h2', {}, 'Sensors'),
      el('div', { id: 'sensors' }, sensorsTable(twin, type)),
      el('h2', {}, 'Trends'),
      trends,
      modelBox(twin),
      el('h2', {}, 'Alerts'),
      el('div', { id: 'twin-alerts' }, alertTable(twin.alerts.slice().sort(bySeverityThenAge), false)),
      el('h2', {}, 'Commands'),
      commandForm(asset, type),
      el('div', { id: 'commands' }, commandLog(twin)),
      el('h2', {}, 'Open windows'),
      el('div', { id: 'windows' }, windowsTable(twin)),
    );
    renderTrends(trends, asset, twin, type);
    if (twin.model) renderForecast(asset);
    clearInterval(state.assetTimer);
    state.assetTimer = setInterval(() => refreshAsset(asset), ASSET_REFRESH_MS);
  }

  // Re-reads the open twin and updates its live parts in place.
  let refreshing = false;
  async function refreshAsset(asset) {
    if (state.route !== 'twin:' + asset || refreshing) return;
    refreshing = true;
    try {
      const twin = await api('twins/' + encodeURIComponent(asset));
      if (state.route !== 'twin:' + asset) return;
      const type = state.types.get(twin.type);
      const c = category(twin);
      const pill = document.getElementById('twin-health');
      if (pill) {
        pill.className = 'pill h-' + c;
        pill.textContent = c;
      }
      const meta = document.getElementById('twin-meta');
      if (meta) meta.textContent = `version ${twin.version} · latest event ${fmtTime(twin.max_ts)} · watermark ${fmtTime(twin.watermark)}`;
      document.getElementById('sensors')?.replaceChildren(sensorsTable(twin, type));
      document.getElementById('twin-alerts')?.replaceChildren(alertTable(twin.alerts.slice().sort(bySeverityThenAge), false));
      document.getElementById('commands')?.replaceChildren(commandLog(twin));
      document.getElementById('windows')?.replaceChildren(windowsTable(twin));
    } catch (_) {
      // The next refresh tries again; the stream's status shows the link.
    } finally {
      refreshing = false;
    }
  }

  // ------------------------------------------------------------- the stream

  function setLive(on, text) {
    const l = document.getElementById('live');
    l.className = 'live ' + (on ? 'on' : 'off');
    l.textContent = text || (on ? 'live' : 'reconnecting');
  }

  function apply(ev) {
    let data = null;
    try {
      data = ev.data ? JSON.parse(ev.data) : null;
    } catch (_) {
      return;
    }
    switch (ev.event) {
      case 'twin': {
        const old = state.twins.get(data.asset);
        data.relations = old ? old.relations : data.relations || [];
        state.twins.set(data.asset, data);
        fleetChanged(data.asset);
        if (state.route === 'twin:' + data.asset) refreshAsset(data.asset);
        break;
      }
      case 'alert': {
        // The transition, and the alert as it stands after it (null when a
        // later transition of the same rule replaced it).
        const t = data.transition;
        const id = `${data.asset}/${t.rule}/${t.seq}`;
        if (data.alert && data.alert.state !== 'cleared') state.alerts.set(id, data.alert);
        else state.alerts.delete(id);
        // An alert of an earlier sequence of the same rule is replaced.
        for (const [other, a] of state.alerts) if (a.asset === data.asset && a.rule === t.rule && other !== id) state.alerts.delete(other);
        if (state.route === 'alerts') scheduleAlerts();
        if (state.route === 'twin:' + data.asset) refreshAsset(data.asset);
        break;
      }
      case 'command':
        if (state.route === 'twin:' + data.asset) refreshAsset(data.asset);
        break;
      default:
        break;
    }
  }

  let alertsTimer = null;
  function scheduleAlerts() {
    if (alertsTimer) return;
    alertsTimer = setTimeout(() => {
      alertsTimer = null;
      if (state.route === 'alerts') renderAlerts();
    }, 250);
  }

  function dispatch(ev) {
    if (ev.id !== null) state.lastId = ev.id;
    if (ev.event === 'hello') {
      if (!state.loaded) load().catch((e) => show(errorBox(e)));
      return;
    }
    if (ev.event === 'reset') {
      state.loaded = false;
      load().catch((e) => show(errorBox(e)));
      return;
    }
    if (state.buffered) state.buffered.push(ev);
    else if (state.loaded) apply(ev);
  }

  // One SSE block: `field: value` lines.
  function parseEvent(block) {
    const ev = { id: null, event: 'message', data: '' };
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'id') ev.id = value;
      else if (field === 'event') ev.event = value;
      else if (field === 'data') data.push(value);
    }
    ev.data = data.join('\n');
    return ev;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function stream() {
    for (;;) {
      try {
        const headers = { Accept: 'text/event-stream', ...authHeaders(false) };
        if (state.lastId !== null) headers['Last-Event-ID'] = state.lastId;
        const res = await fetch('events', { headers, cache: 'no-store' });
        if (res.status === 401) {
          const token = await askToken('read', '');
          if (token === null) {
            setLive(false, 'no token');
            show(errorBox(new Error('This node needs a read token; reload the page to enter one.')));
            return;
          }
          state.readToken = token;
          continue;
        }
        if (!res.ok) throw new Error('events: ' + res.status);
        setLive(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            dispatch(parseEvent(block));
          }
        }
      } catch (_) {
        // Reconnects below.
      }
      setLive(false);
      await sleep(1000);
    }
  }

  // ------------------------------------------------------------- routes

  function render() {
    const hash = location.hash || '#/';
    clearInterval(state.assetTimer);
    for (const a of document.querySelectorAll('.bar nav a')) a.removeAttribute('aria-current');
    if (hash.startsWith('#/twin/')) {
      let asset;
      try {
        asset = decodeURIComponent(hash.slice('#/twin/'.length));
      } catch (_) {
        asset = hash.slice('#/twin/'.length); // not percent-encoded: as written
      }
      state.route = 'twin:' + asset;
      if (state.loaded) renderAsset(asset);
      return;
    }
    if (hash === '#/alerts') {
      state.route = 'alerts';
      document.getElementById('nav-alerts').setAttribute('aria-current', 'page');
      if (state.loaded) renderAlerts();
      return;
    }
    state.route = 'fleet';
    document.getElementById('nav-fleet').setAttribute('aria-current', 'page');
    if (state.loaded) renderFleet();
  }

  window.addEventListener('hashchange', render);
  window.addEventListener('DOMContentLoaded', () => {
    show(el('p', { class: 'muted' }, 'loading…'));
    render();
    stream();
  });
})();
