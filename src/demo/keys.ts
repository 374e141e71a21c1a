import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Throw-away credentials for the demo and the docker-compose sandbox: an AntChain access
 * key/secret and two RSA-2048 pairs (the "app" key order-relay signs with, and the
 * "gateway" key the Zhima simulator signs its answers with). Generated at start, never
 * written into the repository, worthless outside the simulators.
 */
export interface DemoKeys {
  antchainAccessKey: string;
  antchainAccessSecret: string;
  appPrivatePem: string;
  appPublicPem: string;
  gatewayPrivatePem: string;
  gatewayPublicPem: string;
}

export function generateDemoKeys(): DemoKeys {
  const pair = () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return {
      priv: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      pub: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
  };
  const app = pair();
  const gateway = pair();
  return {
    antchainAccessKey: `ACdemo${randomBytes(5).toString('hex')}`,
    antchainAccessSecret: randomBytes(24).toString('hex'),
    appPrivatePem: app.priv,
    appPublicPem: app.pub,
    gatewayPrivatePem: gateway.priv,
    gatewayPublicPem: gateway.pub,
  };
}

/** File names `order-relay keygen` writes (docker-compose mounts them). */
export const KEY_FILES = {
  antchainAccessKey: 'antchain_access_key',
  antchainAccessSecret: 'antchain_access_secret',
  appPrivatePem: 'app_private.pem',
  appPublicPem: 'app_public.pem',
  gatewayPrivatePem: 'gateway_private.pem',
  gatewayPublicPem: 'gateway_public.pem',
} as const satisfies Record<keyof DemoKeys, string>;

/** The files that must stay private to their owner: the private keys and the AntChain secret. */
const SECRET: ReadonlySet<keyof DemoKeys> = new Set(['antchainAccessSecret', 'appPrivatePem', 'gatewayPrivatePem']);

export class KeysExistError extends Error {
  override readonly name = 'KeysExistError';
}

/**
 * Writes a key set into `dir`. Existing files are never overwritten unless `force`: a second
 * `keygen` would otherwise replace keys the simulators and the connector already use. With
 * `keepExisting`, a complete set already there is kept (returned as `kept`); a partial one is
 * still refused. Secrets are written 0600 (docker-compose's services all run as one user);
 * public keys and the access key id 0644.
 */
export function writeDemoKeys(dir: string, keys?: DemoKeys, options: { force?: boolean; keepExisting?: boolean } = {}): string[] {
  return writeKeySet(dir, keys, options).files;
}

export function writeKeySet(dir: string, keys?: DemoKeys, options: { force?: boolean; keepExisting?: boolean } = {}): { files: string[]; kept: boolean } {
  const entries = (Object.entries(KEY_FILES) as Array<[keyof DemoKeys, string]>).map(([k, file]) => ({ k, path: join(dir, file) }));
  const present = entries.filter((e) => existsSync(e.path));
  if (present.length && !options.force) {
    if (options.keepExisting && present.length === entries.length) return { files: entries.map((e) => e.path), kept: true };
    throw new KeysExistError(
      `${present[0]!.path} exists${present.length > 1 ? ` (and ${present.length - 1} more of the set)` : ''}: refusing to overwrite keys in use; --force replaces the whole set${options.keepExisting ? ' (the set there is incomplete, so it cannot be kept)' : ''}`,
    );
  }
  const set = keys ?? generateDemoKeys();
  mkdirSync(dir, { recursive: true });
  for (const { k, path } of entries) {
    const mode = SECRET.has(k) ? 0o600 : 0o644;
    // 'wx' unless forced: a file that appeared meanwhile is not overwritten either.
    writeFileSync(path, `${set[k]}${set[k].endsWith('\n') ? '' : '\n'}`, { mode, flag: options.force ? 'w' : 'wx' });
    chmodSync(path, mode); // an overwritten file keeps its old mode; the umask may narrow a new one
  }
  return { files: entries.map((e) => e.path), kept: false };
}
