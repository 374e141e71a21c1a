import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { KEY_FILES } from '../../src/demo/keys.js';
import { REPO } from '../helpers/pipeline.js';

function keygen(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO, 'bin/order-relay.js'), 'keygen', ...args], { cwd: REPO }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const snapshot = (dir: string) => Object.fromEntries(Object.values(KEY_FILES).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
const mode = (path: string) => statSync(path).mode & 0o777;

describe('order-relay keygen', () => {
  it('writes secrets 0600, refuses to overwrite a set without --force (naming the file), keeps a complete one with --keep-existing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'order-relay-keygen-'));
    dirs.push(dir);
    const out = join(dir, 'keys');

    const first = await keygen(['--out', out]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout.trim().split('\n')).toEqual(Object.values(KEY_FILES).map((f) => join(out, f)));
    for (const f of [KEY_FILES.appPrivatePem, KEY_FILES.gatewayPrivatePem, KEY_FILES.antchainAccessSecret]) expect(mode(join(out, f)), f).toBe(0o600);
    for (const f of [KEY_FILES.appPublicPem, KEY_FILES.gatewayPublicPem, KEY_FILES.antchainAccessKey]) expect(mode(join(out, f)), f).toBe(0o644);
    const keys = snapshot(out);

    // Again: refused, nothing changed.
    const again = await keygen(['--out', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `order-relay keygen: ${join(out, KEY_FILES.antchainAccessKey)} exists (and 5 more of the set): refusing to overwrite keys in use; --force replaces the whole set\n`,
    );
    expect(snapshot(out)).toEqual(keys);

    // What docker-compose's keys service runs on every `up`: a complete set stays, exit 0.
    const keep = await keygen(['--out', out, '--keep-existing']);
    expect(keep).toMatchObject({ code: 0, stdout: '' });
    expect(keep.stderr).toContain('kept it');
    expect(snapshot(out)).toEqual(keys);

    // A partial set is not "there": refused even with --keep-existing.
    unlinkSync(join(out, KEY_FILES.gatewayPublicPem));
    const partial = await keygen(['--out', out, '--keep-existing']);
    expect(partial.code).toBe(1);
    expect(partial.stderr).toMatch(/exists \(and 4 more of the set\): refusing to overwrite keys in use; --force replaces the whole set \(the set there is incomplete, so it cannot be kept\)\n$/);

    // --force replaces the whole set, secrets still 0600 (an overwritten file keeps no old mode).
    const forced = await keygen(['--out', out, '--force']);
    expect(forced).toMatchObject({ code: 0, stderr: '' });
    const replaced = snapshot(out);
    expect(replaced[KEY_FILES.appPrivatePem]).not.toBe(keys[KEY_FILES.appPrivatePem]);
    expect(replaced[KEY_FILES.antchainAccessSecret]).not.toBe(keys[KEY_FILES.antchainAccessSecret]);
    expect(mode(join(out, KEY_FILES.appPrivatePem))).toBe(0o600);
  });

  it('is what docker-compose\'s keys service runs, keeping the set on every later `up`', () => {
    const compose = parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { command?: string[] }> };
    expect(compose.services.keys!.command).toEqual(['keygen', '--out', '/keys', '--keep-existing']);
  });
});
