import { createPublicKey, sign as rsaSign } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { createZhimaSink, ZHIMA_RESPONSE_KEY as KEY_NAME } from '../../connectors/sinks/zhima/index.js';
import { RESPONSE_TOO_LARGE } from '../../connectors/sinks/zhima/http.js';
import { attemptResult, type AttemptResult } from '../../connectors/sinks/zhima/outcome.js';
import type { VerifyKey } from '../../connectors/sinks/zhima/response.js';
import { extractSignedContent } from '../../connectors/sinks/zhima/response-sign.js';
import type { DeliveryOutcome } from '../../src/core/sink.js';
import { UNTRUSTED_ANSWERS, UNTRUSTED_ANSWERS_BEFORE_PAUSE as N, type AnswerTrust } from '../../src/core/trust.js';
import { silentLogger } from '../../src/log.js';
import { GATEWAY_PRIVATE, GATEWAY_PUBLIC, parseConfig, tradeEvent } from './helpers.js';

/**
 * Answers Alipay would never give, fed to the interpreter as the transport hands them over
 * (bytes, any status), and over loopback HTTP. Every input gets a time bound measured around
 * the call; none of them may throw, keep more than a clipped text, or be delivered unless
 * the signed text verifies.
 */

const MB = 1_000_000;
const KEY: VerifyKey = { publicKey: createPublicKey(GATEWAY_PUBLIC), responseKey: KEY_NAME };
/** What an attempt record may hold at most: clipped codes and messages plus their notes. */
const MAX_RECORD_CHARS = 8_000;

function timed<T>(run: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = run();
  return { value, ms: performance.now() - started };
}

const signOf = (content: string) => rsaSign('sha256', Buffer.from(content, 'utf8'), GATEWAY_PRIVATE).toString('base64');
const signedBody = (content: string) => `{"${KEY_NAME}":${content},"sign":"${signOf(content)}"}`;
const SUCCESS = '{"code":"10000","msg":"Success","biz_result":"success"}';
const errorBody = (fields: string) => `{"${KEY_NAME}":{"code":"40004","msg":"Business Failed",${fields}}}`;

function judge(body: Uint8Array, status = 200): AttemptResult {
  return attemptResult({ requestId: 'r'.repeat(32), durationMs: 1 }, { ok: true, response: { status, body } }, KEY);
}

interface Case {
  name: string;
  body: () => string | Uint8Array;
  status?: number;
  expect: { status: DeliveryOutcome['status']; code?: string | RegExp; trust: AnswerTrust };
  /** Measured bound for this input, ms. */
  boundMs: number;
}

const deepArrays = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

const cases: Case[] = [
  {
    name: '50 MB sub_msg without "@"',
    body: () => errorBody(`"sub_code":"ZMDATA.BIZ_DATA_ERROR","sub_msg":"${'A'.repeat(50 * MB)}"`),
    expect: { status: 'rejected', code: 'ZMDATA.BIZ_DATA_ERROR', trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB sub_msg of Alipay user ids',
    body: () => errorBody(`"sub_code":"ZMDATA.USER_ID_ERROR","sub_msg":"${'2088102000000001 '.repeat(50 * MB / 17)}"`),
    expect: { status: 'rejected', code: 'ZMDATA.USER_ID_ERROR', trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB code',
    body: () => `{"${KEY_NAME}":{"code":"${'9'.repeat(50 * MB)}","msg":"?"}}`,
    expect: { status: 'rejected', code: /^9{128}… \[49,999,872 more characters cut\]$/, trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: 'a success with a 50 MB sign',
    body: () => `{"${KEY_NAME}":${SUCCESS},"sign":"${'A'.repeat(50 * MB)}"}`,
    expect: { status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'a signed success carrying a 50 MB member',
    body: () => signedBody(`{"code":"10000","msg":"Success","biz_result":"success","padding":"${'x'.repeat(50 * MB)}"}`),
    expect: { status: 'delivered', trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB HTML page with HTTP 200',
    body: () => `<!doctype html><html><body>${'<p>login required</p>'.repeat(50 * MB / 21)}</body></html>`,
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'HTML error page with HTTP 502',
    status: 502,
    body: () => '<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>',
    expect: { status: 'retry', code: 'HTTP_502', trust: 'neutral' },
    boundMs: 100,
  },
  {
    name: '50 MB of text ending in an invalid UTF-8 byte',
    body: () => Buffer.concat([Buffer.from(errorBody(`"sub_code":"ZMDATA.X","sub_msg":"${'A'.repeat(50 * MB)}`)), Buffer.from([0xff, 0x22, 0x7d, 0x7d])]),
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'a signed success cut inside a multi-byte character',
    body: () => Buffer.from(signedBody('{"code":"10000","msg":"成功","biz_result":"success"}')).subarray(0, 60),
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'an unsigned success nesting 2 million arrays deep',
    body: () => `{"${KEY_NAME}":{"code":"10000","biz_result":"success","extra":${deepArrays(2 * MB)}}}`,
    expect: { status: 'retry', code: 'RESPONSE_UNSIGNED', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'a signed success nesting 1 million arrays deep',
    body: () => signedBody(`{"code":"10000","msg":"Success","biz_result":"success","extra":${deepArrays(MB)}}`),
    expect: { status: 'delivered', trust: 'trusted' },
    boundMs: 3_000,
  },
  {
    name: 'an envelope of objects nested 1 million deep',
    body: () => '{"a":'.repeat(MB) + '1' + '}'.repeat(MB),
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 3_000,
  },
  {
    name: '1 million unclosed brackets (truncated nesting)',
    body: () => `{"${KEY_NAME}":${'['.repeat(MB)}`,
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 1_000,
  },
  {
    name: 'a code that is a number of 1 million digits',
    body: () => `{"${KEY_NAME}":{"code":${'4'.repeat(MB)},"sub_code":${'5'.repeat(MB)}}}`,
    expect: { status: 'rejected', code: 'Infinity', trust: 'trusted' },
    boundMs: 1_000,
  },
  {
    name: 'a million members in the response object',
    body: () => `{"${KEY_NAME}":{"code":"10000",${Array.from({ length: MB }, (_, i) => `"k${i}":${i}`).join(',')}}}`,
    expect: { status: 'retry', code: 'RESPONSE_UNSIGNED', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'NUL and lone surrogates in sub_msg',
    body: () => errorBody('"sub_code":"ZMDATA.X","sub_msg":"bad\\u0000byte \\ud800 and \\udfff"'),
    expect: { status: 'rejected', code: 'ZMDATA.X', trust: 'trusted' },
    boundMs: 100,
  },
  {
    name: 'the response key twice, the second one unsigned',
    body: () => `${signedBody(SUCCESS).slice(0, -1)},"${KEY_NAME}":${SUCCESS}}`,
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'two sign members, the last one wrong',
    body: () => `${signedBody(SUCCESS).slice(0, -1)},"sign":"AAAA"}`,
    expect: { status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'a 10 MB JSON string of escapes',
    body: () => errorBody(`"sub_code":"ZMDATA.X","sub_msg":"${'\\u0041\\n\\"'.repeat(MB)}"`),
    expect: { status: 'rejected', code: 'ZMDATA.X', trust: 'trusted' },
    boundMs: 2_000,
  },
  {
    name: 'an empty body with HTTP 200',
    body: () => '',
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'JSON that is no object',
    body: () => `[${'1,'.repeat(MB)}1]`,
    expect: { status: 'retry', code: 'BAD_RESPONSE', trust: 'untrusted' },
    boundMs: 1_000,
  },
];

describe('hostile answers, one at a time, each within a measured bound', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const made = c.body();
    const body = typeof made === 'string' ? Buffer.from(made, 'utf8') : made;
    const { value, ms } = timed(() => judge(body, c.status));
    expect(ms).toBeLessThan(c.boundMs);
    expect(value.trust).toBe(c.expect.trust);
    expect(value.outcome.status).toBe(c.expect.status);
    if (c.expect.code !== undefined) expect('code' in value.outcome && value.outcome.code).toMatch(c.expect.code);
    const record = JSON.stringify(value.outcome);
    expect(record.length).toBeLessThan(MAX_RECORD_CHARS);
    expect(record).not.toMatch(/2088\d{8}/);
    // NUL and lone surrogates cannot be stored in PostgreSQL text or jsonb.
    expect(record).not.toMatch(/\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}/);
  });

  it('keeps only the scalar members of a signed success, clipped', () => {
    const { outcome } = judge(Buffer.from(signedBody(`{"code":"10000","msg":"Success","biz_result":"success","extra":[[1]],"note":"${'n'.repeat(5_000)}"}`)));
    expect(outcome).toMatchObject({ status: 'delivered', result: { biz_result: 'success', note: `${'n'.repeat(2_000)}… [3,000 more characters cut]` } });
    expect(outcome.status === 'delivered' && outcome.result).not.toHaveProperty('extra');
  });

  it('never delivers a prefix of a signed success (every truncation point)', () => {
    const body = Buffer.from(signedBody(SUCCESS));
    const { value: results, ms } = timed(() => Array.from({ length: body.length }, (_, n) => judge(body.subarray(0, n))));
    expect(ms).toBeLessThan(1_000);
    expect(results.filter((r) => r.outcome.status === 'delivered')).toEqual([]);
    expect(new Set(results.map((r) => r.trust))).toEqual(new Set(['untrusted']));
    expect(judge(body).outcome.status).toBe('delivered');
  });

  it('delivers a mutated answer only when the signed text survived the mutation (5,000 seeded mutations)', () => {
    const body = signedBody(SUCCESS);
    const content = SUCCESS;
    const random = seeded(5);
    const noise = ['{', '}', '[', ']', '"', '\\', ',', ':', ' ', '0', '9', '@', '成', '\ud800', '"sign"', `"${KEY_NAME}"`, '"error_response"'];
    let delivered = 0;
    const { ms } = timed(() => {
      for (let n = 0; n < 5_000; n++) {
        let mutated = body;
        for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) {
          const at = Math.floor(random() * mutated.length);
          mutated = mutated.slice(0, at) + noise[Math.floor(random() * noise.length)] + mutated.slice(at + Math.floor(random() * 3));
        }
        const { outcome } = judge(Buffer.from(mutated, 'utf8'));
        if (outcome.status !== 'delivered') continue;
        delivered++;
        expect(extractSignedContent(mutated, KEY_NAME)).toEqual({ ok: true, key: KEY_NAME, content });
      }
    });
    expect(ms).toBeLessThan(10_000);
    expect(delivered).toBeGreaterThan(0); // mutations of the envelope alone keep it valid
  });
});

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A loopback gateway whose n-th answer the test writes; `written` counts body bytes it got out. */
async function gateway(answer: (res: ServerResponse, n: number) => void): Promise<{ url: string; written: () => number }> {
  let written = 0;
  let n = 0;
  const server: Server = createServer((req, res) => {
    req.resume().on('end', () => answer(res, ++n));
    res.on('error', () => {});
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    res.write = ((chunk: Buffer, ...rest: unknown[]) => {
      written += chunk.length;
      return write(chunk, ...rest);
    }) as typeof res.write;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/gateway.do`, written: () => written };
}

/** Writes `total` bytes of filler as fast as the client reads, until it goes away. */
function flood(res: ServerResponse, total: number, headers: Record<string, string | number>): void {
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  const chunk = Buffer.alloc(1 << 20, 'A');
  let sent = 0;
  const pump = () => {
    while (sent < total && !res.destroyed) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!res.destroyed) res.end();
  };
  res.write(Buffer.from(`{"${KEY_NAME}":{"code":"10000","sub_msg":"`));
  pump();
}

const honest = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end(signedBody(SUCCESS));

function makeSink(url: string, patch: object = {}) {
  const sink = createZhimaSink(parseConfig({ endpoint: url, timeout: '10s', ...patch }), { logger: silentLogger() });
  closers.push(() => sink.close());
  return sink;
}

describe('a gateway that answers 50 MB, over loopback HTTP', () => {
  it.each([
    ['announced by Content-Length', { 'content-length': 50 * MB }, /\(announced 50,000,000 bytes\)/],
    ['streamed without a length', {}, /\(passed it after [\d,]+ bytes\)/],
  ])('%s: RESPONSE_TOO_LARGE quickly, the body abandoned, the event loop free, the next answer read', async (_name, headers, seen) => {
    const server = await gateway((res, n) => (n === 1 ? flood(res, 50 * MB, headers) : honest(res)));
    const sink = makeSink(server.url);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const started = performance.now();
    const outcome = await sink.deliver(tradeEvent(), new AbortController().signal);
    const elapsed = performance.now() - started;
    loop.disable();
    expect(outcome).toMatchObject({ status: 'retry', code: RESPONSE_TOO_LARGE });
    expect(outcome.status === 'retry' && outcome.message).toMatch(/256,000-byte cap.*raise sinks\.zhima\.maxResponseBytes/);
    expect(outcome.status === 'retry' && outcome.message).toMatch(seen);
    expect(elapsed).toBeLessThan(1_000);
    expect(loop.max / 1e6).toBeLessThan(250);
    await new Promise((resolve) => setImmediate(resolve));
    expect(server.written()).toBeLessThan(25 * MB);
    expect(await sink.deliver(tradeEvent(), new AbortController().signal)).toMatchObject({ status: 'delivered', result: { biz_result: 'success' } });
  });

  it('maxResponseBytes raises the cap: a 600 kB signed answer is too large by default and read under 1MB', async () => {
    const big = `{"code":"10000","msg":"Success","biz_result":"success","padding":"${'p'.repeat(600_000)}"}`;
    const server = await gateway((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(signedBody(big)));
    expect(await makeSink(server.url).deliver(tradeEvent(), new AbortController().signal)).toMatchObject({ status: 'retry', code: RESPONSE_TOO_LARGE });
    expect(await makeSink(server.url, { maxResponseBytes: '1MB' }).deliver(tradeEvent(), new AbortController().signal)).toMatchObject({ status: 'delivered' });
  });

  it(`${N} oversized or HTML answers in a row pause the sink; a verified answer resets the run`, async () => {
    const server = await gateway((res, n) => {
      if (n === 5 || n === 12) return honest(res);
      if (n % 2 === 0) return flood(res, 5 * MB, {});
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Please sign in</body></html>');
    });
    const sink = makeSink(server.url);
    const outcomes: DeliveryOutcome[] = [];
    for (let i = 0; i < 12; i++) outcomes.push(await sink.deliver(tradeEvent(), new AbortController().signal));
    expect(outcomes.map((o) => o.status)).toEqual([
      'retry', 'retry', 'retry', 'retry', 'delivered', // four untrusted, then a verified answer
      'retry', 'retry', 'retry', 'retry', 'sink_failure', 'sink_failure', // the fifth in a row pauses
      'delivered',
    ]);
    expect(outcomes[9]).toMatchObject({ code: UNTRUSTED_ANSWERS, message: expect.stringMatching(new RegExp(`^${N} answers in a row .*last: ${RESPONSE_TOO_LARGE}`)) });
    expect(outcomes[10]).toMatchObject({ code: UNTRUSTED_ANSWERS, message: expect.stringMatching(new RegExp(`^${N + 1} answers in a row .*last: BAD_RESPONSE`)) });
  });
});

/** A small deterministic PRNG (mulberry32), so a failing input can be found again. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
