import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createZhimaSink } from '../../connectors/sinks/zhima/index.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { UNTRUSTED_ANSWERS, UNTRUSTED_ANSWERS_BEFORE_PAUSE as N } from '../../src/core/trust.js';
import { silentLogger } from '../../src/log.js';
import { startZhimaSimulator, type ZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { APP_ID, APP_PUBLIC, capturingLogger, GATEWAY_PRIVATE, GATEWAY_PUBLIC, keyText, parseConfig, tradeEvent } from './helpers.js';

/** The sink against the simulator over real loopback HTTP, fault by fault. */

let sim: ZhimaSimulator;
let sink: Sink;
const signal = new AbortController().signal;

function makeSink(patch: Parameters<typeof parseConfig>[0] | object = {}, logger = silentLogger()): Sink {
  return createZhimaSink(parseConfig({ endpoint: sim.url, timeout: '300ms', ...patch }), { logger });
}

beforeAll(async () => {
  sim = await startZhimaSimulator({
    appId: APP_ID,
    appPublicKeyPem: APP_PUBLIC,
    gatewayPrivateKeyPem: GATEWAY_PRIVATE,
    bizStateCodes: ['CONTRACT_STATE_WATCH_MOVIE_BUY'],
    seed: 7,
  });
  sink = makeSink();
});

afterEach(() => {
  sim.setFaults({ latencyMs: 0, jitterMs: 0, http5xxRate: 0, code20000Rate: 0, hangRate: 0, dropAfterCommitRate: 0, corruptSignatureRate: 0 });
  sim.reset();
});

afterAll(async () => {
  await sink.close();
  await sim.close();
});

function expectRetry(outcome: DeliveryOutcome, code: string): void {
  expect(outcome.status).toBe('retry');
  expect(outcome.status === 'retry' && outcome.code).toBe(code);
}

describe('zhima sink ↔ simulator', () => {
  it('delivers, with a verified answer and the attempt recorded', async () => {
    const event = tradeEvent();
    const outcome = await sink.deliver(event, signal);
    expect(outcome).toMatchObject({ status: 'delivered', result: { biz_result: 'success' }, info: { httpStatus: 200, remoteCode: '10000' } });
    if (outcome.status !== 'delivered') return;
    expect(outcome.info.requestId).toMatch(/^[0-9a-f]{32};trace_id=[0-9a-f]+$/);
    expect(outcome.result).toHaveProperty('trace_id');
    expect(sim.stats()).toMatchObject({ requests: 1, effects: 1, effectKeys: [event.id], duplicates: 0, rejectedSignatures: 0, invalidRequests: 0 });
    expect(sim.stats().effectsList[0]).toMatchObject({ out_biz_no: event.id, biz_state_code: 'CONTRACT_STATE_WATCH_MOVIE_BUY', user_id: '2088102000000001' });
  });

  it('a second delivery of the same event is a duplicate, not a second effect', async () => {
    const event = tradeEvent();
    await sink.deliver(event, signal);
    expect((await sink.deliver(event, signal)).status).toBe('delivered');
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 1, conflictingDuplicates: 0 });
  });

  it.each([
    ['HTTP 502', { http5xxRate: 1 }, 'HTTP_502', 'http5xx'],
    ['20000 isp.unknow-error', { code20000Rate: 1 }, 'isp.unknow-error', 'code20000'],
    ['a hang (attempt timeout)', { hangRate: 1 }, 'TIMEOUT', 'hang'],
  ] as const)('%s → retry without effect; the retry makes the one effect', async (_name, faults, code, kind) => {
    const event = tradeEvent();
    sim.setFaults(faults);
    expectRetry(await sink.deliver(event, signal), code);
    expect(sim.stats()).toMatchObject({ effects: 0, faultsInjected: { [kind]: 1 } });
    sim.setFaults({ http5xxRate: 0, code20000Rate: 0, hangRate: 0 });
    expect((await sink.deliver(event, signal)).status).toBe('delivered');
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 0, effectKeys: [event.id] });
  });

  it.each([
    ['drop after commit', { dropAfterCommitRate: 1 }, 'CONNECTION_RESET', 'dropAfterCommit'],
    ['a corrupted response signature', { corruptSignatureRate: 1 }, 'RESPONSE_SIGNATURE_INVALID', 'corruptSignature'],
  ] as const)('%s → retry (never delivered); the retry is a duplicate', async (_name, faults, code, kind) => {
    const event = tradeEvent();
    sim.setFaults(faults);
    expectRetry(await sink.deliver(event, signal), code);
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 0, faultsInjected: { [kind]: 1 } });
    sim.setFaults({ dropAfterCommitRate: 0, corruptSignatureRate: 0 });
    expect((await sink.deliver(event, signal)).status).toBe('delivered');
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 1, conflictingDuplicates: 0 });
  });

  it('every attempt is re-signed with a fresh alipay-request-id', async () => {
    const event = tradeEvent();
    sim.setFaults({ http5xxRate: 1 });
    const a = await sink.deliver(event, signal);
    const b = await sink.deliver(event, signal);
    expect(a.status !== 'not_applicable' && a.info.requestId).not.toBe(b.status !== 'not_applicable' && b.info.requestId);
  });

  it('an aborted attempt is a retry', async () => {
    sim.setFaults({ hangRate: 1 });
    const controller = new AbortController();
    const pending = sink.deliver(tradeEvent(), controller.signal);
    controller.abort();
    expectRetry(await pending, 'ABORTED');
  });

  it('keeps answering after latency, within the timeout', async () => {
    sim.setFaults({ latencyMs: 20, jitterMs: 10 });
    expect((await sink.deliver(tradeEvent(), signal)).status).toBe('delivered');
  });

  it('a ZMDATA business error parks the event: rejected with code and sub_msg', async () => {
    const outcome = await sink.deliver(tradeEvent({ code: 'REFUND_SUCCESS' }), signal);
    expect(outcome).toMatchObject({
      status: 'rejected',
      code: 'ZMDATA.BIZ_STATE_CODE_ERROR',
      info: { remoteCode: '40004', remoteSubCode: 'ZMDATA.BIZ_STATE_CODE_ERROR', remoteMessage: '业务状态码错误' },
    });
    expect(sim.stats()).toMatchObject({ effects: 0, invalidRequests: 1 });
  });

  it('a wrong app private key is a sink failure (40002 isv.invalid-signature)', async () => {
    const wrong = makeSink({ privateKey: keyText('gateway_private_pkcs8.pem') });
    const outcome = await wrong.deliver(tradeEvent(), signal);
    await wrong.close();
    expect(outcome).toMatchObject({ status: 'sink_failure', code: 'isv.invalid-signature', info: { remoteCode: '40002' } });
    expect(sim.stats()).toMatchObject({ rejectedSignatures: 1, effects: 0 });
  });

  it('an unknown app id is a sink failure from the unsigned error_response', async () => {
    const wrong = makeSink({ appId: '2021999999999999' });
    const outcome = await wrong.deliver(tradeEvent(), signal);
    await wrong.close();
    expect(outcome).toMatchObject({ status: 'sink_failure', code: 'isv.invalid-app-id' });
  });

  it(`a wrong Alipay public key never delivers, and turns into a sink failure after ${N} answers in a row`, async () => {
    const wrong = makeSink({ alipayPublicKey: APP_PUBLIC });
    const event = tradeEvent();
    const outcomes = [];
    for (let i = 0; i < N; i++) outcomes.push(await wrong.deliver(event, signal));
    await wrong.close();
    expect(outcomes.map((o) => o.status)).toEqual([...Array<string>(N - 1).fill('retry'), 'sink_failure']);
    expect(outcomes[0]).toMatchObject({ code: 'RESPONSE_SIGNATURE_INVALID' });
    expect(outcomes[N - 1]).toMatchObject({ code: UNTRUSTED_ANSWERS, message: expect.stringContaining('RESPONSE_SIGNATURE_INVALID') });
    expect(outcomes[N - 1]).toMatchObject({ message: expect.stringContaining('alipayPublicKey') });
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: N - 1 });
  });

  it('under mixed faults and concurrency, every event ends with exactly one effect', async () => {
    sim.setFaults({ http5xxRate: 0.15, code20000Rate: 0.15, hangRate: 0.05, dropAfterCommitRate: 0.15, corruptSignatureRate: 0.05, jitterMs: 5 });
    const events = Array.from({ length: 40 }, () => tradeEvent());
    const attempts = await Promise.all(
      events.map(async (event) => {
        for (let n = 1; n <= 50; n++) {
          const outcome = await sink.deliver(event, signal);
          if (outcome.status === 'delivered') return n;
          expect(['retry', 'sink_failure']).toContain(outcome.status);
        }
        throw new Error(`event ${event.id} never delivered`);
      }),
    );
    const stats = sim.stats();
    expect(stats.effects).toBe(events.length);
    expect(new Set(stats.effectKeys)).toEqual(new Set(events.map((e) => e.id)));
    expect(stats.conflictingDuplicates).toBe(0);
    // Each answer lost after the commit forces at least one more call, which must be a duplicate.
    expect(stats.duplicates).toBeGreaterThanOrEqual(stats.faultsInjected.dropAfterCommit + stats.faultsInjected.corruptSignature);
    expect(attempts.some((n) => n > 1)).toBe(true);
  });

  it('no Alipay user id → not_applicable, nothing sent', async () => {
    expect((await sink.deliver(tradeEvent({}, { alipay_user_id: null }), signal)).status).toBe('not_applicable');
    expect(sim.stats().requests).toBe(0);
  });

  it('an invalid row is rejected before sending', async () => {
    expect(await sink.deliver(tradeEvent({}, { movie_id: null }), signal)).toMatchObject({ status: 'rejected', code: 'INVALID_EVENT' });
    expect(sim.stats().requests).toBe(0);
  });

  it('logs neither keys, signatures nor user ids', async () => {
    const { logger, lines } = capturingLogger();
    const logged = makeSink({}, logger);
    await logged.deliver(tradeEvent(), signal);
    await logged.deliver(tradeEvent({ code: 'REFUND_SUCCESS' }), signal);
    await logged.close();
    const text = lines.join('');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(text).not.toContain('2088102000000001');
    expect(text).not.toMatch(/MII[A-Za-z0-9+/]{20}/);
    expect(text).not.toMatch(/[A-Za-z0-9+/]{300,}={0,2}/);
    expect(text).toContain('ZMDATA.BIZ_STATE_CODE_ERROR');
  });
});

describe('zhima sink transport', () => {
  let server: Server;
  let url: string;
  let connections = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume().on('end', () => res.writeHead(200, { 'content-type': 'text/html' }).end('{"zhima_data_state_data_sync_response":{"code":"10000","msg":"Success","biz_result":"success"},"sign":"x"}'));
    });
    server.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/gateway.do`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('reuses one keep-alive connection across sequential attempts, and refuses an unverifiable success', async () => {
    const own = createZhimaSink(parseConfig({ endpoint: url, alipayPublicKey: GATEWAY_PUBLIC }), { logger: silentLogger() });
    const outcomes = [];
    for (let i = 0; i < N; i++) outcomes.push(await own.deliver(tradeEvent(), signal));
    await own.close();
    expect(outcomes.map((o) => o.status)).toEqual([...Array<string>(N - 1).fill('retry'), 'sink_failure']);
    expect(connections).toBe(1);
  });

  it('a refused connection is a retry', async () => {
    // Port 2 on loopback: nothing listens there, and no parallel test can take it.
    const deadUrl = 'http://127.0.0.1:2/gateway.do';
    const dead = createZhimaSink(parseConfig({ endpoint: deadUrl }), { logger: silentLogger() });
    expectRetry(await dead.deliver(tradeEvent(), signal), 'CONNECT_ERROR');
    await dead.close();
  });
});
