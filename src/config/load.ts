import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';
import { checkingInlineSecrets, INLINE_SECRET } from './secrets.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly problems: string[] = [],
  ) {
    super(problems.length ? `${message}:\n  - ${problems.join('\n  - ')}` : message);
  }
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${NAME}` (or `${NAME:-default}`) in every string of the parsed YAML tree.
 * Interpolating after parsing means a secret containing `:` or `#` cannot break the YAML.
 * Every string a reference went into lands in `interpolated` (secrets must be among them).
 */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: string, missing: string[], interpolated?: Set<string>): unknown {
  if (typeof value === 'string') {
    let replaced = false;
    const out = value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      replaced = true;
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      missing.push(`${path || '(root)'}: environment variable ${name} is not set`);
      return '';
    });
    if (replaced) interpolated?.add(out);
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${path}[${i}]`, missing, interpolated));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, env, path ? `${path}.${k}` : k, missing, interpolated)]),
    );
  }
  return value;
}

type Issue = z.core.$ZodIssue;

/**
 * A union none of whose members matched reports "Invalid input" with every member's
 * issues. When all members but one failed on the value's type alone ("off" or a duration,
 * given "30sec"), that one member's issues say what is wrong: report those.
 */
function flattenUnions(issues: readonly Issue[]): Issue[] {
  return issues.flatMap((issue): Issue[] => {
    if (issue.code !== 'invalid_union' || !('errors' in issue) || !issue.errors.length) return [issue];
    const typeOnly = (branch: readonly Issue[]) => branch.every((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value'));
    const telling = issue.errors.filter((branch) => !typeOnly(branch));
    if (telling.length !== 1) return [issue];
    return flattenUnions(telling[0]!.map((i) => ({ ...i, path: [...issue.path, ...i.path] }) as Issue));
  });
}

function isInlineSecret(issue: Issue): boolean {
  return issue.code === 'custom' && (issue.params as Record<string, unknown> | undefined)?.[INLINE_SECRET] === true;
}

/**
 * AntChain's accessKey is the key's id, sent in clear with every request (like Zhima's appId):
 * written into the file it gives nothing away. Its secret is accessSecret.
 */
function isPublicId(issue: Issue): boolean {
  return issue.path.at(-1) === 'accessKey';
}

const warnings = new WeakMap<object, readonly string[]>();

/** What `parseConfig` accepted but the operator should hear about (inline secrets under allowInlineSecrets). */
export function configWarnings(config: Config): readonly string[] {
  return warnings.get(config) ?? [];
}

function issuePath(issue: Issue): string {
  return issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(root)';
}

function formatIssues(issues: readonly Issue[]): string[] {
  return issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${issuePath(issue)}: ${message}`;
  });
}

/**
 * Parses and validates config text. Throws ConfigError listing every problem with its path.
 * A secret written into the text itself (no `${ENV}` in it, no `{ env }` or `{ file }`) is
 * one of those problems, unless the text says `allowInlineSecrets: true`: then it is
 * accepted and `configWarnings` names it.
 */
export function parseConfig(text: string, env: NodeJS.ProcessEnv = process.env, origin = 'config'): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) throw new ConfigError(`${origin} is not valid YAML`, doc.errors.map((e) => e.message.split('\n')[0]!));
  const missing: string[] = [];
  const interpolated = new Set<string>();
  const raw = interpolate(doc.toJS(), env, '', missing, interpolated);
  if (missing.length) throw new ConfigError(`${origin} refers to unset environment variables`, missing);
  const checked = checkingInlineSecrets(interpolated, () => configSchema.safeParse(raw));
  if (checked.success) return deepFreeze(checked.data);
  const allowInline = (raw as { allowInlineSecrets?: unknown } | null)?.allowInlineSecrets === true;
  const issues = flattenUnions(checked.error.issues);
  const inline = issues.filter((i) => isInlineSecret(i) && !isPublicId(i));
  const problems = issues.filter((i) => !isInlineSecret(i) || (!allowInline && !isPublicId(i)));
  if (problems.length) throw new ConfigError(`${origin} is invalid`, formatIssues(problems));
  // Only accepted inline values were refused: validate again without the check.
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(`${origin} is invalid`, formatIssues(flattenUnions(result.error.issues)));
  const config = deepFreeze(result.data);
  if (inline.length) {
    warnings.set(config, inline.map((i) => `${issuePath(i)}: a secret written into ${origin} (accepted: allowInlineSecrets is true); move it to an environment variable or a file`));
  }
  return config;
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseConfig(text, env, file);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
