import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { BusinessEvent } from '../../src/core/events.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { startAntchainSimulator, type AntchainSimulator, type AntchainSimulatorOptions } from '../../src/sandbox/antchain-simulator.js';
import { createAntchainSink, hmacSha1Base64 } from '../../connectors/sinks/antchain/index.js';
import { hexId, orderRow, sinkConfig, TEST_AK, TEST_ENV, TEST_SECRET, tradeEvent, visitEvent } from './fixtures.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function setup(
  options: { sim?: Partial<AntchainSimulatorOptions>; config?: Partial<Parameters<typeof sinkConfig>[0]>; env?: NodeJS.ProcessEnv; logger?: Logger; now?: () => Date } = {},
): Promise<{ sim: AntchainSimulator; sink: Sink }> {
  const sim = await startAntchainSimulator({ accessKey: TEST_AK, accessSecret: TEST_SECRET, ...options.sim });
  closers.push(() => sim.close());
  const sink = createAntchainSink(sinkConfig({ endpoint: sim.url, timeout: '5s', ...options.config }), {
    logger: options.logger ?? silentLogger(),
    env: options.env ?? TEST_ENV,
    now: options.now,
  });
  closers.push(() => sink.close());
  return { sim, sink };
}

const live = () => new AbortController().signal;
const trade = (n: number) => tradeEvent('TRADE_SUCCESS', hexId(n), orderRow({ order_no: `order-${n}` }));

function expectRetry(outcome: DeliveryOutcome, code: string | RegExp): void {
  expect(outcome.status).toBe('retry');
  if (outcome.status === 'retry') expect(outcome.code).toMatch(code);
}

describe('sink ⇄ simulator over HTTP', () => {
  it('delivers and keeps the result fields and the attempt info', async () => {
    const { sim, sink } = await setup();
    const outcome = await sink.deliver(trade(1), live());
    const effect = sim.stats().effectList[0]!;
    expect(outcome).toMatchObject({
      status: 'delivered',
      result: { event_id: effect.eventId, event_status: 'PROCESSED', token_status: 'TOKEN_SUCCESS', token_amount: 100, parent_token_amount: 10 },
      info: { httpStatus: 200, remoteCode: 'OK', remoteSubCode: 'PROCESSED', remoteMessage: 'OK' },
    });
    expect(outcome.status === 'delivered' && outcome.info.requestId).toMatch(/^[0-9a-f]{32}$/);
    expect(effect).toMatchObject({ requestId: hexId(1), code: 'TRADE_SUCCESS', orderNo: 'order-1' });
  });

  it('delivers visits and every trade code of a manual-confirm order, in order, without violations', async () => {
    const { sim, sink } = await setup({ config: { confirmType: 'TWO_STEP_MANUAL', confirmTime: undefined } });
    const events: BusinessEvent[] = [
      visitEvent(hexId(2)),
      tradeEvent('TRADE_SUCCESS', hexId(3)),
      tradeEvent('TRADE_CONFIRM', hexId(4)),
      tradeEvent('REFUND_SUCCESS', hexId(5)),
    ];
    for (const event of events) expect((await sink.deliver(event, live())).status).toBe('delivered');
    expect(sim.stats()).toMatchObject({ effects: 4, duplicates: 0, violations: [] });
  });

  it('reuses one keep-alive connection and sends a fresh req_msg_id per attempt', async () => {
    const { sim, sink } = await setup({ sim: { faults: { needRetryRate: 1 } } });
    const ids = new Set<string | undefined>();
    for (let i = 0; i < 8; i += 1) {
      const outcome = await sink.deliver(trade(6), live());
      expectRetry(outcome, 'NEED_RETRY');
      if (outcome.status === 'retry') ids.add(outcome.info.requestId);
    }
    expect(ids.size).toBe(8);
    // undici may open a second socket while the first is being released; never one per request.
    expect(sim.stats()).toMatchObject({ requests: 8, effects: 0 });
    expect(sim.stats().connections).toBeLessThanOrEqual(2);
  });
});

describe('the retry table, driven through fault injection', () => {
  it('HTTP 5xx → retry, then delivered once the gateway recovers', async () => {
    const { sim, sink } = await setup({ sim: { faults: { http5xxRate: 1 } } });
    const outcome = await sink.deliver(trade(10), live());
    expectRetry(outcome, 'HTTP_503');
    expect(outcome.status === 'retry' && outcome.info.httpStatus).toBe(503);
    sim.setFaults({ http5xxRate: 0 });
    expect((await sink.deliver(trade(10), live())).status).toBe('delivered');
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 0 });
  });

  it('OK + NEED_RETRY → retry with the remote codes recorded, no effect', async () => {
    const { sim, sink } = await setup({ sim: { faults: { needRetryRate: 1 } } });
    const outcome = await sink.deliver(trade(11), live());
    expectRetry(outcome, 'NEED_RETRY');
    expect(outcome).toMatchObject({ info: { remoteCode: 'OK', remoteSubCode: 'NEED_RETRY' } });
    expect(sim.stats().effects).toBe(0);
  });

  it('FAILED_NEED_RETRY → retry, no effect', async () => {
    const { sim, sink } = await setup({ sim: { faults: { failedNeedRetryRate: 1 } } });
    const outcome = await sink.deliver(trade(12), live());
    expectRetry(outcome, 'FAILED_NEED_RETRY');
    expect(outcome).toMatchObject({ info: { remoteCode: 'FAILED_NEED_RETRY', remoteMessage: '1009' } });
    expect(sim.stats()).toMatchObject({ effects: 0, faultsInjected: { failedNeedRetry: 1 } });
  });

  it('a hanging gateway → the attempt timeout fires → retry', async () => {
    const { sim, sink } = await setup({ sim: { faults: { hangRate: 1 } }, config: { timeout: '250ms' } });
    const outcome = await sink.deliver(trade(13), live());
    expectRetry(outcome, 'TIMEOUT');
    expect(outcome.status === 'retry' && outcome.info.durationMs).toBeGreaterThanOrEqual(200);
    expect(sim.stats()).toMatchObject({ effects: 0, faultsInjected: { hang: 1 } });
  });

  it('drop after commit → retry; the repeat is a duplicate with the same event_id, not a second effect', async () => {
    const { sim, sink } = await setup({ sim: { faults: { dropAfterCommitRate: 1 } } });
    const lost = await sink.deliver(trade(14), live());
    expect(lost.status).toBe('retry');
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 0, faultsInjected: { dropAfterCommit: 1 } });
    sim.setFaults({ dropAfterCommitRate: 0 });
    const repeat = await sink.deliver(trade(14), live());
    expect(repeat).toMatchObject({ status: 'delivered', result: { event_id: sim.stats().effectList[0]!.eventId } });
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 1, effectKeys: [hexId(14)] });
  });

  it('latency is visible in durationMs but still delivers', async () => {
    const { sink } = await setup({ sim: { faults: { latencyMs: 60, jitterMs: 10 } } });
    const outcome = await sink.deliver(trade(15), live());
    expect(outcome.status).toBe('delivered');
    expect(outcome.status === 'delivered' && outcome.info.durationMs).toBeGreaterThanOrEqual(55);
  });

  it('an abort from the dispatcher abandons the attempt as retry', async () => {
    const { sink } = await setup({ sim: { faults: { hangRate: 1 } } });
    const controller = new AbortController();
    const pending = sink.deliver(trade(16), controller.signal);
    controller.abort();
    expectRetry(await pending, 'ABORTED');
    const aborted = AbortSignal.abort();
    expectRetry(await sink.deliver(trade(17), aborted), 'ABORTED');
  });
});

describe('whole-sink and per-event failures', () => {
  it('a wrong secret → sink_failure (ACCESS_DENIED), counted by the simulator as a rejected signature', async () => {
    const { sim, sink } = await setup({ env: { ANTCHAIN_TEST_SECRET: 'not-the-secret' } });
    const outcome = await sink.deliver(trade(20), live());
    expect(outcome).toMatchObject({ status: 'sink_failure', code: 'ACCESS_DENIED', info: { remoteCode: 'ACCESS_DENIED', httpStatus: 200 } });
    expect(sim.stats()).toMatchObject({ rejectedSignatures: 1, effects: 0 });
  });

  it('an unknown access key → sink_failure', async () => {
    const { sink } = await setup({ config: { accessKey: 'UNKNOWN-AK' } });
    expect(await sink.deliver(trade(21), live())).toMatchObject({ status: 'sink_failure', code: 'ACCESS_DENIED' });
  });

  it('a skewed clock → sink_failure', async () => {
    const { sink } = await setup({ now: () => new Date(Date.now() - 30 * 60_000) });
    expect(await sink.deliver(trade(22), live())).toMatchObject({ status: 'sink_failure', code: 'ACCESS_DENIED', message: expect.stringContaining('req_time') });
  });

  it('INVALID_PARAMETER from the gateway → rejected with its code and message', async () => {
    const { sink } = await setup({ sim: { projects: ['123'] }, config: { projectId: '999' } });
    expect(await sink.deliver(trade(23), live())).toMatchObject({ status: 'rejected', code: 'INVALID_PARAMETER', message: 'project_id 999 does not exist' });
  });

  it('LOGON_ID_NOT_FOUND and EVENT_NOT_SUPPORTED → rejected', async () => {
    const { sink } = await setup({
      sim: { unknownLogonIds: ['ghost@example.com'], unsupportedEvents: ['SHARE_LANDING_PAGE'] },
      config: { buyer: { column: 'account', type: 'ALIPAY_LOGON_ID' } },
    });
    const ghost = tradeEvent('TRADE_SUCCESS', hexId(24), orderRow({ account: 'ghost@example.com' }));
    expect(await sink.deliver(ghost, live())).toMatchObject({ status: 'rejected', code: 'LOGON_ID_NOT_FOUND' });
    const landing = visitEvent(hexId(25), { page: 'SHARE_LANDING_PAGE' });
    expect(await sink.deliver(landing, live())).toMatchObject({ status: 'rejected', code: 'EVENT_NOT_SUPPORTED' });
  });

  it('a row that cannot make a request is rejected before anything is sent; unhandled codes are not_applicable', async () => {
    const { sim, sink } = await setup();
    expect(await sink.deliver(tradeEvent('TRADE_SUCCESS', hexId(26), orderRow({ buyer_phone: '123' })), live())).toMatchObject({
      status: 'rejected',
      code: 'INVALID_EVENT',
      message: expect.stringContaining('column "buyer_phone"'),
      info: { durationMs: 0 },
    });
    expect(await sink.deliver(tradeEvent('TRADE_CONFIRM', hexId(27)), live())).toMatchObject({ status: 'not_applicable' });
    expect(sim.stats().requests).toBe(0);
  });
});

/** A hostile or broken gateway the simulator would never be: answers chosen by the test. */
async function fakeGateway(answer: { status: number; body: string; headers?: Record<string, string> }): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers }).end(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/gateway.do`;
}

describe('answers the simulator never gives', () => {
  async function deliverAgainst(answer: { status: number; body: string; headers?: Record<string, string> }) {
    const endpoint = await fakeGateway(answer);
    const sink = createAntchainSink(sinkConfig({ endpoint }), { logger: silentLogger(), env: TEST_ENV });
    closers.push(() => sink.close());
    return sink.deliver(trade(30), live());
  }

  it('an OK/PROCESSED answer signed with another key is never delivered', async () => {
    const response = JSON.stringify({ result_code: 'OK', event_status: 'PROCESSED', event_id: 'FORGED' });
    const body = `{"response":${response},"sign":"${hmacSha1Base64('attacker', response)}"}`;
    expect(await deliverAgainst({ status: 200, body })).toMatchObject({ status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE' });
  });

  it('429 with Retry-After → retry after that long; a 404 page → sink_failure; non-JSON 200 → retry', async () => {
    expect(await deliverAgainst({ status: 429, body: 'slow down', headers: { 'retry-after': '7' } })).toMatchObject({ status: 'retry', code: 'HTTP_429', afterMs: 7_000 });
    expect(await deliverAgainst({ status: 404, body: '<html>not found</html>' })).toMatchObject({ status: 'sink_failure', code: 'HTTP_404' });
    expect(await deliverAgainst({ status: 200, body: '<html>' })).toMatchObject({ status: 'retry', code: 'RESPONSE_FORMAT_ERROR' });
  });

  it('a refused connection → retry', async () => {
    // Port 2 on loopback: nothing listens there, and no parallel test can take it.
    const endpoint = 'http://127.0.0.1:2/gateway.do';
    const sink = createAntchainSink(sinkConfig({ endpoint }), { logger: silentLogger(), env: TEST_ENV });
    closers.push(() => sink.close());
    expectRetry(await sink.deliver(trade(31), live()), /ECONNREFUSED/);
  });
});

describe('logging', () => {
  it('logs each attempt with req_msg_id, never the secret, the sign or phone numbers', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger({ level: 'debug', destination });
    const { sink } = await setup({ logger, sim: { projects: ['123'] } });
    const delivered = await sink.deliver(trade(40), live());
    const rejected = await sink.deliver(tradeEvent('TRADE_SUCCESS', hexId(41), orderRow({ buyer_phone: '138 0013 800' })), live());
    expect(delivered.status).toBe('delivered');
    expect(rejected.status).toBe('rejected');
    const text = lines.join('');
    expect(lines).toHaveLength(2);
    expect(text).toContain(delivered.status === 'delivered' ? delivered.info.requestId! : 'missing');
    for (const forbidden of [TEST_SECRET, '13000000000', '13000000001', '138 0013 800', 'sign=']) expect(text).not.toContain(forbidden);
  });
});
