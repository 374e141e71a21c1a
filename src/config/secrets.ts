import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** The params of a config issue raised for a secret written into the file itself. */
export const INLINE_SECRET = 'inlineSecret';

export const INLINE_SECRET_MESSAGE =
  'a secret written into the config file: reference it instead, as "${ENV_VAR}", { env: NAME } or { file: /run/secrets/… } (or set allowInlineSecrets: true at the top level to accept it, with a warning)';

/**
 * While `parseConfig` validates a config file: the strings `${ENV}` interpolation produced.
 * Any other string in a secret's place was written into the file. Outside `parseConfig`
 * (a config built in code, as tests do) nothing is checked.
 */
let fromFile: { interpolated: ReadonlySet<string> } | undefined;

/** Runs `validate` with the inline-secret check on (see `parseConfig`). */
export function checkingInlineSecrets<T>(interpolated: ReadonlySet<string>, validate: () => T): T {
  const previous = fromFile;
  fromFile = { interpolated };
  try {
    return validate();
  } finally {
    fromFile = previous;
  }
}

/** A certificate is public: written into the file it gives nothing away. */
const CERTIFICATE = /^\s*-----BEGIN CERTIFICATE-----/;

/**
 * Where a secret comes from. Secrets never live in the YAML itself: either `${ENV}`
 * interpolation put the value there at load time, or the config names an environment
 * variable or a file (Kubernetes/Docker secrets) that is read when the sink starts. A
 * string that no interpolation produced is refused when a config file is loaded, unless
 * the file says `allowInlineSecrets: true`.
 */
export const secretRef = () =>
  z.union([
    z
      .string()
      .min(1, 'expected a non-empty secret (use ${ENV_VAR} interpolation)')
      .superRefine((value, ctx) => {
        if (fromFile && !fromFile.interpolated.has(value) && !CERTIFICATE.test(value)) {
          ctx.addIssue({ code: 'custom', message: INLINE_SECRET_MESSAGE, params: { [INLINE_SECRET]: true } });
        }
      }),
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
