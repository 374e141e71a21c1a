import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import {
  answerOutcome,
  createAntchainSink,
  extractResponseStringToSign,
  hmacSha1Base64,
  maskPersonal,
  RESPONSE_TOO_LARGE,
} from '../../connectors/sinks/antchain/index.js';
import type { DeliveryOutcome } from '../../src/core/sink.js';
import type { AnswerTrust } from '../../src/core/trust.js';
import { silentLogger } from '../../src/log.js';
import { hexId, orderRow, sinkConfig, TEST_ENV, TEST_SECRET, tradeEvent } from './fixtures.js';

/**
 * Answers no gateway would give, fed to the parser and classifier as the transport hands them
 * over (text, any status), and over loopback HTTP. Every input gets a time bound measured
 * around the call: linear work on 50 MB takes well under a second here, the quadratic
 * masking this replaces took 22 s on 100k characters.
 */

const MB = 1_000_000;
const REQ = '0123456789abcdef0123456789abcdef';
/** What an attempt record may hold at most: clipped codes and messages plus their notes. */
const MAX_RECORD_CHARS = 8_000;

/** A flat string of `length` characters repeating an ASCII `pattern`, as a decoded body is (String.repeat builds a rope). */
const fill = (pattern: string, length: number): string => Buffer.alloc(length, pattern).toString('latin1');

function timed<T>(run: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = run();
  return { value, ms: performance.now() - started };
}

const signedBody = (response: string, secret = TEST_SECRET) => `{"response":${response},"sign":"${hmacSha1Base64(secret, response)}"}`;
const okResponse = (extra = '') => `{"req_msg_id":"${REQ}","result_code":"OK","result_msg":"OK","event_id":"E1","event_status":"PROCESSED","token_status":"TOKEN_SUCCESS"${extra}}`;

/** The sink's whole reading of one answer, and the log line's masking of it. */
function judge(body: string, status = 200): { outcome: DeliveryOutcome; trust: AnswerTrust; logged: string | undefined } {
  const { outcome, trust } = answerOutcome({ ok: true, status, body }, { secret: TEST_SECRET, reqMsgId: REQ, durationMs: 1 });
  const logged = outcome.status === 'not_applicable' ? undefined : maskPersonal(outcome.info.remoteMessage ?? ('message' in outcome ? outcome.message : undefined));
  return { outcome, trust, logged };
}

interface Case {
  name: string;
  body: () => string;
  status?: number;
  expect: { status: DeliveryOutcome['status']; code?: string | RegExp; trust: AnswerTrust };
  /** Measured bound for this input, ms. */
  boundMs: number;
}

const deepArrays = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

const cases: Case[] = [
  {
    name: '50 MB result_code without "@"',
    body: () => `{"response":{"req_msg_id":"${REQ}","result_code":"${'A'.repeat(50 * MB)}"}}`,
    expect: { status: 'rejected', code: /^A{128}… \[49,999,872 more characters cut\]$/, trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB result_msg of digits and spaces (overflowed the phone pattern)',
    body: () => `{"response":{"result_code":"UNKNOWN","result_msg":"${'1 '.repeat(25 * MB)}"}}`,
    expect: { status: 'retry', code: 'UNKNOWN', trust: 'trusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB OK answer with a 50 MB sign',
    body: () => `{"response":${okResponse()},"sign":"${'A'.repeat(50 * MB)}"}`,
    expect: { status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: '50 MB HTML page with HTTP 200',
    body: () => `<!doctype html><html><body>${'<p>login required</p>'.repeat(50 * MB / 21)}</body></html>`,
    expect: { status: 'retry', code: 'RESPONSE_FORMAT_ERROR', trust: 'untrusted' },
    boundMs: 2_000,
  },
  {
    name: 'HTML error page with HTTP 502',
    status: 502,
    body: () => '<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>',
    expect: { status: 'retry', code: 'HTTP_502', trust: 'neutral' },
    boundMs: 100,
  },
  {
    name: 'HTML login page with HTTP 302',
    status: 302,
    body: () => '<html><body>Redirecting to <a href="/login">/login</a></body></html>',
    expect: { status: 'retry', code: 'RESPONSE_FORMAT_ERROR', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'OK answer nesting 2 million arrays deep inside response, unsigned',
    body: () => `{"response":{"result_code":"OK","extra":${deepArrays(2 * MB)}}}`,
    expect: { status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'OK answer nesting 1 million arrays deep, signed',
    body: () => signedBody(okResponse(`,"extra":${deepArrays(MB)}`)),
    expect: { status: 'delivered', trust: 'trusted' },
    boundMs: 3_000,
  },
  {
    name: 'an envelope of objects nested 1 million deep',
    body: () => '{"a":'.repeat(MB) + '1' + '}'.repeat(MB),
    expect: { status: 'retry', code: 'MISSING_RESPONSE', trust: 'untrusted' },
    boundMs: 2_000,
  },
  {
    name: '1 million unclosed brackets (truncated nesting)',
    body: () => `{"response":${'['.repeat(MB)}`,
    expect: { status: 'retry', code: 'RESPONSE_FORMAT_ERROR', trust: 'untrusted' },
    boundMs: 1_000,
  },
  {
    name: 'a signed token_amount of 1 million digits',
    body: () => signedBody(okResponse(`,"token_amount":${'9'.repeat(MB)}`)),
    expect: { status: 'delivered', trust: 'trusted' },
    boundMs: 1_000,
  },
  {
    name: 'a result_code that is a number of 1 million digits',
    body: () => `{"response":{"result_code":${'7'.repeat(MB)},"result_msg":"${'8'.repeat(MB)}"}}`,
    expect: { status: 'rejected', code: 'Infinity', trust: 'trusted' },
    boundMs: 1_000,
  },
  {
    name: 'a million members in response',
    body: () => `{"response":{"result_code":"OK",${Array.from({ length: MB }, (_, i) => `"k${i}":${i}`).join(',')}}}`,
    expect: { status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', trust: 'untrusted' },
    boundMs: 5_000,
  },
  {
    name: 'invalid UTF-8 inside a signed answer (decoded with replacement characters)',
    body: () => {
      const response = okResponse(',"message":"caf\u00e9"');
      const sign = hmacSha1Base64(TEST_SECRET, response);
      const bytes = Buffer.from(`{"response":${response},"sign":"${sign}"}`, 'utf8');
      const at = bytes.indexOf(Buffer.from('caf', 'utf8')) + 3;
      bytes[at] = 0xff; // the first byte of é becomes one no UTF-8 text has
      return new TextDecoder().decode(bytes);
    },
    expect: { status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'NUL and lone surrogates in result_msg',
    body: () => '{"response":{"result_code":"FAILED_NO_RETRY","result_msg":"bad\\u0000byte \\ud800 and \\udfff"}}',
    expect: { status: 'rejected', code: 'FAILED_NO_RETRY', trust: 'trusted' },
    boundMs: 100,
  },
  {
    name: 'two response members: the second, unsigned, claims PROCESSED',
    body: () => {
      const genuine = okResponse().replace('"PROCESSED"', '"NEED_RETRY"');
      return `{"response":${genuine},"sign":"${hmacSha1Base64(TEST_SECRET, genuine)}","response":${okResponse()}}`;
    },
    expect: { status: 'retry', code: 'NEED_RETRY', trust: 'trusted' },
    boundMs: 100,
  },
  {
    name: 'two sign members, the last one wrong',
    body: () => `${signedBody(okResponse()).slice(0, -1)},"sign":"AAAA"}`,
    expect: { status: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'a 10 MB JSON string of escapes',
    body: () => `{"response":{"result_code":"UNKNOWN","result_msg":"${'\\u0041\\n\\"'.repeat(MB)}"}}`,
    expect: { status: 'retry', code: 'UNKNOWN', trust: 'trusted' },
    boundMs: 1_000,
  },
  {
    name: 'an empty body with HTTP 200',
    body: () => '',
    expect: { status: 'retry', code: 'RESPONSE_FORMAT_ERROR', trust: 'untrusted' },
    boundMs: 100,
  },
  {
    name: 'JSON that is no object',
    body: () => `[${'1,'.repeat(MB)}1]`,
    expect: { status: 'retry', code: 'MISSING_RESPONSE', trust: 'untrusted' },
    boundMs: 1_000,
  },
];

describe('hostile answers, one at a time, each within a measured bound', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const body = c.body();
    const { value, ms } = timed(() => judge(body, c.status));
    expect(ms).toBeLessThan(c.boundMs);
    expect(value.trust).toBe(c.expect.trust);
    expect(value.outcome.status).toBe(c.expect.status);
    if (c.expect.code !== undefined) expect('code' in value.outcome && value.outcome.code).toMatch(c.expect.code);
    expect(JSON.stringify(value.outcome).length).toBeLessThan(MAX_RECORD_CHARS);
    expect((value.logged ?? '').length).toBeLessThan(MAX_RECORD_CHARS);
    // NUL and lone surrogates cannot be stored in PostgreSQL text or jsonb.
    expect(JSON.stringify(value.outcome)).not.toMatch(/\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}/);
  });

  it('keeps a 1-million-digit token amount as a visibly clipped literal, never as a wrong number', () => {
    const { outcome } = judge(signedBody(okResponse(`,"token_amount":${'9'.repeat(MB)}`)));
    expect(outcome).toMatchObject({ status: 'delivered', result: { token_amount: `${'9'.repeat(40)}… [999,960 more characters cut]` } });
  });

  it('of duplicate token_amount keys takes the literal JSON.parse kept (the last), with non-integers as written', () => {
    const body = signedBody(okResponse(',"token_amount":12345678901234567890,"token_amount":98765432109876543210,"parent_token_amount":1e400'));
    expect(judge(body).outcome).toMatchObject({ status: 'delivered', result: { token_amount: '98765432109876543210', parent_token_amount: '1e400' } });
  });

  it('never delivers a prefix of a signed answer (every truncation point)', () => {
    const body = signedBody(okResponse(',"token_amount":150'));
    const { value: outcomes, ms } = timed(() => Array.from({ length: body.length }, (_, n) => judge(body.slice(0, n))));
    expect(ms).toBeLessThan(500);
    expect(outcomes.filter((o) => o.outcome.status === 'delivered')).toEqual([]);
    expect(new Set(outcomes.map((o) => o.trust))).toEqual(new Set(['untrusted']));
    expect(judge(body).outcome.status).toBe('delivered');
  });

  it('delivers a mutated answer only when the signed text survived the mutation (20,000 seeded mutations)', () => {
    const body = signedBody(okResponse(',"token_amount":150,"parent_token_amount":10'));
    const signedText = extractResponseStringToSign(body);
    const random = seeded(12);
    const noise = ['{', '}', '[', ']', '"', '\\', ',', ':', ' ', '0', '9', 'e', '-', '@', '\u00e9', '\ud800', 'OK', '"sign"', '"response"'];
    let delivered = 0;
    const { ms } = timed(() => {
      for (let n = 0; n < 20_000; n++) {
        let mutated = body;
        for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) {
          const at = Math.floor(random() * mutated.length);
          const cut = Math.floor(random() * 3);
          mutated = mutated.slice(0, at) + noise[Math.floor(random() * noise.length)] + mutated.slice(at + cut);
        }
        const { outcome } = judge(mutated);
        if (outcome.status !== 'delivered') continue;
        delivered++;
        expect(extractResponseStringToSign(mutated)).toBe(signedText);
      }
    });
    expect(ms).toBeLessThan(5_000);
    expect(delivered).toBeGreaterThan(0); // mutations of the envelope alone keep it valid
  });
});

describe('masking of remote messages', () => {
  /** The patterns as they were: the rewrite must mask exactly what they masked. */
  const before = (text: string) => text.replace(/[^\s@"',;:]+@[^\s@"',;:]+/g, '[redacted]').replace(/\+?\d[\d\s-]{5,}\d/g, '[redacted]');

  it('masks what the former patterns masked, on 100,000 seeded strings', () => {
    const random = seeded(3);
    const alphabet = ['a', 'Z', '1', '0', '9', ' ', '-', '+', '@', ',', '"', "'", ';', ':', '.', '\n', '\u00a0', '\u3000', 'é'];
    const mismatches: string[] = [];
    for (let n = 0; n < 100_000; n++) {
      let text = '';
      for (let length = Math.floor(random() * 40); length > 0; length--) text += alphabet[Math.floor(random() * alphabet.length)];
      if (maskPersonal(text) !== before(text)) mismatches.push(text);
    }
    expect(mismatches).toEqual([]);
  });

  it.each([
    ['account user@example.com / +86-13000000000 not found (1005)', 'account [redacted] / [redacted] not found (1005)'],
    ['mail "a.b@c.d", call 138 0013 8000', 'mail "[redacted]", call [redacted]'],
    ['a@b@c and 2024-01-01 12', '[redacted]@c and [redacted]'],
  ])('%j → %j', (text, masked) => {
    expect(maskPersonal(text)).toBe(masked);
  });

  it.each([
    ['100k characters without "@" (22 s before)', () => 'x'.repeat(100_000), 50],
    ['50 MB without "@"', () => fill('A', 50 * MB), 5_000],
    ['50 MB of digits and spaces', () => fill('1 ', 50 * MB), 5_000],
    ['50 MB of dashes after one digit', () => `1${fill('-', 50 * MB)}`, 5_000],
    ['5 MB of addresses', () => fill('a@b ', 5 * MB), 3_000],
  ])('%s within a measured bound', (_name, make, boundMs) => {
    const text = make();
    const { value, ms } = timed(() => maskPersonal(text));
    expect(ms).toBeLessThan(boundMs);
    expect(value).toBeDefined();
  });

  it.each([
    ['without "@"', 'A'],
    ['of digits and spaces', '1 '],
  ])('ten times the text %s costs about ten times as long, not a hundred', (_name, pattern) => {
    const small = fill(pattern, 2 * MB);
    const large = fill(pattern, 20 * MB);
    maskPersonal(small); // compiled before it is measured
    const ratio = timed(() => maskPersonal(large)).ms / Math.max(timed(() => maskPersonal(small)).ms, 1);
    expect(ratio).toBeLessThan(40);
  });
});

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

type Handler = (req: IncomingMessage, res: ServerResponse, form: URLSearchParams) => void;

/** A loopback gateway whose answers the test writes; `written` counts body bytes it got out. */
async function gateway(handler: Handler): Promise<{ url: string; written: () => number }> {
  let written = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handler(req, res, new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    res.on('error', () => {});
    const write = res.write.bind(res) as (chunk: Buffer) => boolean;
    res.write = ((chunk: Buffer, ...rest: unknown[]) => {
      written += chunk.length;
      return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof res.write;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/gateway.do`, written: () => written };
}

/** Writes `total` bytes of JSON-looking filler as fast as the client reads, until it goes away. */
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
  res.write(Buffer.from('{"response":{"result_code":"'));
  pump();
}

/** A correct, signed answer for the attempt in `form`. */
function honest(res: ServerResponse, form: URLSearchParams, resultMsg = 'OK'): void {
  const response = JSON.stringify({ req_msg_id: form.get('req_msg_id'), result_code: 'OK', result_msg: resultMsg, event_id: 'E-honest', event_status: 'PROCESSED' });
  res.writeHead(200, { 'content-type': 'application/json' }).end(signedBody(response));
}

describe('a gateway that answers 50 MB, over loopback HTTP', () => {
  it.each([
    ['announced by Content-Length', { 'content-length': 50 * MB }, /\(announced 50,000,000 bytes\)/],
    ['streamed without a length', {}, /\(passed it after [\d,]+ bytes\)/],
  ])('%s: RESPONSE_TOO_LARGE quickly, the body abandoned, the event loop free, the next answer read', async (_name, headers, seen) => {
    let answers = 0;
    const server = await gateway((_req, res, form) => (++answers === 1 ? flood(res, 50 * MB, headers) : honest(res, form)));
    const sink = createAntchainSink(sinkConfig({ endpoint: server.url, timeout: '10s' }), { logger: silentLogger(), env: TEST_ENV });
    closers.push(() => sink.close());
    const event = tradeEvent('TRADE_SUCCESS', hexId(90), orderRow());
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const { value: pending, ms: syncMs } = timed(() => sink.deliver(event, new AbortController().signal));
    const started = performance.now();
    const outcome = await pending;
    const elapsed = performance.now() - started + syncMs;
    loop.disable();
    expect(outcome).toMatchObject({ status: 'retry', code: RESPONSE_TOO_LARGE });
    expect(outcome.status === 'retry' && outcome.message).toMatch(/256,000-byte cap.*raise sinks\.antchain\.maxResponseBytes/);
    expect(outcome.status === 'retry' && outcome.message).toMatch(seen);
    expect(elapsed).toBeLessThan(1_000);
    expect(loop.max / 1e6).toBeLessThan(250);
    // The client hung up long before 50 MB: what got out is what the socket buffers took.
    await new Promise((resolve) => setImmediate(resolve));
    expect(server.written()).toBeLessThan(25 * MB);
    expect(await sink.deliver(event, new AbortController().signal)).toMatchObject({ status: 'delivered', result: { event_id: 'E-honest' } });
  });

  it('maxResponseBytes raises the cap: a 600 kB answer is too large by default and read under 1MB', async () => {
    const server = await gateway((_req, res, form) => honest(res, form, 'x'.repeat(600_000)));
    const event = tradeEvent('TRADE_SUCCESS', hexId(91), orderRow());
    const byDefault = createAntchainSink(sinkConfig({ endpoint: server.url }), { logger: silentLogger(), env: TEST_ENV });
    const raised = createAntchainSink(sinkConfig({ endpoint: server.url, maxResponseBytes: '1MB' }), { logger: silentLogger(), env: TEST_ENV });
    closers.push(() => byDefault.close(), () => raised.close());
    expect(await byDefault.deliver(event, new AbortController().signal)).toMatchObject({ status: 'retry', code: RESPONSE_TOO_LARGE, message: expect.stringContaining('256,000-byte cap') });
    const outcome = await raised.deliver(event, new AbortController().signal);
    expect(outcome).toMatchObject({ status: 'delivered', info: { remoteMessage: expect.stringMatching(/^x{2000}… \[598,000 more characters cut\]$/) } });
  });

  it('refuses a cap below 1kB at load time', () => {
    expect(() => sinkConfig({ maxResponseBytes: '512B' })).toThrow(/at least 1kB/);
    expect(() => sinkConfig({ maxResponseBytes: '256' })).toThrow(/size with a unit/);
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
