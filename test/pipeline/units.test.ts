import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, configWarnings, parseConfig } from '../../src/config/load.js';
import { eventId } from '../../src/core/ids.js';
import { REPO } from '../helpers/pipeline.js';

const demo = readFileSync(`${REPO}config/demo.yaml`, 'utf8');
const env = {
  DATABASE_URL: 'postgres://u@h/db',
  ANTCHAIN_ENDPOINT: 'http://127.0.0.1:1/gateway.do',
  ANTCHAIN_ACCESS_KEY: 'ak',
  ANTCHAIN_ACCESS_SECRET: 'from-the-environment',
  ZHIMA_ENDPOINT: 'http://127.0.0.1:2/gateway.do',
};

function problems(text: string): string[] {
  try {
    parseConfig(text, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the config to be refused');
}

/** Replaces exactly one occurrence, so a template change cannot make a case test nothing. */
function edit(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  expect(out, `${String(from)} in the template`).not.toBe(text);
  return out;
}

describe('config values with units', () => {
  it('say what a duration looks like when a unit is wrong or missing, and name the unit meant', () => {
    const text = edit(edit(demo, 'heartbeat: 10s', 'heartbeat: 30sec'), /timeout: 5s/, 'timeout: 5000');
    expect(problems(text)).toEqual([
      'source.heartbeat: expected "off" or a duration with a unit, e.g. "30s" (units: ms, s, m, h, d); got "30sec" (did you mean "30s"?)',
      'sinks.antchain.timeout: expected a duration with a unit, e.g. "30s" (units: ms, s, m, h, d); got 5000, a number without a unit (write "5000ms" or "5s")',
    ]);
    expect(problems(edit(demo, 'pollInterval: 200ms', 'pollInterval: 2 minutes'))).toEqual([
      'dispatcher.pollInterval: expected a duration with a unit, e.g. "30s" (units: ms, s, m, h, d); got "2 minutes" (did you mean "2m"?)',
    ]);
    expect(parseConfig(edit(demo, 'heartbeat: 10s', 'heartbeat: "off"'), env).source?.heartbeat).toBe('off');
  });

  it('say what a size looks like', () => {
    const text = edit(demo, 'heartbeat: 10s', 'heartbeat: 10s\n  maxBufferBytes: 10M');
    expect(problems(text)).toEqual([
      'source.maxBufferBytes: expected a size with a unit, e.g. "64kB" (units: B, kB, KiB, MB, MiB, GB, GiB); got "10M" (did you mean "10MB" or "10MiB"?)',
    ]);
    expect(problems(edit(demo, 'heartbeat: 10s', 'heartbeat: 10s\n  maxBufferBytes: 1048576'))).toEqual([
      'source.maxBufferBytes: expected a size with a unit, e.g. "64kB" (units: B, kB, KiB, MB, MiB, GB, GiB); got 1048576, a number without a unit (write "1048576B" or "1024KiB")',
    ]);
    expect(parseConfig(edit(demo, 'heartbeat: 10s', 'heartbeat: 10s\n  maxBufferBytes: 10MiB'), env).source?.maxBufferBytes).toBe(10 * 1024 * 1024);
  });
});

describe('secrets in the config file', () => {
  const inline = edit(demo, 'accessSecret: { env: ANTCHAIN_ACCESS_SECRET }', 'accessSecret: "hunter2-literal"');

  it('are refused, with what to write instead', () => {
    expect(problems(inline)).toEqual([
      'sinks.antchain.accessSecret: a secret written into the config file: reference it instead, as "${ENV_VAR}", { env: NAME } or { file: /run/secrets/… } (or set allowInlineSecrets: true at the top level to accept it, with a warning)',
    ]);
    const key = edit(demo, 'privateKey: { env: ZHIMA_APP_PRIVATE_KEY }', 'privateKey: "-----BEGIN PRIVATE KEY-----\\nMIIE…\\n-----END PRIVATE KEY-----"');
    expect(problems(key)).toEqual([expect.stringMatching(/^sinks\.zhima\.privateKey: a secret written into the config file: /)]);
  });

  it('are accepted with allowInlineSecrets: true, and named in a warning', () => {
    const config = parseConfig(edit(inline, 'project: demo-cinema', 'project: demo-cinema\nallowInlineSecrets: true'), env, 'relay.yaml');
    expect(config.sinks.antchain!.kind === 'antchain' && config.sinks.antchain!.accessSecret).toBe('hunter2-literal');
    expect(configWarnings(config)).toEqual([
      'sinks.antchain.accessSecret: a secret written into relay.yaml (accepted: allowInlineSecrets is true); move it to an environment variable or a file',
    ]);
  });

  it('may come from ${ENV} (whole or in part), { env } and { file }; ids and certificates are no secrets', () => {
    const ok = [
      demo,
      edit(demo, 'accessSecret: { env: ANTCHAIN_ACCESS_SECRET }', 'accessSecret: ${ANTCHAIN_ACCESS_SECRET}'),
      edit(demo, 'accessSecret: { env: ANTCHAIN_ACCESS_SECRET }', 'accessSecret: "prefix-${ANTCHAIN_ACCESS_SECRET}"'),
      edit(demo, 'accessSecret: { env: ANTCHAIN_ACCESS_SECRET }', 'accessSecret: { file: /run/secrets/antchain }'),
      // The access key id travels in clear with every request, like Zhima's appId.
      edit(demo, 'accessKey: ${ANTCHAIN_ACCESS_KEY}', 'accessKey: ACexample'),
      edit(demo, 'alipayPublicKey: { env: ZHIMA_ALIPAY_PUBLIC_KEY }', 'alipayPublicKey: { env: ZHIMA_ALIPAY_PUBLIC_KEY }\n    certMode:\n      appCert: "-----BEGIN CERTIFICATE-----\\nMIIB…"\n      alipayRootCert: { file: /x }\n      alipayCert: { file: /y }'),
    ];
    for (const text of ok) expect(configWarnings(parseConfig(text, env))).toEqual([]);
    const production = readFileSync(`${REPO}config/production.yaml`, 'utf8');
    expect(configWarnings(parseConfig(production, env))).toEqual([]);
  });
});

describe('event ids', () => {
  // The ids of a running ledger must never change with a release: this is the definition they were made with.
  const reference = (parts: string[]) => {
    const h = createHash('sha256');
    for (const p of parts) h.update(String(p.length)).update(':').update(p);
    return h.digest('hex').slice(0, 32);
  };
  it.each([
    [['demo-cinema', 'P0000001', 'TRADE_SUCCESS']],
    [['p', '订单-票', 'REFUND_SUCCESS', 'R-退款-1']],
    [['p', 'a:b', '3:c']],
    [['p', '\ud800lone', 'x']],
    [['', '', '']],
  ])('%j hashes as it always has', (parts) => {
    expect(eventId(parts)).toBe(reference(parts));
  });
});
