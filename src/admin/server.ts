import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import type { LiveProbe } from '../observe/probe.js';

/**
 * The operator's HTTP listener (config `admin.listen`, 127.0.0.1:9464 by default):
 *
 * - `GET /healthz`  200 while the process runs (liveness: restart me if this fails);
 * - `GET /readyz`   200 when the ledger answers, every source streams and no sink is paused;
 *                   503 with the failing checks otherwise (JSON, one line per check);
 * - `GET /metrics`  Prometheus text format;
 * - `GET /status`   the live state `order-relay status` merges with the ledger's figures.
 *
 * Nothing here changes state, and nothing here needs a secret: bind it to loopback or a
 * private interface, never to the internet.
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

export async function startAdminServer(options: { listen: string; registry: Registry; probe: LiveProbe; logger: Logger }): Promise<AdminServer> {
  const { host, port } = parseListen(options.listen);
  const log = options.logger.child({ component: 'admin' });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
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
        return send(res, 404, 'text/plain', 'not found: try /healthz, /readyz, /metrics, /status\n');
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
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  log.info({ url }, 'admin listener up: /healthz /readyz /metrics /status');
  return {
    url,
    port: addr.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
