// The Vectabase console: a small single-page app over the admin APIs. The
// access token lives only in this module's memory; the refresh token is an
// HttpOnly cookie the page never sees. Nothing here builds HTML from
// strings: every value is put in the page as text.

const state = { token: null, user: null, timers: [] };

function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else if (k === 'text') n.textContent = v;
    else n.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function announce(msg) { document.getElementById('status').textContent = msg; }

class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function session(method, path, body) {
  const res = await fetch(path, {
    method, credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Vectabase-Console': '1' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

async function refresh() {
  const s = await session('POST', '/console/session/refresh');
  state.token = s.token; state.user = s.user;
  return s;
}

// api calls the API with the in-memory token, refreshing it once on 401.
async function api(method, path, body, retried = false) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body !== undefined ? JSON.stringify(body) : undefined });
  if (res.status === 401 && !retried) {
    try { await refresh(); } catch { signedOut(); throw new APIError(401, { message: 'session ended' }); }
    return api(method, path, body, true);
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

function fmtTime(t) { return t ? new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—'; }

function table(caption, headers, rows) {
  return el('div', { class: 'table-wrap' },
    el('table', {},
      el('caption', { class: 'visually-hidden', text: caption }),
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c)))))));
}

function errorLine(id) { return el('p', { id, class: 'error', role: 'alert' }); }

function showError(node, err) { node.textContent = err.message || String(err); }

function stopTimers() { state.timers.forEach(clearInterval); state.timers = []; }

// ---- pages ----

function card(title, id, text) {
  return el('div', { class: 'card' }, el('h2', { text: title }), el('p', { id, text: text ?? '…' }));
}

async function overview(view) {
  view.append(el('h1', { text: 'Overview' }),
    el('div', { class: 'cards' },
      card('Health', 'ov-health'), card('KEK backend', 'ov-kek'), card('Data key versions', 'ov-keys'),
      card('Rotation', 'ov-rotation'), card('Latest backup', 'ov-backup'), card('Audit chain', 'ov-audit'),
      card('Request rate', 'ov-rate'), card('429 answers', 'ov-429')));
  const set = (id, text, cls) => { const n = document.getElementById(id); if (n) { n.textContent = text; if (cls) n.className = cls; } };
  fetch('/readyz').then((r) => set('ov-health', r.ok ? 'ready' : `not ready (${r.status})`, r.ok ? 'good' : 'bad'))
    .catch(() => set('ov-health', 'unreachable', 'bad'));
  api('GET', '/api/admin/keys').then((k) => {
    set('ov-kek', `${k.kekBackend}${k.kekKeyId ? ` (${k.kekKeyId})` : ''}`);
    set('ov-keys', (k.dataKeys || []).map((d) => `${d.keyId}${d.primary ? ' (primary)' : ''}`).join(', ') || 'none');
    const r = k.rotation;
    set('ov-rotation', r.job ? `${r.job.state}, ${r.percentDone.toFixed(1)}% (${r.pendingValues} pending)` : 'never rotated');
  }).catch((e) => set('ov-kek', e.message, 'bad'));
  api('GET', '/api/admin/backups').then((b) => {
    const items = (b.items || []).filter((x) => !x.problem).sort((a, c) => (a.createdAt < c.createdAt ? 1 : -1));
    if (!items.length) { set('ov-backup', 'no backup yet', 'bad'); return; }
    const ageH = (Date.now() - new Date(items[0].createdAt)) / 3.6e6;
    set('ov-backup', `${fmtTime(items[0].createdAt)} (${ageH < 1 ? 'under an hour' : `${Math.round(ageH)} h`} ago)`, ageH > 48 ? 'bad' : 'good');
  }).catch((e) => set('ov-backup', e.message, 'bad'));
  api('GET', '/api/admin/audit/verify').then((v) => set('ov-audit', v.ok ? `intact (${v.rows} rows)` : `BROKEN at row ${v.firstBroken}`, v.ok ? 'good' : 'bad'))
    .catch((e) => set('ov-audit', e.message, 'bad'));
  let last = null;
  const poll = async () => {
    try {
      const s = await api('GET', '/api/admin/stats');
      if (last) {
        const dt = (new Date(s.at) - new Date(last.at)) / 1000;
        set('ov-rate', `${((s.requests - last.requests) / Math.max(dt, 0.001)).toFixed(2)} req/s`);
      } else set('ov-rate', `${s.requests} requests so far`);
      set('ov-429', `${s.status429} in total (${s.apiKeyRateLimited} over API-key limits)`);
      last = s;
    } catch (e) { set('ov-rate', e.message, 'bad'); }
  };
  await poll();
  state.timers.push(setInterval(poll, 5000));
}

async function keys(view) {
  const census = el('div', { id: 'key-census' });
  const prog = el('progress', { id: 'rotation-progress', max: '100', value: '0', 'aria-labelledby': 'rotation-label' });
  const progText = el('p', { id: 'rotation-text', 'aria-live': 'polite' });
  const err = errorLine('keys-error');
  const destroyOut = el('p', { id: 'destroy-result', 'aria-live': 'polite' });
  view.append(el('h1', { text: 'Keys' }),
    el('h2', { text: 'Data keys and what they protect' }), census,
    el('h2', { id: 'rotation-label', text: 'Re-encryption progress' }), prog, progText,
    el('p', {}, el('button', { id: 'rotate-dek', type: 'button', onclick: rotate }, 'Rotate data key'), ' ',
      el('button', { id: 'destroy-old', type: 'button', class: 'danger', onclick: destroy }, 'Destroy old data keys')),
    destroyOut, err);

  async function load() {
    const k = await api('GET', '/api/admin/keys');
    const rows = (k.dataKeys || []).map((d) => [String(d.keyId), d.primary ? 'primary' : 'old', String(d.ciphertexts)]);
    for (const u of k.unknownKeys || []) rows.push([String(u.keyId), 'unknown (destroyed?)', String(u.ciphertexts)]);
    census.replaceChildren(el('p', {}, `KEK: ${k.kekBackend}`),
      table('Data keys with the number of stored ciphertexts each protects', ['Key id', 'Role', 'Ciphertexts'], rows));
    showProgress(k.rotation);
    return k;
  }
  function showProgress(p) {
    if (!p.job) { progText.textContent = 'No rotation yet.'; return; }
    const pct = p.job.state === 'done' ? 100 : p.percentDone;
    prog.value = pct;
    progText.textContent = `Job ${p.job.jobId}: ${p.job.state}, ${pct.toFixed(pct === 100 ? 0 : 1)}% (${p.reencrypted} re-encrypted, ${p.pendingValues} pending)`;
  }
  async function watch() {
    stopTimers();
    const t = setInterval(async () => {
      try {
        const p = await api('GET', '/api/admin/keys/rotation');
        showProgress(p);
        if (!p.job || p.job.state !== 'running') { clearInterval(t); await load(); announce(`Rotation ${p.job ? p.job.state : ''}`); }
      } catch (e) { showError(err, e); clearInterval(t); }
    }, 400);
    state.timers.push(t);
  }
  async function rotate() {
    err.textContent = '';
    try {
      const r = await api('POST', '/api/admin/keys/rotate', { kind: 'dek' });
      announce(`Rotation ${r.jobId} started`);
      progText.textContent = `Job ${r.jobId}: started`;
      watch();
    } catch (e) { showError(err, e); }
  }
  async function destroy() {
    err.textContent = '';
    try {
      const r = await api('POST', '/api/admin/keys/destroy-old');
      destroyOut.textContent = r.destroyed.length ? `Destroyed data keys ${r.destroyed.join(', ')}.` : 'No old data keys to destroy.';
    } catch (e) { showError(err, e); }
    await load();
  }
  const k = await load();
  if (k.rotation.job && k.rotation.job.state === 'running') watch();
}

async function audit(view) {
  const form = el('form', { class: 'inline', id: 'audit-filter', 'aria-label': 'Filter the audit log' },
    el('label', {}, 'Action', el('input', { name: 'action', id: 'audit-action', placeholder: 'secret.read' })),
    el('label', {}, 'Actor type', el('input', { name: 'actorType', placeholder: 'user' })),
    el('label', {}, 'Resource id', el('input', { name: 'resourceId' })),
    el('label', {}, 'Result', el('select', { name: 'result' }, ['', 'success', 'failure', 'denied', 'allowed'].map((r) => el('option', { value: r, text: r || 'any' })))),
    el('button', { type: 'submit' }, 'Search'));
  const out = el('div', { id: 'audit-rows', 'aria-live': 'polite' });
  const more = el('button', { id: 'audit-more', type: 'button', class: 'secondary', hidden: true }, 'Next page');
  const verifyOut = el('p', { id: 'audit-verify-result', 'aria-live': 'polite' });
  const err = errorLine('audit-error');
  view.append(el('h1', { text: 'Audit' }),
    el('p', {}, el('button', { id: 'audit-verify', type: 'button', onclick: verify }, 'Verify the hash chain'), ' ',
      el('button', { id: 'audit-export', type: 'button', class: 'secondary', onclick: exportRows }, 'Export (JSON lines)')),
    verifyOut, form, out, more, err);
  let cursor = null;
  const params = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    return q;
  };
  async function page(reset) {
    err.textContent = '';
    const q = params();
    q.set('limit', '25');
    if (!reset && cursor) q.set('cursor', cursor);
    try {
      const p = await api('GET', `/api/admin/audit?${q}`);
      const rows = p.items.map((e) => [String(e.id), fmtTime(e.occurredAt), `${e.actorType}${e.actorId ? ` ${e.actorId}` : ''}`,
        e.action, `${e.resourceType || ''} ${e.resourceId || ''}`.trim(), e.result, JSON.stringify(e.details || {})]);
      const t = table('Audit rows, newest first', ['Id', 'Time', 'Actor', 'Action', 'Resource', 'Result', 'Details'], rows);
      if (reset) out.replaceChildren(t); else out.append(t);
      cursor = p.nextCursor;
      more.hidden = !cursor;
      announce(`${p.items.length} audit rows`);
    } catch (e) { showError(err, e); }
  }
  async function verify() {
    verifyOut.textContent = 'Verifying…';
    try {
      const v = await api('GET', '/api/admin/audit/verify');
      verifyOut.className = v.ok ? 'good' : 'bad';
      verifyOut.textContent = v.ok ? `Chain intact: ${v.rows} rows verified.` : `Chain BROKEN at row ${v.firstBroken}: ${v.reason || ''}`;
    } catch (e) { showError(err, e); }
  }
  async function exportRows() {
    const q = params(); q.set('limit', '500');
    const lines = [];
    let c = null;
    try {
      for (let i = 0; i < 20; i++) {
        if (c) q.set('cursor', c);
        const p = await api('GET', `/api/admin/audit?${q}`);
        p.items.forEach((e) => lines.push(JSON.stringify(e)));
        c = p.nextCursor;
        if (!c) break;
      }
    } catch (e) { showError(err, e); return; }
    const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'application/x-ndjson' }));
    const a = el('a', { href: url, download: 'vectabase-audit.jsonl', id: 'audit-export-link' }, `Download ${lines.length} rows`);
    verifyOut.replaceChildren(a);
    a.click();
  }
  form.addEventListener('submit', (ev) => { ev.preventDefault(); page(true); });
  more.addEventListener('click', () => page(false));
  await page(true);
}

async function secrets(view) {
  const list = el('div', { id: 'secret-list' });
  const detail = el('section', { id: 'secret-detail', 'aria-live': 'polite' });
  const err = errorLine('secrets-error');
  view.append(el('h1', { text: 'Secrets' }), list, detail, err);
  const enc = (n) => encodeURIComponent(n);
  async function open(name) {
    err.textContent = '';
    try {
      const v = await api('GET', `/api/secrets/${enc(name)}/versions`);
      const value = el('p', { id: 'secret-value', 'aria-live': 'polite' });
      const reason = el('input', { id: 'reveal-reason', name: 'reason', required: true, maxlength: '200', autocomplete: 'off' });
      const form = el('form', { id: 'reveal-form' },
        el('label', { for: 'reveal-reason' }, 'Reason for revealing (kept in the audit trail)'), reason,
        el('button', { type: 'submit' }, 'Reveal current value'));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        try {
          const s = await api('GET', `/api/secrets/${enc(name)}?reason=${enc(reason.value.trim())}`);
          value.replaceChildren(`Version ${s.version}: `, el('span', { class: 'secret-value', id: 'secret-plain', text: s.value }), ' ',
            el('button', { type: 'button', class: 'secondary', onclick: () => value.replaceChildren('Hidden.') }, 'Hide'));
        } catch (e) { showError(err, e); }
      });
      detail.replaceChildren(el('h2', { text: `Secret ${name}` }),
        table(`Versions of ${name}`, ['Version', 'Created by', 'Created at'], v.items.map((x) => [String(x.version), x.createdBy, fmtTime(x.createdAt)])),
        form, value);
      reason.focus();
    } catch (e) { showError(err, e); }
  }
  try {
    const p = await api('GET', '/api/secrets?limit=200');
    list.replaceChildren(table('Secrets (names only)', ['Name', 'Version', 'Updated', ''], p.items.map((s) => [s.name, String(s.version), fmtTime(s.updatedAt),
      el('button', { type: 'button', class: 'secondary', 'data-secret': s.name, 'aria-label': `Open secret ${s.name}`, onclick: () => open(s.name) }, 'Open')])));
  } catch (e) { showError(err, e); }
}

async function backups(view) {
  const list = el('div', { id: 'backup-list' });
  const out = el('p', { id: 'backup-result', 'aria-live': 'polite' });
  const err = errorLine('backups-error');
  const restoreBox = el('section', { id: 'restore-box' });
  view.append(el('h1', { text: 'Backups' }),
    el('p', {}, el('button', { id: 'backup-create', type: 'button', onclick: create }, 'Create a backup')),
    out, list, restoreBox, err);
  async function load() {
    const b = await api('GET', '/api/admin/backups');
    const items = (b.items || []).sort((a, c) => (a.createdAt < c.createdAt ? 1 : -1));
    list.replaceChildren(table('Backups, newest first', ['Id', 'Created', 'Size', 'Problem', 'Actions'], items.map((x) => [x.id, fmtTime(x.createdAt), `${x.fileSize} B`, x.problem || '',
      el('span', {}, el('button', { type: 'button', class: 'secondary', 'data-verify': x.id, 'aria-label': `Verify backup ${x.id}`, onclick: () => verify(x.id) }, 'Verify'), ' ',
        el('button', { type: 'button', class: 'danger', 'aria-label': `Restore backup ${x.id}`, onclick: () => restore(x.id) }, 'Restore…'))])));
  }
  async function create(ev) {
    err.textContent = ''; ev.target.disabled = true; out.textContent = 'Creating a backup…';
    try { const b = await api('POST', '/api/admin/backups'); out.textContent = `Created backup ${b.id}.`; await load(); } catch (e) { showError(err, e); }
    ev.target.disabled = false;
  }
  async function verify(id) {
    err.textContent = ''; out.textContent = `Verifying ${id}…`;
    try {
      const r = await api('POST', `/api/admin/backups/${id}/verify`);
      out.className = r.ok ? 'good' : 'bad';
      out.textContent = r.ok ? `Backup ${id} verified: ${r.tables} tables, ${r.rows} rows.` : `Backup ${id} FAILED verification.`;
    } catch (e) { showError(err, e); }
  }
  function restore(id) {
    const input = el('input', { id: 'restore-confirm', autocomplete: 'off' });
    const go = el('button', { type: 'submit', class: 'danger', disabled: true }, 'Replace the live data');
    input.addEventListener('input', () => { go.disabled = input.value !== id; });
    const form = el('form', { id: 'restore-form' },
      el('p', {}, 'Restoring replaces every row of the live database with the backup. Type the backup id to confirm.'),
      el('label', { for: 'restore-confirm' }, `Type ${id}`), input, go,
      el('button', { type: 'button', class: 'secondary', onclick: () => restoreBox.replaceChildren() }, 'Cancel'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (input.value !== id) return;
      go.disabled = true; out.textContent = `Restoring ${id}…`;
      try { const r = await api('POST', `/api/admin/backups/${id}/restore`); out.textContent = `Restored ${r.id}: ${r.tables} tables, ${r.rows} rows.`; restoreBox.replaceChildren(); } catch (e) { showError(err, e); }
    });
    restoreBox.replaceChildren(el('h2', { text: `Restore ${id}` }), form);
    input.focus();
  }
  try { await load(); } catch (e) { showError(err, e); }
}

async function apikeys(view) {
  const err = errorLine('apikeys-error');
  const box = el('div', { id: 'apikey-usage' });
  view.append(el('h1', { text: 'API keys' }), box, err);
  try {
    const [u, s] = await Promise.all([api('GET', '/api/admin/api-keys/usage?hours=24&limit=20'), api('GET', '/api/admin/stats')]);
    box.replaceChildren(el('p', {}, `Since ${fmtTime(u.since)}. Requests refused over a key's limit since the server started: ${s.apiKeyRateLimited}.`),
      table('Top API keys by requests in the last 24 hours', ['Key', 'Name', 'Developer', 'Limit/min', 'Requests', 'Rate-limited (429)', 'Last used'],
        u.items.map((k) => [k.prefix + (k.revoked ? ' (revoked)' : ''), k.name, k.developerId, String(k.rateLimitPerMinute), String(k.requests), String(k.rateLimited), fmtTime(k.lastUsedAt)])));
  } catch (e) { showError(err, e); }
}

async function users(view) {
  const err = errorLine('users-error');
  const out = el('p', { id: 'users-result', 'aria-live': 'polite' });
  const box = el('div', { id: 'user-list' });
  view.append(el('h1', { text: 'Users' }), out, box, err);
  try {
    const p = await api('GET', '/api/admin/users?limit=200');
    box.replaceChildren(table('Users and their roles', ['Email', 'Discord', 'Role', 'Last sign-in'], p.items.map((u) => {
      const sel = el('select', { 'aria-label': `Role of ${u.email || u.id}`, disabled: u.id === state.user.id },
        ['admin', 'developer', 'user'].map((r) => el('option', { value: r, selected: r === u.role, text: r })));
      sel.addEventListener('change', async () => {
        try { const n = await api('PATCH', `/api/admin/users/${u.id}`, { role: sel.value }); out.textContent = `${n.email || n.id} is now ${n.role}.`; } catch (e) { showError(err, e); }
      });
      return [u.email || '—', u.discordUsername || '', sel, fmtTime(u.lastSignInAt)];
    })));
  } catch (e) { showError(err, e); }
}

const pages = { overview, keys, audit, secrets, backups, apikeys, users };

async function route() {
  if (!state.token) return;
  stopTimers();
  const name = (location.hash || '#overview').slice(1);
  const page = pages[name] || overview;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const view = document.getElementById('view');
  view.replaceChildren();
  view.dataset.page = name;
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Vectabase console`;
  try { await page(view); } catch (e) { view.append(el('p', { class: 'error', role: 'alert', text: e.message })); }
  view.dataset.ready = name;
}

function signedIn() {
  document.getElementById('signin').hidden = true;
  document.getElementById('view').hidden = false;
  document.getElementById('nav').hidden = false;
  const who = document.getElementById('who');
  who.hidden = false; who.textContent = `Signed in as ${state.user.email || state.user.id}`;
  document.getElementById('signout').hidden = false;
  route();
}

function signedOut() {
  stopTimers();
  state.token = null; state.user = null;
  document.getElementById('signin').hidden = false;
  const view = document.getElementById('view');
  view.hidden = true; view.replaceChildren();
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  document.getElementById('signout').hidden = true;
}

document.getElementById('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const errNode = document.getElementById('signin-error');
  errNode.textContent = '';
  const f = new FormData(ev.target);
  try {
    const s = await session('POST', '/console/session', { email: f.get('email'), password: f.get('password') });
    state.token = s.token; state.user = s.user;
    ev.target.reset();
    signedIn();
  } catch (e) {
    errNode.textContent = e.code === 'FORBIDDEN' ? 'Sign-in refused: this console is for administrators only.' : `Sign-in failed: ${e.message}`;
  }
});

document.getElementById('signout').addEventListener('click', async () => {
  try { await fetch('/console/session', { method: 'DELETE', headers: { Authorization: `Bearer ${state.token}`, 'X-Vectabase-Console': '1' } }); } catch { /* signed out locally anyway */ }
  signedOut();
});

window.addEventListener('hashchange', () => { route(); document.getElementById('main').focus(); });

// A reload keeps the session through the cookie.
refresh().then(signedIn).catch(() => signedOut());
