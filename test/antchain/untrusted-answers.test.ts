import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAntchainSink, hmacSha1Base64 } from '../../connectors/sinks/antchain/index.js';
import type { BusinessEvent } from '../../src/core/events.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { trustCounter, UNTRUSTED_ANSWERS, UNTRUSTED_ANSWERS_BEFORE_PAUSE as N, type AnswerTrust } from '../../src/core/trust.js';
import { createDispatcher } from '../../src/dispatch/dispatcher.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { startAntchainSimulator, type AntchainSimulator } from '../../src/sandbox/antchain-simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';
import { hexId, orderRow, sinkConfig, TEST_AK, TEST_ENV, TEST_SECRET, tradeEvent } from './fixtures.js';

/**
 * An AntChain gateway that lies (OK answers signed with the wrong secret, HTML pages with
 * HTTP 200) must not be retried event by event forever while the sink looks healthy: a run
 * of untrusted answers pauses the sink, its probes keep it paused while the lies go on, and
 * the first correct answer resumes it.
 */

type Mode = 'honest' | 'wrong-sign' | 'html' | 'drop' | 'error';

/**
 * A proxy in front of the simulator: every request reaches the gateway (so the effect may
 * exist, as behind a real mangling proxy), and the answer comes back as `mode` says.
 */
interface LyingProxy {
  url: string;
  mode: Mode;
  requests: number;
}

let sim: AntchainSimulator;
let proxyServer: Server;
let proxy: LyingProxy;
let db: TestDatabase;
let schemas = 0;

beforeAll(async () => {
  sim = await startAntchainSimulator({ accessKey: TEST_AK, accessSecret: TEST_SECRET });
  db = await createTestDatabase('untrusted');
  proxy = { url: '', mode: 'honest', requests: 0 };
  proxyServer = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      proxy.requests++;
      void (async () => {
        const upstream = await request(sim.url, { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: Buffer.concat(chunks) });
        const body = await upstream.body.text();
        switch (proxy.mode) {
          case 'honest':
            return res.writeHead(upstream.statusCode, { 'content-type': 'application/json' }).end(body);
          case 'wrong-sign':
            return res.writeHead(200, { 'content-type': 'application/json' }).end(body.replace(/"sign":"[^"]*"/, `"sign":"${hmacSha1Base64('rotated-secret', body)}"`));
          case 'html':
            return res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body><form action="/login">Please sign in</form></body></html>');
          case 'drop':
            return req.socket.destroy();
          case 'error':
            return res.writeHead(200, { 'content-type': 'application/json' }).end('{"response":{"result_code":"FAILED_NEED_RETRY","result_msg":"1009"}}');
        }
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => proxyServer.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(proxyServer.address() as AddressInfo).port}/gateway.do`;
});

afterEach(() => {
  proxy.mode = 'honest';
  proxy.requests = 0;
  sim.reset();
});

afterAll(async () => {
  proxyServer.closeAllConnections();
  await new Promise((resolve) => proxyServer.close(resolve));
  await sim.close();
  await db?.drop();
});

const live = () => new AbortController().signal;
let eventN = 0;
const nextEvent = (): BusinessEvent => {
  eventN++;
  return tradeEvent('TRADE_SUCCESS', hexId(1_000 + eventN), orderRow({ order_no: `untrusted-${eventN}` }));
};

function makeSink(config: Partial<Parameters<typeof sinkConfig>[0]> = {}): Sink {
  return createAntchainSink(sinkConfig({ endpoint: proxy.url, timeout: '2s', ...config }), { logger: silentLogger(), env: TEST_ENV });
}

async function deliverIn(sink: Sink, mode: Mode, event = nextEvent()): Promise<DeliveryOutcome> {
  proxy.mode = mode;
  return sink.deliver(event, live());
}

const statusOf = (outcomes: DeliveryOutcome[]) => outcomes.map((o) => o.status);

describe('the rule (src/core/trust.ts)', () => {
  const retry: DeliveryOutcome = { status: 'retry', info: { durationMs: 1 }, code: 'BAD', message: 'not a gateway answer' };
  const judged = (limit: number, trusts: AnswerTrust[]) => {
    const counter = trustCounter(limit);
    return trusts.map((trust) => counter.judge(retry, trust).status);
  };

  it('turns the limit-th untrusted answer in a row into a sink failure, and every one after it', () => {
    expect(judged(3, ['untrusted', 'untrusted', 'untrusted', 'untrusted'])).toEqual(['retry', 'retry', 'sink_failure', 'sink_failure']);
  });

  it('a trusted answer ends the run; an answer that says nothing (timeout, 503) neither counts nor ends it', () => {
    expect(judged(3, ['untrusted', 'untrusted', 'trusted', 'untrusted', 'untrusted'])).toEqual(['retry', 'retry', 'retry', 'retry', 'retry']);
    expect(judged(3, ['untrusted', 'neutral', 'untrusted', 'neutral', 'untrusted'])).toEqual(['retry', 'retry', 'retry', 'retry', 'sink_failure']);
  });

  it('names the run, the last answer and the hint, and keeps the attempt info', () => {
    const counter = trustCounter(1);
    expect(counter.judge(retry, 'untrusted', 'check the key')).toEqual({
      status: 'sink_failure',
      info: retry.info,
      code: UNTRUSTED_ANSWERS,
      message: '1 answers in a row failed verification or could not be read (last: BAD: not a gateway answer); check the key',
    });
  });
});

describe('the AntChain sink against a gateway that lies', () => {
  it.each<[Mode, string]>([
    ['wrong-sign', 'INVALID_RESPONSE_SIGNATURE'],
    ['html', 'RESPONSE_FORMAT_ERROR'],
  ])(`%s: ${N - 1} retries, then a sink failure, until a correct answer resets the run`, async (mode, code) => {
    const sink = makeSink();
    const lies = [];
    for (let i = 0; i < N + 1; i++) lies.push(await deliverIn(sink, mode));
    expect(statusOf(lies)).toEqual([...Array<string>(N - 1).fill('retry'), 'sink_failure', 'sink_failure']);
    expect(lies[0]).toMatchObject({ code });
    expect(lies[N - 1]).toMatchObject({ code: UNTRUSTED_ANSWERS, message: expect.stringContaining(`${N} answers in a row`) });
    expect(lies[N - 1]).toMatchObject({ message: expect.stringContaining(`last: ${code}`), info: { httpStatus: 200 } });
    expect(await deliverIn(sink, 'honest')).toMatchObject({ status: 'delivered' });
    expect(await deliverIn(sink, mode)).toMatchObject({ status: 'retry', code });
    await sink.close();
  });

  it('lost connections neither count nor end a run; a well-formed error answer ends it', async () => {
    const sink = makeSink();
    const outcomes = [];
    for (let i = 0; i < N - 1; i++) outcomes.push(await deliverIn(sink, 'wrong-sign'));
    outcomes.push(await deliverIn(sink, 'drop'), await deliverIn(sink, 'drop'));
    outcomes.push(await deliverIn(sink, 'wrong-sign'));
    expect(statusOf(outcomes)).toEqual([...Array<string>(N - 1).fill('retry'), 'retry', 'retry', 'sink_failure']);
    expect(await deliverIn(sink, 'error')).toMatchObject({ status: 'retry', code: 'FAILED_NEED_RETRY' });
    expect(await deliverIn(sink, 'wrong-sign')).toMatchObject({ status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE' });
    await sink.close();
  });

  it('pauseAfterUntrustedAnswers sets the run length', async () => {
    const sink = makeSink({ pauseAfterUntrustedAnswers: 2 });
    expect(statusOf([await deliverIn(sink, 'html'), await deliverIn(sink, 'html')])).toEqual(['retry', 'sink_failure']);
    await sink.close();
  });
});

describe('through the dispatcher and the ledger', () => {
  async function freshLedger(): Promise<Ledger> {
    const schema = `u${++schemas}`;
    const client = await db.pool.connect();
    await migrate(client, schema);
    client.release();
    return createLedger(db.pool, schema);
  }

  async function statuses(ledger: Ledger): Promise<Record<string, number>> {
    const { rows } = await db.pool.query(`SELECT status, count(*)::int AS n FROM ${ledger.schema}.delivery_states GROUP BY 1`);
    return Object.fromEntries(rows.map((r: { status: string; n: number }) => [r.status, r.n]));
  }

  it.each<Mode>(['wrong-sign', 'html'])('%s: paused after the run, kept paused by a lying probe, resumed by a correct answer, each event once', async (mode) => {
    const ledger = await freshLedger();
    const events = Array.from({ length: 12 }, nextEvent);
    const now = new Date().toISOString();
    await ledger.append({ source: 'test', events: events.map((event) => ({ event, sinks: ['antchain'], position: '0/1', committedAt: now })), orders: [], bad: [], checkpoints: [] });
    const real = makeSink();
    const outcomes: DeliveryOutcome[] = [];
    const sink: Sink = {
      ...real,
      async deliver(event, signal) {
        const outcome = await real.deliver(event, signal);
        outcomes.push(outcome);
        return outcome;
      },
    };
    const changes: Array<[boolean, string | undefined]> = [];
    const d = createDispatcher({
      ledger,
      sinks: [{ sink, policy: { concurrency: 1, timeout: 2_000, retry: { initialBackoff: 20, maxBackoff: 100 } } }],
      options: { claimBatch: 64, pollInterval: 20, leaseMargin: 500, drainTimeout: 2_000, window: 4096, flushInterval: 10, quickRetries: 2 },
      logger: silentLogger(),
      hooks: { onPauseChange: (_sink, paused, reason) => changes.push([paused, reason]) },
    });
    proxy.mode = mode;
    d.start();
    try {
      await waitFor(() => d.state()[0]!.paused, 'paused', 10_000);
      expect(statusOf(outcomes)).toEqual([...Array<string>(N - 1).fill('retry'), 'sink_failure']);
      expect(proxy.requests).toBe(N);
      expect(d.state()[0]!.pausedReason).toMatch(new RegExp(`^${UNTRUSTED_ANSWERS}: ${N} answers in a row`));
      // The first probe (after 1 s) still gets a lie: the sink stays paused, nothing is parked.
      await waitFor(() => outcomes.length > N, 'a probe', 5_000);
      expect(outcomes[N]).toMatchObject({ status: 'sink_failure', code: UNTRUSTED_ANSWERS });
      expect(d.state()[0]!.paused).toBe(true);
      expect(await statuses(ledger)).toEqual({ pending: events.length });
      proxy.mode = 'honest';
      await waitFor(async () => (await statuses(ledger)).delivered === events.length, 'every event delivered after the gateway answers correctly', 15_000);
    } finally {
      await d.stop();
      await real.close();
    }
    expect(changes).toEqual([[true, expect.stringContaining(UNTRUSTED_ANSWERS)], [false, undefined]]);
    // Lied-to attempts reached the gateway; their repeats were duplicates of the same request_id.
    const stats = sim.stats();
    expect(stats.effects).toBe(events.length);
    expect(new Set(stats.effectKeys)).toEqual(new Set(events.map((e) => e.id)));
    expect(stats.violations).toEqual([]);
  });
});
