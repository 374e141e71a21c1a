import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { credentialProblems, doctor, renderChecks } from '../../src/cli/doctor.js';
import { sinkSchema, type SinkConfig } from '../../src/config/schema.js';
import { KEYS, REPO } from '../helpers/pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'order-relay-doctor-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const demo = parse(readFileSync(join(REPO, 'config/demo.yaml'), 'utf8')) as { sinks: Record<string, Record<string, unknown>> };
const key = (file: string) => join(KEYS, file);
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function zhima(overrides: Record<string, unknown>): SinkConfig {
  return sinkSchema.parse({ ...demo.sinks.zhima, endpoint: 'http://127.0.0.1:9/gateway.do', ...overrides });
}

const antchain = (overrides: Record<string, unknown>) =>
  sinkSchema.parse({ ...demo.sinks.antchain, endpoint: 'http://127.0.0.1:9/gateway.do', accessKey: { env: 'AK' }, ...overrides });

describe('doctor: every key problem of a sink, each with its fix', () => {
  it('a missing file and an unset variable: both, with the path to mount and the variable to set', () => {
    const missing = join(dir, 'nope', 'app_private.pem');
    const problems = credentialProblems('zhima', zhima({ privateKey: { file: missing }, alipayPublicKey: { env: 'NO_SUCH_KEY_VAR' } }), {});
    expect(problems).toEqual([
      { detail: `sinks.zhima.privateKey: cannot read secret file ${missing}: ENOENT`, fix: `put the app private key in ${missing} (mount the secret at that path), or correct sinks.zhima.privateKey.file` },
      { detail: 'sinks.zhima.alipayPublicKey: environment variable NO_SUCH_KEY_VAR is not set', fix: 'set the environment variable NO_SUCH_KEY_VAR to the Alipay public key' },
    ]);
  });

  it('malformed keys are not told to set a variable: a cut private key, a private key where the Alipay public key goes', () => {
    const cut = file('cut.pem', readFileSync(key('app_private_pkcs8.pem'), 'utf8').slice(0, 400));
    const problems = credentialProblems('zhima', zhima({ privateKey: { file: cut }, alipayPublicKey: { file: key('gateway_private_pkcs1.pem') } }), {});
    expect(problems.map((p) => p.detail)).toEqual([
      'sinks.zhima.privateKey: not a valid RSA private key (expected PEM PKCS#1/PKCS#8 or bare base64)',
      'sinks.zhima.alipayPublicKey: expected a public key, got a private key',
    ]);
    expect(problems[0]!.fix).toMatch(/^sinks\.zhima\.privateKey must hold the app private key whole, as the key tool wrote it: PEM/);
    expect(problems[1]!.fix).toBe('sinks.zhima.alipayPublicKey takes the Alipay public key (支付宝公钥) the console shows for the app, a public key; the app\'s private key belongs in sinks.zhima.privateKey');
    for (const p of problems) expect(p.fix).not.toMatch(/environment variable/);
  });

  it('a public key that does not go with the private key says so: the app\'s own public key as the Alipay key, a certificate of another key', () => {
    const mixed = credentialProblems('zhima', zhima({ privateKey: { file: key('app_private_pkcs8.pem') }, alipayPublicKey: { file: key('app_public.pem') } }), {});
    expect(mixed).toEqual([
      {
        detail: 'sinks.zhima.alipayPublicKey: is the public half of sinks.zhima.privateKey (your app public key), not the Alipay public key, so no answer of the gateway would verify',
        fix: 'use the Alipay public key the console shows for the app (支付宝公钥, beside the app public key you uploaded)',
      },
    ]);
    const certs = {
      appCert: { file: key('cert/appCertPublicKey.crt') },
      alipayRootCert: { file: key('cert/alipayRootCert.crt') },
      alipayCert: { file: key('cert/alipayCertPublicKey_RSA2.crt') },
    };
    expect(credentialProblems('zhima', zhima({ privateKey: { file: key('app_private_pkcs8.pem') }, certMode: certs }), {})).toEqual([]);
    const other = credentialProblems('zhima', zhima({ privateKey: { file: key('gateway_private_pkcs8.pem') }, certMode: { ...certs, alipayRootCert: { file: key('app_public.pem') } } }), {});
    expect(other.map((p) => p.detail)).toEqual([
      'sinks.zhima.certMode.appCert: certifies a different key than sinks.zhima.privateKey, so the gateway would refuse every signature',
      'sinks.zhima.certMode.alipayRootCert: not a PEM certificate',
    ]);
  });

  it('doctor lists each problem on its own line with its fix; an unreadable file is told to be made readable', async () => {
    const locked = file('locked.pem', readFileSync(key('app_private_pkcs8.pem'), 'utf8'));
    chmodSync(locked, 0o000);
    const root = process.getuid?.() === 0; // root reads it anyway
    const config = {
      project: 'p',
      database: { url: 'postgres://nobody@127.0.0.1:1/none' },
      ledger: { schema: 'order_relay', poolSize: 2 },
      admin: { listen: 'off' },
      sinks: {
        antchain: antchain({ accessSecret: { env: 'NO_SUCH_SECRET_VAR' } }),
        zhima: zhima({ privateKey: { file: locked }, alipayPublicKey: { file: join(dir, 'missing.pem') } }),
      },
    } as unknown as Parameters<typeof doctor>[0];
    const checks = (await doctor(config, { env: { AK: 'AK1' }, offline: true, timeoutMs: 1_000 })).filter((c) => c.name.startsWith('credentials'));
    expect(checks.map((c) => [c.name, c.status, c.detail])).toEqual([
      ['credentials antchain', 'fail', 'sinks.antchain.accessSecret: environment variable NO_SUCH_SECRET_VAR is not set'],
      ...(root ? [] : [['credentials zhima', 'fail', `sinks.zhima.privateKey: cannot read secret file ${locked}: EACCES`]]),
      ['credentials zhima', 'fail', `sinks.zhima.alipayPublicKey: cannot read secret file ${join(dir, 'missing.pem')}: ENOENT`],
    ]);
    if (!root) expect(checks[1]!.fix).toBe(`make ${locked} readable by the user order-relay runs as`);
    const lines = renderChecks(checks).split('\n');
    expect(lines).toHaveLength(checks.length);
    for (const line of lines) expect(line).toMatch(/^FAIL {2}credentials \w+ +sinks\.\w+\.\w+: .+ — fix: \S/);
  });
});
