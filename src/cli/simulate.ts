import { readFileSync } from 'node:fs';
import { startAntchainSimulator } from '../sandbox/antchain-simulator.js';
import { startZhimaSimulator } from '../sandbox/zhima-simulator.js';

export interface SimulateArgs {
  port: string;
  host: string;
  seed: string;
  faults?: string;
  accessKey?: string;
  appId?: string;
  appPublicKey?: string;
  gatewayPrivateKey?: string;
}

function readFile(path: string | undefined, flag: string): string {
  if (!path) throw new Error(`${flag} is required`);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** Starts a gateway simulator in the foreground; resolves with its URL. */
export async function simulate(kind: string, args: SimulateArgs, env: NodeJS.ProcessEnv = process.env) {
  const common = { port: Number(args.port), host: args.host, seed: Number(args.seed), ...(args.faults ? { faults: JSON.parse(args.faults) } : {}) };
  if (kind === 'antchain') {
    const accessKey = args.accessKey ?? env.ANTCHAIN_ACCESS_KEY;
    const accessSecret = env.ANTCHAIN_ACCESS_SECRET;
    if (!accessKey) throw new Error('--access-key (or ANTCHAIN_ACCESS_KEY) is required');
    if (!accessSecret) throw new Error('ANTCHAIN_ACCESS_SECRET must be set: the simulator verifies signatures with it');
    return startAntchainSimulator({ ...common, accessKey, accessSecret });
  }
  if (kind === 'zhima') {
    if (!args.appId) throw new Error('--app-id is required');
    return startZhimaSimulator({
      ...common,
      appId: args.appId,
      appPublicKeyPem: readFile(args.appPublicKey, '--app-public-key'),
      gatewayPrivateKeyPem: readFile(args.gatewayPrivateKey, '--gateway-private-key'),
    });
  }
  throw new Error(`unknown simulator "${kind}" (expected antchain or zhima)`);
}
