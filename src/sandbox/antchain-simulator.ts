import { setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { errorAnswer } from './antchain-sim/answers.js';
import { handleAdmin } from './antchain-sim/admin.js';
import { faultsPatchSchema, NO_FAULTS, rollFaults, seededRandom, type AntchainFaults } from './antchain-sim/faults.js';
import { processReport, type ProductRules } from './antchain-sim/product.js';
import { SimState, type SimStats } from './antchain-sim/state.js';

export type { AntchainFaults, FaultKind } from './antchain-sim/faults.js';
export type { SimEffect, SimStats, SimViolation } from './antchain-sim/state.js';

/**
 * A loopback AntChain gateway for tests, the demo and chaos runs: it verifies every request
 * the way the spec says the gateway does, signs its answers, honours request_id idempotency
 * and injects seeded faults. Out-of-process tools drive it through `/__sim/*` on the same port.
 */
export interface AntchainSimulatorOptions extends ProductRules {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  accessKey: string;
  accessSecret: string;
  faults?: Partial<AntchainFaults>;
  /** PRNG seed for fault decisions (default 1). */
  seed?: number;
  logger?: Logger;
  /** Gateway clock, for req_time skew checks and event ids. */
  now?: () => Date;
  /** Allowed |req_time − now| (default 15 minutes). */
  maxSkewMs?: number;
}

export interface AntchainSimulator {
  /** Full gateway URL, `http://host:port/gateway.do`. */
  url: string;
  port: number;
  stats(): SimStats;
  faults(): AntchainFaults;
  setFaults(faults: Partial<AntchainFaults>): AntchainFaults;
  /** Forgets every effect and counter and re-seeds the PRNG; faults stay as set. */
  reset(): void;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1_048_576;

export async function startAntchainSimulator(options: AntchainSimulatorOptions): Promise<AntchainSimulator> {
  const host = options.host ?? '127.0.0.1';
  const seed = options.seed ?? 1;
  const now = options.now ?? (() => new Date());
  const keys = { secrets: new Map([[options.accessKey, options.accessSecret]]), now, maxSkewMs: options.maxSkewMs ?? 15 * 60_000 };
  let faults: AntchainFaults = { ...NO_FAULTS, ...faultsPatchSchema.parse(options.faults ?? {}) };
  let state = new SimState();
  let random = seededRandom(seed);
  const closing = new AbortController();
  // Every delayed answer listens for close: as many listeners as requests in flight.
  setMaxListeners(0, closing.signal);
  let connections = 0;

  const sim = {
    stats: (): SimStats => ({ ...state.stats(), connections }),
    faults: () => ({ ...faults }),
    /** Merges a partial setting; throws on values out of range (rates 0–1, delays in ms). */
    setFaults(patch: Partial<AntchainFaults>): AntchainFaults {
      faults = { ...faults, ...faultsPatchSchema.parse(patch) };
      return { ...faults };
    },
    reset(): void {
      state = new SimState();
      connections = 0;
      random = seededRandom(seed);
    },
  };

  async function gateway(req: IncomingMessage, res: ServerResponse, query: string): Promise<void> {
    const body = await readBody(req);
    if (body === undefined) return plain(res, 413, 'Request Entity Too Large');
    const receivedAt = now();
    state.requests += 1;
    const roll = rollFaults(faults, random);
    if (roll.delayMs > 0) {
      state.faultsInjected.latency += 1;
      await delay(roll.delayMs, undefined, { signal: closing.signal });
    }
    if (roll.hang) {
      state.faultsInjected.hang += 1;
      return; // never answered; the socket is destroyed by the client's timeout or by close()
    }
    if (roll.http5xx) {
      state.faultsInjected.http5xx += 1;
      return plain(res, 503, 'Service Unavailable');
    }
    if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
      state.invalidRequests += 1;
      return json(res, errorAnswer(undefined, 'INVALID_PARAMETER', 'content-type must be application/x-www-form-urlencoded'));
    }
    const result = processReport({ query, body, keys, rules: options, roll, state, secret: options.accessSecret });
    if (result.outcome === 'DUPLICATE' && result.requestId !== undefined) state.noteDuplicate(result.requestId, receivedAt);
    options.logger?.debug({ reqMsgId: result.reqMsgId, requestId: result.requestId, outcome: result.outcome }, 'antchain simulator answered');
    if (result.drop) {
      state.faultsInjected.dropAfterCommit += 1;
      req.socket.destroy();
      return;
    }
    json(res, result.body);
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://simulator');
    const work = url.pathname.startsWith('/__sim/')
      ? handleAdmin(req, res, url.pathname, sim)
      : url.pathname !== '/gateway.do'
        ? Promise.resolve(plain(res, 404, 'Not Found'))
        : req.method !== 'POST'
          ? Promise.resolve(plain(res, 405, 'Method Not Allowed'))
          : gateway(req, res, url.search.slice(1));
    work.catch((err: unknown) => {
      if (closing.signal.aborted) return;
      options.logger?.error({ err }, 'antchain simulator failed to answer');
      if (!res.headersSent) plain(res, 500, 'Internal Server Error');
    });
  });

  server.on('connection', () => {
    connections += 1;
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${host}:${port}/gateway.do`,
    port,
    ...sim,
    async close(): Promise<void> {
      closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function plain(res: ServerResponse, status: number, text: string): void {
  send(res, status, 'text/plain; charset=utf-8', text);
}

function json(res: ServerResponse, body: string, status = 200): void {
  send(res, status, 'application/json; charset=utf-8', body);
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) }).end(body);
}
