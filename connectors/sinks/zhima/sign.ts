import { sign as rsaSign, type KeyObject } from 'node:crypto';

/**
 * RSA2 request signing (Alipay OpenAPI v2): every parameter sent, query and body together,
 * except `sign`; empty values dropped; names in ascending code-unit order; `name=value`
 * joined by `&` with RAW values (no URL encoding); UTF-8; RSASSA-PKCS1-v1_5 over SHA-256;
 * standard base64.
 */

export type Param = readonly [name: string, value: string];

/** Drops parameters the gateway would drop (empty values), keeping the given order. */
export function nonEmpty(params: readonly Param[]): Param[] {
  return params.filter(([, value]) => value !== '');
}

/** The string the gateway rebuilds and verifies. */
export function canonicalString(params: readonly Param[]): string {
  return nonEmpty(params)
    .filter(([name]) => name !== 'sign')
    // Names are lower-case ASCII with `_`, so a code-unit sort is the byte order Alipay specifies.
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** Signs on the calling thread; fine for preview and tests. */
export function signSync(canonical: string, key: KeyObject): string {
  return rsaSign('sha256', Buffer.from(canonical, 'utf8'), key).toString('base64');
}

/**
 * Signs on libuv's threadpool: an RSA-2048 private-key operation costs about 0.25 ms of
 * CPU, which at a few thousand deliveries per second would otherwise stall the event loop.
 */
export function signAsync(canonical: string, key: KeyObject): Promise<string> {
  return new Promise((resolve, reject) => {
    rsaSign('sha256', Buffer.from(canonical, 'utf8'), key, (err, signature) => {
      if (err) reject(err);
      else resolve(signature.toString('base64'));
    });
  });
}
