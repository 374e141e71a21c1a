import type { ReplayReport } from '../../cli/replay.js';
import { renderReplay } from '../../cli/replay.js';
import type { StatusReport } from '../../cli/status.js';
import { age, bytes } from '../../cli/format.js';
import type { LiveState } from '../../observe/probe.js';
import { html, raw, type Html } from './html.js';
import { maskFields, maskText } from './mask.js';
import type { DeliveryDetail, ParkedFilter, ParkedInputRow, ParkedRow } from './queries.js';
import { sparkline, type Sampler } from './sampler.js';

/** What every page needs to know about the viewer: whether actions are on, and its CSRF token when logged in. */
export interface Viewer {
  actions: 'off' | 'login' | 'on';
  csrf?: string;
  refreshMs: number;
}

export function layout(title: string, viewer: Viewer, body: Html, active = ''): Html {
  const nav = (href: string, label: string, key: string) => html`<a href="${href}"${key === active ? raw(' class="active"') : ''}>${label}</a>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · order-relay</title><link rel="stylesheet" href="/console.css"><script src="/console.js" defer></script></head>
<body data-refresh="${viewer.refreshMs}">
<header><strong>order-relay</strong>
<nav>${nav('/', 'Overview', 'overview')}${nav('/parked', 'Parked deliveries', 'parked')}${nav('/inputs', 'Parked inputs', 'inputs')}</nav>
<span class="who">${viewer.actions === 'on'
    ? html`actions on · <form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="${viewer.csrf}"><button>log out</button></form>`
    : viewer.actions === 'login'
      ? html`<a href="/login">log in to act</a>`
      : html`read-only`}</span>
</header>
<main>${body}</main>
<footer>live: refreshes every ${viewer.refreshMs < 1000 ? `${viewer.refreshMs} ms` : `${Math.round(viewer.refreshMs / 1000)} s`} without reloading · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a> · <a href="/status">/status</a></footer>
</body></html>
`;
}

export function readOnlyNote(viewer: Viewer): Html {
  if (viewer.actions === 'on') return html``;
  if (viewer.actions === 'login') return html`<p class="note">Replay, skip and refresh need the admin token: <a href="/login">log in</a>.</p>`;
  return html`<p class="note" id="read-only">Read-only. To replay, skip or refresh from here, set <code>admin.token</code> in the config
(a secret: <code>token: \${ORDER_RELAY_ADMIN_TOKEN}</code>, <code>{ env: NAME }</code> or <code>{ file: /run/secrets/… }</code>) and restart;
until then use <code>order-relay replay</code>.</p>`;
}

const ago = (iso: string | undefined | null, now = Date.now()) => (iso ? age(Math.max(0, (now - Date.parse(iso)) / 1000)) : '-');
const spark = (sampler: Sampler, name: string, labels: Record<string, string>, label: string) => raw(sparkline(sampler.series(name, labels), { label }));
const yes = (ok: boolean | null | undefined, on: string, off: string) => (ok === null || ok === undefined ? html`<span class="muted">?</span>` : ok ? html`<span class="ok">${on}</span>` : html`<span class="bad">${off}</span>`);

export function overviewFragment(status: StatusReport | { error: string }, live: LiveState, sampler: Sampler): Html {
  if ('error' in status) return html`<p class="error">The ledger did not answer: ${status.error}</p>`;
  const checkpoints = new Map(status.checkpoints.map((c) => [`${c.source}/${c.stream}`, c]));
  const sources = status.sources.map((s) => {
    const connected = live.sources.find((x) => x.id === s.id)?.connected;
    if (s.kind === 'postgres') {
      const cp = checkpoints.get('postgres/slot');
      const labels = { source: 'postgres', slot: s.slot };
      return html`<tr data-source="postgres"><td>postgres</td><td>${yes(connected, 'connected', 'DISCONNECTED')}</td>
<td>${s.exists ? s.slot : html`<span class="bad">${s.slot} (missing)</span>`} ${s.walStatus ? html`<span class="muted">${s.walStatus}</span>` : ''}</td>
<td class="num">${bytes(s.lagBytes)} ${spark(sampler, 'order_relay_slot_lag_bytes', labels, 'slot lag, last hour')}</td>
<td class="num">${bytes(s.retainedBytes)} ${spark(sampler, 'order_relay_slot_retained_bytes', labels, 'retained WAL, last hour')}</td>
<td><code>${s.checkpoint ?? '-'}</code></td><td>${ago(cp?.updatedAt)}</td></tr>`;
    }
    if (s.kind === 'kafka') {
      return html`<tr data-source="kafka"><td>kafka</td><td>${yes(connected, 'connected', 'DISCONNECTED')}</td>
<td colspan="3"><table class="inner"><tr><th>topic/partition</th><th>stored</th><th>end</th><th>lag</th></tr>
${s.partitions.map((p) => html`<tr><td>${p.topic}/${p.partition}</td><td>${p.stored ?? '(none yet)'}</td><td>${p.end ?? '-'}</td><td class="num">${p.lag ?? '-'}</td></tr>`)}
</table>${s.error ? html`<div class="muted">${s.error}</div>` : ''}</td>
<td>${s.partitions.length} partitions</td><td>${ago(status.checkpoints.filter((c) => c.source === 'kafka').map((c) => c.updatedAt).sort().at(-1))}</td></tr>`;
    }
    return html`<tr data-source="${s.id}"><td>${s.id}</td><td><span class="muted">stored</span></td><td colspan="3">${s.streams.map((x) => html`<div>${x.stream}</div>`)}</td>
<td>${s.streams.map((x) => html`<div><code>${x.position}</code></div>`)}</td><td>${s.streams.map((x) => html`<div>${ago(x.updatedAt)}</div>`)}</td></tr>`;
  });
  const sinks = status.sinks.map((f) => {
    const st = live.sinks.find((x) => x.sink === f.sink);
    const l = { sink: f.sink };
    return html`<tr data-sink="${f.sink}"><td><a href="/parked?sink=${encodeURIComponent(f.sink)}">${f.sink}</a></td>
<td>${st ? (st.paused ? html`<span class="bad">PAUSED</span><div class="reason">since ${st.pausedSince}: ${maskText(st.pausedReason ?? '')}</div>` : html`<span class="ok">delivering</span>`) : html`<span class="muted">?</span>`}</td>
<td class="num">${st?.inflight ?? '-'}</td>
<td class="num">${f.backlog} ${spark(sampler, 'order_relay_backlog', l, 'backlog, last hour')}</td>
<td class="num">${age(f.oldestPendingSeconds)} ${spark(sampler, 'order_relay_oldest_pending_seconds', l, 'oldest pending, last hour')}</td>
<td class="num">${f.deliveredLastMinute} ${spark(sampler, 'order_relay_deliveries_total', { ...l, outcome: 'delivered' }, 'delivered per minute, last hour')}</td>
<td class="num">${f.retrying} ${spark(sampler, 'order_relay_delivery_retries_total', l, 'retries per minute, last hour')}</td>
<td class="num"><a href="/parked?sink=${encodeURIComponent(f.sink)}">${f.parked}</a>${f.held ? html` <span class="muted">(${f.held} held)</span>` : ''} ${spark(sampler, 'order_relay_parked', l, 'parked, last hour')}</td>
<td class="num">${f.blocked}</td><td class="num">${f.delivered}</td></tr>`;
  });
  return html`<h2>Sources</h2>
<table class="grid" id="sources"><thead><tr><th>source</th><th>state</th><th>slot</th><th>lag</th><th>retained WAL</th><th>checkpoint</th><th>checkpoint age</th></tr></thead>
<tbody>${sources}</tbody></table>
<h2>Sinks</h2>
<table class="grid" id="sinks"><thead><tr><th>sink</th><th>state</th><th>in flight</th><th>backlog</th><th>oldest pending</th><th>delivered /min</th><th>retrying</th><th>parked</th><th>blocked</th><th>delivered</th></tr></thead>
<tbody>${sinks}</tbody></table>
<p>Parked inputs: <a href="/inputs" id="parked-inputs">${status.parkedInputs.count}</a> ${spark(sampler, 'order_relay_parked_inputs', {}, 'parked inputs, last hour')}</p>
<h2>Latest errors</h2>
${status.lastErrors.length === 0 ? html`<p class="muted">none</p>` : html`<table class="grid"><thead><tr><th>at</th><th>sink</th><th>event</th><th>code</th><th>outcome</th><th>request id (quote to support)</th><th>HTTP</th><th>remote code</th><th>message</th></tr></thead><tbody>
${status.lastErrors.map((e) => html`<tr><td>${e.at}</td><td>${e.sink}</td><td><a href="${detailHref(e.sink, e.eventId)}"><code>${e.eventId}</code></a></td><td>${e.eventCode}</td><td>${e.outcome}</td><td><code>${e.requestId ?? '-'}</code></td><td>${e.httpStatus ?? '-'}</td><td>${e.remoteCode ?? '-'}</td><td>${maskText(e.message ?? '')}</td></tr>`)}
</tbody></table>`}
<p class="muted">as of ${status.at}</p>`;
}

export const detailHref = (sink: string, eventId: string) => `/delivery?sink=${encodeURIComponent(sink)}&event=${encodeURIComponent(eventId)}`;

function filterQuery(f: ParkedFilter): string {
  const q = new URLSearchParams();
  if (f.sink) q.set('sink', f.sink);
  if (f.code) q.set('code', f.code);
  if (f.orderNo) q.set('order', f.orderNo);
  return q.toString();
}

function hiddenFilter(f: ParkedFilter): Html {
  return html`${f.sink ? html`<input type="hidden" name="sink" value="${f.sink}">` : ''}${f.code ? html`<input type="hidden" name="code" value="${f.code}">` : ''}${f.orderNo ? html`<input type="hidden" name="order" value="${f.orderNo}">` : ''}`;
}

/** The three actions as buttons of one form; `scope` names what they act on. */
function actionButtons(viewer: Viewer, hidden: Html, scope: string, confirm: boolean): Html {
  if (viewer.actions !== 'on') return html``;
  return html`<form method="post" action="/actions" class="actions"${confirm ? raw(' data-confirm="1"') : ''}>
<input type="hidden" name="csrf" value="${viewer.csrf}">${hidden}${confirm ? '' : html`<input type="hidden" name="dryRun" value="1">`}
<button name="action" value="refresh" title="re-read the payload from the source row, then re-send (same event id, same idempotency key)">Refresh and replay ${scope}</button>
<button name="action" value="replay" title="re-send the payload as stored">Replay ${scope} as stored</button>
<button name="action" value="skip" class="danger" title="mark skipped: nothing is sent; later deliveries of the order are held">Skip ${scope}</button>
</form>`;
}

export function parkedPage(viewer: Viewer, f: ParkedFilter, sinks: string[], fragment: Html): Html {
  const q = filterQuery(f);
  return html`<h1>Parked deliveries</h1>
<form method="get" action="/parked" class="filter">
<label>sink <select name="sink"><option value="">all</option>${sinks.map((s) => html`<option${s === f.sink ? raw(' selected') : ''}>${s}</option>`)}</select></label>
<label>code <input name="code" value="${f.code ?? ''}" placeholder="TRADE_SUCCESS or INVALID_PARAMETER"></label>
<label>order number <input name="order" value="${f.orderNo ?? ''}"></label>
<button>Filter</button></form>
${readOnlyNote(viewer)}
${actionButtons(viewer, hiddenFilter(f), 'all matching', false)}
<div data-live="/parked?${q}${q ? '&' : ''}fragment=1">${fragment}</div>`;
}

export function parkedFragment(viewer: Viewer, rows: ParkedRow[], total: number): Html {
  if (total === 0) return html`<p class="muted" id="none-parked">No parked delivery matches.</p>`;
  return html`<p>${total} parked${rows.length < total ? ` (the first ${rows.length} shown)` : ''}</p>
<table class="grid" id="parked"><thead><tr><th>since</th><th>sink</th><th>event</th><th>code</th><th>order</th><th>attempts</th><th>reason</th><th></th></tr></thead><tbody>
${rows.map((r) => html`<tr data-event="${r.eventId}" data-sink="${r.sink}"><td>${r.since}</td><td>${r.sink}</td><td><a href="${detailHref(r.sink, r.eventId)}"><code>${r.eventId}</code></a></td>
<td>${r.eventCode}</td><td>${r.orderNo ?? '-'}</td><td class="num">${r.attempts}</td>
<td>${r.held ? html`<span class="muted">HELD</span> ` : html`<strong>${r.lastCode ?? '-'}</strong> `}${maskText(r.lastMessage ?? '')}</td>
<td>${actionButtons(viewer, html`<input type="hidden" name="event" value="${r.eventId}"><input type="hidden" name="sink" value="${r.sink}">`, '', true)}</td></tr>`)}
</tbody></table>`;
}

const RECORDS: Record<DeliveryDetail['record'], string> = {
  exception: 'as a delivery row (retried past the quick retries, parked, or waiting behind one of its order), with its attempts',
  outcome: 'as the outcome the sink wrote when its cursor passed the event (the last attempt only)',
  log: 'not settled: the event is in the log past the sink\'s cursor',
};

export function deliveryPage(viewer: Viewer, d: DeliveryDetail): Html {
  const masked = maskFields(d.event.payload as never);
  return html`<h1>${d.event.code} <code>${d.eventId}</code> at ${d.sink}</h1>
<table class="kv" id="delivery">
<tr><th>status</th><td id="status">${d.status === 'rejected' ? (d.lastCode === 'HELD' ? 'held' : 'parked') : d.status}</td></tr>
<tr><th>recorded</th><td id="record" class="muted">${d.status === 'unrecorded' ? 'passed by the sink\'s cursor; no outcome of it is kept' : RECORDS[d.record]}</td></tr>
<tr><th>reason</th><td>${d.lastCode ? html`<strong>${d.lastCode}</strong> ${maskText(d.lastMessage ?? '')}` : '-'}</td></tr>
<tr><th>order</th><td>${d.event.orderNo ? html`<a href="/parked?order=${encodeURIComponent(d.event.orderNo)}">${d.event.orderNo}</a>` : '-'}${d.event.refundId ? ` refund ${d.event.refundId}` : ''}</td></tr>
<tr><th>occurred</th><td>${d.event.occurredAt} <span class="muted">(source commit ${d.event.committedAt}, ${d.event.source} ${d.event.position})</span></td></tr>
<tr><th>attempts</th><td>${d.attempts}</td></tr>
</table>
${d.status === 'rejected' ? html`${readOnlyNote(viewer)}${actionButtons(viewer, html`<input type="hidden" name="event" value="${d.eventId}"><input type="hidden" name="sink" value="${d.sink}">`, 'this delivery', true)}` : ''}
<h2>Attempts</h2>
${d.history.length === 0 ? html`<p class="muted">no attempt recorded</p>` : html`<table class="grid" id="attempts"><thead><tr><th>#</th><th>at</th><th>outcome</th><th>request id (quote to support)</th><th>HTTP</th><th>remote code</th><th>message</th><th>duration</th></tr></thead><tbody>
${d.history.map((a) => html`<tr><td>${a.attempt}</td><td>${a.at}</td><td>${a.outcome}</td><td><code>${a.requestId ?? '-'}</code></td><td>${a.httpStatus ?? '-'}</td>
<td>${a.remoteCode ?? '-'}${a.remoteSubCode ? html` / ${a.remoteSubCode}` : ''}</td><td>${maskText(a.remoteMessage ?? '')}</td><td class="num">${a.durationMs === null ? '-' : `${a.durationMs} ms`}</td></tr>`)}
</tbody></table>`}
<h2>Event fields <span class="muted">(personal data masked)</span></h2>
<pre id="fields">${JSON.stringify(masked, null, 2)}</pre>`;
}

export function inputsPage(viewer: Viewer, text: string, fragment: Html): Html {
  const q = text ? `q=${encodeURIComponent(text)}&` : '';
  return html`<h1>Parked inputs</h1>
<p class="muted">Source input that could not become events (a row without an order number, an undecodable record). Re-process with <code>order-relay replay --inputs</code> once the row is fixed.</p>
<form method="get" action="/inputs" class="filter"><label>order number or text <input name="q" value="${text}"></label><button>Filter</button></form>
<div data-live="/inputs?${q}fragment=1">${fragment}</div>`;
}

export function inputsFragment(rows: ParkedInputRow[], total: number): Html {
  if (total === 0) return html`<p class="muted">No parked input matches.</p>`;
  return html`<p>${total} parked input${total === 1 ? '' : 's'}${rows.length < total ? ` (the first ${rows.length} shown)` : ''}</p>
<table class="grid" id="inputs"><thead><tr><th>#</th><th>since</th><th>source</th><th>stream</th><th>position</th><th>reason</th></tr></thead><tbody>
${rows.map((r) => html`<tr><td>${r.id}</td><td>${r.at}</td><td>${r.source}</td><td>${r.stream}</td><td><code>${r.position}</code></td><td>${maskText(r.reason)}</td></tr>`)}
</tbody></table>`;
}

export function loginPage(message?: string): Html {
  return html`<h1>Log in to act</h1>
${message ? html`<p class="error">${message}</p>` : ''}
<form method="post" action="/login" class="login"><label>admin token <input type="password" name="token" autocomplete="current-password" autofocus></label><button>Log in</button></form>
<p class="muted">The token is <code>admin.token</code> of this instance's config. The console keeps a session cookie (HttpOnly, SameSite=Strict) for 12 hours.</p>`;
}

/** What an action did: the replay command's own report, and, for a dry run, the button that does it. */
export function actionResult(viewer: Viewer, reports: ReplayReport[], form: URLSearchParams): Html {
  const dry = reports.some((r) => r.dryRun);
  const again = new URLSearchParams(form);
  again.delete('dryRun');
  again.delete('csrf');
  return html`<h1>${dry ? 'Would do' : 'Done'}</h1>
<pre id="report">${reports.length ? reports.map((r) => maskText(renderReplay(r))).join('\n\n') : 'nothing matched'}</pre>
${dry && reports.some((r) => r.deliveries.length) && viewer.actions === 'on' ? html`<form method="post" action="/actions">
<input type="hidden" name="csrf" value="${viewer.csrf}">${[...again].map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}
<button class="${form.get('action') === 'skip' ? 'danger' : ''}" id="confirm">Do it</button></form>` : ''}
<p><a href="/parked">back to parked deliveries</a></p>`;
}

export const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:24px;align-items:center;padding:10px 20px;background:#1d2330;color:#fff}
header a{color:#cfd8e8;text-decoration:none;margin-right:14px}header a.active{color:#fff;border-bottom:2px solid #7ab0ff}
header .who{margin-left:auto;color:#cfd8e8}header button{background:none;border:1px solid #7a869a;color:#cfd8e8;border-radius:3px}
main{padding:8px 20px}footer{padding:10px 20px;color:#6b7486;font-size:12px}
h1{font-size:20px}h2{font-size:16px;margin-top:22px}
table.grid{border-collapse:collapse;background:#fff;width:100%}table.grid th,table.grid td{border-bottom:1px solid #e3e6ec;padding:5px 8px;text-align:left;vertical-align:top}
table.grid th{background:#eef1f5;font-weight:600;font-size:12px}table.inner td,table.inner th{padding:1px 6px;font-size:12px}
table.kv th{text-align:left;padding:3px 12px 3px 0;color:#6b7486;font-weight:500}
pre#report{white-space:pre-wrap}td.num{white-space:nowrap}code{font:12px ui-monospace,monospace}pre{background:#fff;border:1px solid #e3e6ec;padding:10px;overflow:auto;font-size:12px}
.ok{color:#137333;font-weight:600}.bad{color:#c5221f;font-weight:700}.muted{color:#6b7486}.reason{font-size:12px;color:#c5221f}
.error{color:#c5221f}.note{background:#fff8e1;border:1px solid #f0d98c;padding:8px 12px}
svg.spark{vertical-align:middle}svg.spark polyline{fill:none;stroke:#3b78e7;stroke-width:1.5}svg.spark line.none{stroke:#d0d5dd}
form.inline{display:inline}form.actions{display:inline-flex;gap:6px;margin:6px 0}form.filter{display:flex;gap:14px;align-items:end;margin:8px 0}
button{font:inherit;padding:3px 10px;border:1px solid #9aa4b5;border-radius:3px;background:#fff;cursor:pointer}button.danger{border-color:#c5221f;color:#c5221f}
label{display:flex;flex-direction:column;font-size:12px;color:#6b7486}input,select{font:inherit;padding:3px}
`;

/** Live refresh: every element with data-live is re-fetched and replaced in place; forms with data-confirm ask first. */
export const SCRIPT = `
(() => {
  const every = Number(document.body.dataset.refresh) || 5000;
  const live = [...document.querySelectorAll('[data-live]')];
  const tick = async () => {
    for (const el of live) {
      try {
        const res = await fetch(el.dataset.live, { headers: { accept: 'text/html' }, cache: 'no-store' });
        if (res.ok) { el.innerHTML = await res.text(); el.dataset.updated = String(Date.now()); }
      } catch { /* the next tick tries again */ }
    }
  };
  if (live.length) setInterval(tick, every);
  document.addEventListener('submit', (e) => {
    const f = e.target;
    if (f instanceof HTMLFormElement && f.dataset.confirm && !confirm((e.submitter && e.submitter.textContent.trim()) + '?')) e.preventDefault();
  });
})();
`;
