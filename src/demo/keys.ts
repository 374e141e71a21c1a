import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
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

export function writeDemoKeys(dir: string, keys: DemoKeys = generateDemoKeys()): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [k, file] of Object.entries(KEY_FILES) as Array<[keyof DemoKeys, string]>) {
    const path = join(dir, file);
    // Readable by the container users that mount the volume; these are sandbox-only keys.
    writeFileSync(path, `${keys[k]}${keys[k].endsWith('\n') ? '' : '\n'}`, { mode: 0o644 });
    written.push(path);
  }
  return written;
}
