import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { faultsPatchSchema } from '../sandbox/antchain-sim/faults.js';
import { startAntchainSimulator } from '../sandbox/antchain-simulator.js';
import { startZhimaSimulator, zhimaFaultsSchema } from '../sandbox/zhima-simulator.js';

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

const FAULTS = { antchain: faultsPatchSchema, zhima: zhimaFaultsSchema.partial() } as const;

/**
 * `--faults` as the simulator takes it, or an error of one line naming the field and what it
 * takes (not zod's JSON of issues).
 */
export function parseFaults<K extends keyof typeof FAULTS>(kind: K, text: string): z.output<(typeof FAULTS)[K]> {
  const schema = FAULTS[kind];
  const example = `e.g. '{"http5xxRate":0.1,"latencyMs":20}'`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`--faults: not JSON; ${example}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`--faults: expected a JSON object of fault settings; ${example}`);
  const result = schema.safeParse(value);
  if (result.success) return result.data as z.output<(typeof FAULTS)[K]>;
  const fields = Object.keys(schema.shape);
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return `${issue.keys.map((k) => `"${k}"`).join(', ')} ${issue.keys.length > 1 ? 'are no fault settings' : 'is no fault setting'} of the ${kind} simulator (it has ${fields.join(', ')})`;
    }
    const field = issue.path.join('.');
    const got = (value as Record<string, unknown>)[String(issue.path[0])];
    return `${field}: ${faultRule(field)}, got ${JSON.stringify(got)}`;
  });
  throw new Error(`--faults: ${problems.join('; ')}`);
}

/** What a fault field takes: rates are probabilities, the rest milliseconds. */
function faultRule(field: string): string {
  return field.endsWith('Rate') ? 'a probability, a number from 0 to 1' : 'whole milliseconds from 0 to 600000';
}

/** Starts a gateway simulator in the foreground; resolves with its URL. */
export async function simulate(kind: string, args: SimulateArgs, env: NodeJS.ProcessEnv = process.env) {
  if (kind !== 'antchain' && kind !== 'zhima') throw new Error(`unknown simulator "${kind}" (expected antchain or zhima)`);
  const common = { port: Number(args.port), host: args.host, seed: Number(args.seed), ...(args.faults ? { faults: parseFaults(kind, args.faults) } : {}) };
  if (kind === 'antchain') {
    const accessKey = args.accessKey ?? env.ANTCHAIN_ACCESS_KEY;
    const accessSecret = env.ANTCHAIN_ACCESS_SECRET;
    if (!accessKey) throw new Error('--access-key (or ANTCHAIN_ACCESS_KEY) is required');
    if (!accessSecret) throw new Error('ANTCHAIN_ACCESS_SECRET must be set: the simulator verifies signatures with it');
    return startAntchainSimulator({ ...common, accessKey, accessSecret });
  }
  if (!args.appId) throw new Error('--app-id is required');
  return startZhimaSimulator({
    ...common,
    appId: args.appId,
    appPublicKeyPem: readFile(args.appPublicKey, '--app-public-key'),
    gatewayPrivateKeyPem: readFile(args.gatewayPrivateKey, '--gateway-private-key'),
  });
}
