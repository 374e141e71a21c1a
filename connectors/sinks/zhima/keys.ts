import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';

/**
 * Key loading. Alipay's console hands out keys as PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
 * `PRIVATE KEY`; SPKI `PUBLIC KEY`) or as a bare base64 body without armour. node:crypto
 * detects the PEM kinds itself; a bare body is DER, whose container we try in turn.
 * Errors name the config path and never quote the key text.
 */

export class KeyError extends Error {
  override readonly name = 'KeyError';
}

const BARE_BASE64 = /^[A-Za-z0-9+/=\s]+$/;

function der(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (trimmed.includes('-----BEGIN') || !BARE_BASE64.test(trimmed)) return undefined;
  return Buffer.from(trimmed.replace(/\s+/g, ''), 'base64');
}

function firstOf<T>(attempts: Array<() => T>): T | undefined {
  for (const attempt of attempts) {
    try {
      return attempt();
    } catch {
      // try the next container format
    }
  }
  return undefined;
}

function requireRsa(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'rsa') {
    throw new KeyError(`${what}: expected an RSA key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  return key;
}

/** Parses the app private key (PKCS#1 or PKCS#8, PEM or bare base64). */
export function parsePrivateKey(text: string, what: string): KeyObject {
  const body = der(text);
  const key = body
    ? firstOf([
        () => createPrivateKey({ key: body, format: 'der', type: 'pkcs8' }),
        () => createPrivateKey({ key: body, format: 'der', type: 'pkcs1' }),
      ])
    : firstOf([() => createPrivateKey({ key: text, format: 'pem' })]);
  if (!key) throw new KeyError(`${what}: not a valid RSA private key (expected PEM PKCS#1/PKCS#8 or bare base64)`);
  return requireRsa(key, what);
}

/** Parses an RSA public key (SPKI or PKCS#1, PEM or bare base64). Certificates are handled in cert.ts. */
export function parsePublicKey(text: string, what: string): KeyObject {
  if (/-----BEGIN (RSA )?PRIVATE KEY-----/.test(text)) {
    // createPublicKey would silently derive the public half; a private key here is a config mix-up.
    throw new KeyError(`${what}: expected a public key, got a private key`);
  }
  const body = der(text);
  const key = body
    ? firstOf([
        () => createPublicKey({ key: body, format: 'der', type: 'spki' }),
        () => createPublicKey({ key: body, format: 'der', type: 'pkcs1' }),
      ])
    : firstOf([() => createPublicKey({ key: text, format: 'pem' })]);
  if (!key) throw new KeyError(`${what}: not a valid RSA public key (expected PEM or bare base64 SPKI)`);
  return requireRsa(key, what);
}
