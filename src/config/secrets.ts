import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * Where a secret comes from. Secrets never live in the YAML itself: either `${ENV}`
 * interpolation put the value there at load time, or the config names an environment
 * variable or a file (Kubernetes/Docker secrets) that is read when the sink starts.
 */
export const secretRef = () =>
  z.union([
    z.string().min(1, 'expected a non-empty secret (use ${ENV_VAR} interpolation)'),
    z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name') }),
    z.strictObject({ file: z.string().min(1, 'expected a file path') }),
  ]);

export type SecretRef = z.infer<ReturnType<typeof secretRef>>;

export class SecretError extends Error {
  override readonly name = 'SecretError';
}

/** Resolves a secret reference. `what` names the config path in errors; the value never appears in them. */
export function resolveSecret(ref: SecretRef, what: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof ref === 'string') return ref;
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new SecretError(`${what}: environment variable ${ref.env} is not set`);
    return value;
  }
  let text: string;
  try {
    text = readFileSync(ref.file, 'utf8');
  } catch (err) {
    throw new SecretError(`${what}: cannot read secret file ${ref.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new SecretError(`${what}: secret file ${ref.file} is empty`);
  return value;
}
