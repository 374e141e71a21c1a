import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { LiveProbe } from '../observe/probe.js';
import { createConsole, type Console } from './console/console.js';

/**
 * The operator's HTTP listener (config `admin.listen`, 127.0.0.1:9464 by default):
 *
 * - `GET /healthz`  200 while the process runs (liveness: restart me if this fails);
 * - `GET /readyz`   200 when the ledger answers, every source streams and no sink is paused;
 *                   503 with the failing checks otherwise (JSON, one line per check);
 * - `GET /metrics`  Prometheus text format;
 * - `GET /status`   the live state `order-relay status` merges with the ledger's figures;
 * - `GET /`          the operator console (src/admin/console), when the listener is given the config.
 *
 * Only the console's actions change state (POST, and only with `admin.token` set: see
 * console.ts); everything else is read-only and answers GET and HEAD alone. Bind it to
 * loopback or a private interface, never to the internet; bound elsewhere without a token it
 * says so in the log.
 */
export interface AdminServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  if (!m) throw new Error(`admin.listen: expected host:port, got "${listen}"`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

export interface AdminOptions {
  listen: string;
  registry: Registry;
  probe: LiveProbe;
  logger: Logger;
  /** The running config: serves the console on `/` (actions with `admin.token`). Without it, no console. */
  config?: Config;
  env?: NodeJS.ProcessEnv;
  /** Console timings (tests make them short). */
  console?: { sampleIntervalMs?: number; refreshMs?: number };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function startAdminServer(options: AdminOptions): Promise<AdminServer> {
  const { host, port } = parseListen(options.listen);
  const log = options.logger.child({ component: 'admin' });
  const ui: Console | undefined = options.config
    ? createConsole({ config: options.config, ...(options.env ? { env: options.env } : {}), registry: options.registry, probe: options.probe, logger: options.logger, ...options.console })
    : undefined;
  if (!LOOPBACK.test(host) && !ui?.actions) {
    log.warn(
      { listen: options.listen },
      'admin listener bound beyond loopback without admin.token: anyone who reaches it reads the console, /status and /metrics (actions stay off); bind it to 127.0.0.1 or a private interface, or set admin.token',
    );
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const posts = req.method === 'POST' && ui?.posts.has(path);
    if (req.method !== 'GET' && req.method !== 'HEAD' && !posts) {
      return send(res, 405, 'text/plain', 'method not allowed\n', { allow: ui?.posts.has(path) ? 'GET, HEAD, POST' : 'GET, HEAD' });
    }
    switch (path) {
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case '/readyz': {
        const r = await options.probe.ready();
        return send(res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`);
      }
      case '/metrics':
        return send(res, 200, options.registry.contentType, await options.registry.metrics());
      case '/status':
        return send(res, 200, 'application/json', `${JSON.stringify(options.probe.live())}\n`);
      default:
        if (ui && (await ui.handle(req, res, url))) return;
        return send(res, 404, 'text/plain', `not found: try ${ui ? '/ (the console), ' : ''}/healthz, /readyz, /metrics, /status\n`);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'admin request failed');
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => {
      void ui?.close();
      reject(err);
    };
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  log.info({ url, console: ui ? (ui.actions ? 'actions on' : 'read-only') : 'off' }, `admin listener up: ${ui ? '/ (console) ' : ''}/healthz /readyz /metrics /status`);
  return {
    url,
    port: addr.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ui?.close();
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
