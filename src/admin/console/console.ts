import type { IncomingMessage, ServerResponse } from 'node:http';
import pg from 'pg';
import type { Registry } from 'prom-client';
import { ledgerUrl } from '../../app.js';
import { replayParked, type ReplayReport } from '../../cli/replay.js';
import { collectStatus, type StatusReport } from '../../cli/status.js';
import type { Config } from '../../config/schema.js';
import { resolveSecret } from '../../config/secrets.js';
import type { Logger } from '../../log.js';
import type { LiveProbe } from '../../observe/probe.js';
import { createAuth, sessionCookie, type Actor, type Auth } from './auth.js';
import { html, type Html } from './html.js';
import * as pages from './pages.js';
import { deliveryDetail, parkedEventIds, parkedInputList, parkedList, type ParkedFilter } from './queries.js';
import { startSampler, type Sampler } from './sampler.js';

/**
 * The operator console on the admin listener: server-rendered pages (overview, parked
 * deliveries, one delivery, parked inputs) whose live parts a small script re-fetches
 * every few seconds, and, when `admin.token` is set, replay / refresh-and-replay / skip of
 * one parked delivery or of a filtered set, through `order-relay replay`'s own functions.
 *
 * - `GET /`, `/parked`, `/delivery`, `/inputs` (`?fragment=1`: the live part only);
 * - `GET|POST /login`, `POST /logout`: a session cookie after proving the token once;
 * - `POST /actions`: a form (session cookie and CSRF token); `dryRun=1` shows what would happen;
 * - `POST /api/replay`: JSON `{ action, event?, sink?, code?, order?, dryRun? }` with
 *   `Authorization: Bearer <admin.token>`; answers the replay reports as JSON.
 *
 * Every action is logged with who (api, or the session's tag), from where, and what.
 */
export interface ConsoleOptions {
  config: Config;
  env?: NodeJS.ProcessEnv;
  registry: Registry;
  probe: LiveProbe;
  logger: Logger;
  /** Sparkline sampling interval (default 10 s: an hour is 360 samples). */
  sampleIntervalMs?: number;
  /** How often the pages re-fetch their live part (default 5 s). */
  refreshMs?: number;
}

export interface Console {
  /** Whether actions are possible (admin.token set). */
  actions: boolean;
  /** Handles the request if it is one of the console's; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
  /** The paths that accept POST. */
  posts: ReadonlySet<string>;
  close(): Promise<void>;
}

const STATUS_CACHE_MS = 2_000;
const MAX_BODY = 64 * 1024;
const ACTIONS = new Set(['replay', 'refresh', 'skip']);

export function createConsole(options: ConsoleOptions): Console {
  const { config } = options;
  const env = options.env ?? process.env;
  const log = options.logger.child({ component: 'console' });
  const token = config.admin.token ? resolveSecret(config.admin.token, 'admin.token', env) : undefined;
  const auth: Auth = createAuth(token);
  const schema = config.ledger.schema;
  const sinks = Object.keys(config.sinks);
  const refreshMs = options.refreshMs ?? 5_000;
  const sampler: Sampler = startSampler(options.registry, { intervalMs: options.sampleIntervalMs ?? 10_000 });
  let pool: pg.Pool | undefined;
  const db = () => {
    if (!pool) {
      pool = new pg.Pool({ connectionString: ledgerUrl(config), max: 2, application_name: 'order-relay-console', idleTimeoutMillis: 30_000 });
      pool.on('error', () => {});
    }
    return pool;
  };

  // One status read serves every viewer for a moment: the totals read the outcomes in full.
  let cached: { at: number; value: Promise<StatusReport | { error: string }> } | undefined;
  const status = () => {
    if (!cached || Date.now() - cached.at > STATUS_CACHE_MS) {
      cached = {
        at: Date.now(),
        value: collectStatus(config, { live: false, env }).catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) })),
      };
    }
    return cached.value;
  };

  function viewer(req: IncomingMessage): pages.Viewer {
    if (!auth.enabled) return { actions: 'off', refreshMs };
    const s = auth.session(req);
    return s ? { actions: 'on', csrf: s.csrf, refreshMs } : { actions: 'login', refreshMs };
  }

  const filterOf = (q: URLSearchParams): ParkedFilter => ({
    ...(q.get('sink') ? { sink: q.get('sink')! } : {}),
    ...(q.get('code') ? { code: q.get('code')!.trim() } : {}),
    ...(q.get('order') ? { orderNo: q.get('order')!.trim() } : {}),
  });

  async function page(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const v = viewer(req);
    const fragment = url.searchParams.get('fragment') === '1';
    const show = (title: string, active: string, full: () => Html, part: Html) =>
      sendHtml(res, 200, fragment ? part : pages.layout(title, v, full(), active));
    switch (url.pathname) {
      case '/': {
        const part = pages.overviewFragment(await status(), options.probe.live(), sampler);
        show('Overview', 'overview', () => html`<h1>Overview</h1><div data-live="/?fragment=1" id="overview">${part}</div>`, part);
        return true;
      }
      case '/parked': {
        const f = filterOf(url.searchParams);
        const { rows, total } = await parkedList(db(), schema, f);
        const part = pages.parkedFragment(v, rows, total);
        show('Parked deliveries', 'parked', () => pages.parkedPage(v, f, sinks, part), part);
        return true;
      }
      case '/delivery': {
        const sink = url.searchParams.get('sink') ?? '';
        const eventId = url.searchParams.get('event') ?? '';
        const d = await deliveryDetail(db(), schema, sink, eventId);
        if (!d) sendHtml(res, 404, pages.layout('Not found', v, html`<h1>No delivery of event <code>${eventId}</code> at ${sink}</h1>`));
        else sendHtml(res, 200, pages.layout(`${d.event.code} ${eventId}`, v, pages.deliveryPage(v, d), 'parked'));
        return true;
      }
      case '/inputs': {
        const text = (url.searchParams.get('q') ?? '').trim();
        const { rows, total } = await parkedInputList(db(), schema, text ? { text } : {});
        const part = pages.inputsFragment(rows, total);
        show('Parked inputs', 'inputs', () => pages.inputsPage(v, text, part), part);
        return true;
      }
      case '/login':
        if (!auth.enabled) sendHtml(res, 403, pages.layout('Read-only', v, pages.readOnlyNote(v)));
        else sendHtml(res, 200, pages.layout('Log in', v, pages.loginPage()));
        return true;
      case '/console.css':
        send(res, 200, 'text/css; charset=utf-8', pages.CSS);
        return true;
      case '/favicon.ico':
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        res.end();
        return true;
      case '/console.js':
        send(res, 200, 'text/javascript; charset=utf-8', pages.SCRIPT);
        return true;
      default:
        return false;
    }
  }

  /** Runs one action through `order-relay replay`'s functions, once per sink so a filter acts exactly where it matched. */
  async function act(actor: Actor, input: { action: string; event?: string; sink?: string; code?: string; order?: string; dryRun: boolean }): Promise<ReplayReport[]> {
    if (!ACTIONS.has(input.action)) throw new ActionError(400, `unknown action "${input.action}" (replay, refresh or skip)`);
    if (input.sink && !sinks.includes(input.sink)) throw new ActionError(400, `no sink "${input.sink}" (have: ${sinks.join(', ')})`);
    let targets: Array<{ sink: string; eventIds: string[] }>;
    if (input.event) {
      if (!/^[0-9a-f]{32}$/.test(input.event)) throw new ActionError(400, 'event: expected an event id (32 hex characters)');
      targets = (input.sink ? [input.sink] : sinks).map((sink) => ({ sink, eventIds: [input.event!] }));
    } else {
      const f: ParkedFilter = { ...(input.sink ? { sink: input.sink } : {}), ...(input.code ? { code: input.code } : {}), ...(input.order ? { orderNo: input.order } : {}) };
      targets = [];
      for (const sink of input.sink ? [input.sink] : sinks) {
        const eventIds = await parkedEventIds(db(), schema, { ...f, sink });
        if (eventIds.length) targets.push({ sink, eventIds });
      }
    }
    const what = { action: input.action, ...(input.event ? { event: input.event } : {}), ...(input.sink ? { sink: input.sink } : {}), ...(input.code ? { code: input.code } : {}), ...(input.order ? { orderNo: input.order } : {}), dryRun: input.dryRun };
    log.info({ who: actor.who, via: actor.via, remote: actor.remote, ...what }, 'console action requested');
    const reports: ReplayReport[] = [];
    try {
      for (const t of targets) {
        const report = await replayParked(
          config,
          { eventIds: t.eventIds, sink: t.sink, dryRun: input.dryRun, ...(input.action === 'skip' ? { skip: true } : { refresh: input.action === 'refresh' }) },
          { logger: options.logger, env },
        );
        // A named event that is not parked at this sink is no news when the caller named no sink.
        if (input.event && !input.sink && report.deliveries.length === 0) continue;
        reports.push(report);
      }
    } catch (err) {
      log.warn({ who: actor.who, remote: actor.remote, ...what, err: err instanceof Error ? err.message : String(err) }, 'console action failed');
      throw new ActionError(409, err instanceof Error ? err.message : String(err));
    }
    const changed = reports.reduce((n, r) => n + r.changed, 0);
    log.info(
      { who: actor.who, via: actor.via, remote: actor.remote, ...what, changed, deliveries: reports.flatMap((r) => r.deliveries.map((d) => ({ sink: d.sink, eventId: d.eventId, action: d.action }))).slice(0, 100) },
      input.dryRun ? 'console action previewed' : 'console action done',
    );
    cached = undefined;
    return reports;
  }

  async function post(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (!POSTS.has(url.pathname)) return false;
    if (!sameOrigin(req)) {
      send(res, 403, 'text/plain', 'refused: the request comes from another origin\n');
      return true;
    }
    const body = await readBody(req);
    const v = viewer(req);
    if (url.pathname === '/api/replay') {
      const actor = auth.actor(req);
      if ('refused' in actor) {
        sendJson(res, auth.enabled ? 401 : 403, { error: auth.enabled ? actor.refused : `${actor.refused}: set admin.token to enable actions` });
        return true;
      }
      let input: Record<string, unknown>;
      try {
        input = JSON.parse(body || '{}') as Record<string, unknown>;
      } catch {
        sendJson(res, 400, { error: 'expected a JSON body' });
        return true;
      }
      const str = (k: string) => (typeof input[k] === 'string' && input[k] ? (input[k] as string) : undefined);
      try {
        const reports = await act(actor, { action: str('action') ?? '', ...opt('event', str('event')), ...opt('sink', str('sink')), ...opt('code', str('code')), ...opt('order', str('order')), dryRun: input.dryRun === true });
        sendJson(res, 200, { reports });
      } catch (err) {
        sendJson(res, err instanceof ActionError ? err.status : 500, { error: err instanceof Error ? err.message : String(err) });
      }
      return true;
    }
    const form = new URLSearchParams(body);
    if (url.pathname === '/login') {
      if (!auth.enabled) {
        sendHtml(res, 403, pages.layout('Read-only', v, pages.readOnlyNote(v)));
      } else if (!auth.checkToken(form.get('token') ?? '')) {
        log.warn({ remote: req.socket.remoteAddress }, 'console login refused: wrong token');
        sendHtml(res, 401, pages.layout('Log in', v, pages.loginPage('That is not this instance\'s admin.token.')));
      } else {
        const s = auth.login();
        log.info({ remote: req.socket.remoteAddress }, 'console login');
        res.writeHead(303, { location: '/', 'set-cookie': sessionCookie(s.cookie), 'cache-control': 'no-store', 'content-length': 0 });
        res.end();
      }
      return true;
    }
    const actor = auth.actor(req, form);
    if ('refused' in actor) {
      sendHtml(res, 403, pages.layout('Refused', v, html`<h1>Refused</h1><p class="error" id="refused">${actor.refused}</p>${pages.readOnlyNote(v)}`));
      return true;
    }
    if (url.pathname === '/logout') {
      auth.logout(req);
      res.writeHead(303, { location: '/', 'set-cookie': sessionCookie('', 0), 'cache-control': 'no-store', 'content-length': 0 });
      res.end();
      return true;
    }
    const get = (k: string) => form.get(k)?.trim() || undefined;
    try {
      const reports = await act(actor, { action: get('action') ?? '', ...opt('event', get('event')), ...opt('sink', get('sink')), ...opt('code', get('code')), ...opt('order', get('order')), dryRun: form.get('dryRun') === '1' });
      sendHtml(res, 200, pages.layout('Action', v, pages.actionResult(v, reports, form), 'parked'));
    } catch (err) {
      sendHtml(res, err instanceof ActionError ? err.status : 500, pages.layout('Action failed', v, html`<h1>Action failed</h1><p class="error">${err instanceof Error ? err.message : String(err)}</p>`));
    }
    return true;
  }

  return {
    actions: auth.enabled,
    posts: POSTS,
    async handle(req, res, url) {
      return req.method === 'POST' ? post(req, res, url) : page(req, res, url);
    },
    async close() {
      sampler.close();
      await pool?.end().catch(() => {});
    },
  };
}

const POSTS: ReadonlySet<string> = new Set(['/login', '/logout', '/actions', '/api/replay']);

class ActionError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const opt = <K extends string>(k: K, v: string | undefined) => (v === undefined ? {} : ({ [k]: v } as Record<K, string>));

/** A browser's cross-site post names its origin: refuse one that is not this listener. */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (!origin || origin === 'null') return origin !== 'null';
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error(`request body above ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Not no-referrer: under it Chromium sends `Origin: null` with the console's own form posts.
  'referrer-policy': 'same-origin',
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...SECURITY_HEADERS });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendHtml(res: ServerResponse, status: number, body: Html): void {
  send(res, status, 'text/html; charset=utf-8', body.text);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(body)}\n`);
}
