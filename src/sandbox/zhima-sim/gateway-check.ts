import { verify as rsaVerify, type KeyObject } from 'node:crypto';
import { signedFailure, unsignedFailure, type Answer } from './answer.js';

/**
 * The gateway's checks on the common parameters and the RSA2 signature, in the order a
 * request meets them: method and app first (answered with the old unsigned error_response,
 * as the real gateway does before it knows which API is called), then the remaining
 * protocol parameters, then the signature over the merged, sorted, non-empty parameters.
 */

export const METHOD = 'zhima.data.state.data.sync';
const MAX_SKEW_MS = 15 * 60_000;
const BEIJING_OFFSET_MS = 8 * 3_600_000;
/** Where each parameter must travel. app_auth_token may go either way: the Java SDK posts it. */
const QUERY_ONLY = ['app_id', 'method', 'format', 'charset', 'sign_type', 'sign', 'timestamp', 'version', 'app_cert_sn', 'alipay_root_cert_sn'];
const MAX_LENGTH: Record<string, number> = { app_id: 32, method: 128, format: 40, charset: 10, sign_type: 10, sign: 344, version: 3, app_auth_token: 40 };
const REQUIRED: ReadonlyArray<[name: string, subCode: string]> = [
  ['sign', 'isv.missing-signature'],
  ['sign_type', 'isv.missing-signature-type'],
  ['timestamp', 'isv.missing-timestamp'],
  ['version', 'isv.missing-version'],
];
const CHARSET_MSG = '验签出错，请确认charset参数放在了URL查询字符串中且各参数值使用charset参数指示的字符集编码';

export interface GatewayIdentity {
  appId: string;
  appPublicKey: KeyObject;
  now: () => Date;
  /** If set, app_auth_token must be one of these. */
  appAuthTokens?: readonly string[];
  /** If set (cert mode), the request must carry these SNs. */
  certSns?: { appCertSn: string; alipayRootCertSn: string };
}

export interface Placed {
  query: URLSearchParams;
  body: URLSearchParams;
}

export type GatewayCheck =
  | { ok: true; params: Map<string, string> }
  | { ok: false; answer: Answer; badSignature?: true };

const fail = (answer: Answer): GatewayCheck => ({ ok: false, answer });
const invalid = (subCode: string, subMsg: string): GatewayCheck => fail(signedFailure('40002', subCode, subMsg));

/** Parses "yyyy-MM-dd HH:mm:ss" as Beijing time; undefined if malformed. */
export function parseBeijing(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const utc = Date.UTC(y, mo - 1, d, h, mi, s);
  const t = new Date(utc);
  // Date.UTC rolls 2024-02-30 over to March; a real calendar date round-trips.
  if (t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) return undefined;
  return utc - BEIJING_OFFSET_MS;
}

/** Merges query and body; a name given twice is refused (which copy would be signed?). */
function merge(placed: Placed): { params: Map<string, string> } | { error: GatewayCheck } {
  const params = new Map<string, string>();
  for (const [where, source] of [['query', placed.query], ['body', placed.body]] as const) {
    for (const [name, value] of source) {
      if (params.has(name)) return { error: invalid('isv.invalid-parameter', `参数${name}重复`) };
      if (where === 'body' && QUERY_ONLY.includes(name)) {
        return { error: name === 'charset' ? invalid('isv.invalid-signature', CHARSET_MSG) : invalid('isv.invalid-parameter', `simulator: ${name} must be in the URL query`) };
      }
      if (where === 'query' && name === 'biz_content') return { error: invalid('isv.invalid-parameter', 'simulator: biz_content must be in the body') };
      params.set(name, value);
    }
  }
  return { params };
}

function checkIdentity(p: Map<string, string>, id: GatewayIdentity): GatewayCheck | undefined {
  const method = p.get('method');
  if (!method) return fail(unsignedFailure('40001', 'isv.missing-method', '缺少方法名参数'));
  if (method !== METHOD) return fail(unsignedFailure('40002', 'isv.invalid-method', '不存在的方法名'));
  const appId = p.get('app_id');
  if (!appId) return fail(unsignedFailure('40001', 'isv.missing-app-id', '缺少AppID参数'));
  if (appId !== id.appId) return fail(unsignedFailure('40002', 'isv.invalid-app-id', '无效的AppID参数'));
  return undefined;
}

function checkProtocol(p: Map<string, string>, id: GatewayIdentity): GatewayCheck | undefined {
  for (const [name, subCode] of REQUIRED) {
    if (!p.get(name)) return fail(signedFailure('40001', subCode, `缺少${name}参数`));
  }
  if (!p.get('charset')) return invalid('isv.invalid-signature', CHARSET_MSG);
  for (const [name, max] of Object.entries(MAX_LENGTH)) {
    // (timestamp has its own format check below, with its own sub_code)
    if ((p.get(name)?.length ?? 0) > max) return invalid('isv.invalid-parameter', `参数${name}超长`);
  }
  if (p.get('sign_type') !== 'RSA2') return invalid('isv.invalid-signature-type', '无效的签名类型');
  if (p.get('charset')!.toLowerCase() !== 'utf-8') return invalid('isv.invalid-charset', '字符集错误');
  const format = p.get('format');
  if (format && format.toUpperCase() !== 'JSON') return invalid('isv.invalid-format', '无效的数据格式');
  if (p.get('version') !== '1.0') return invalid('isv.invalid-parameter', '无效的版本号');
  const at = parseBeijing(p.get('timestamp')!);
  if (at === undefined || Math.abs(at - id.now().getTime()) > MAX_SKEW_MS) return invalid('isv.invalid-timestamp', '非法的时间戳参数');
  const token = p.get('app_auth_token');
  if (token && id.appAuthTokens && !id.appAuthTokens.includes(token)) {
    return fail(signedFailure('20001', 'aop.invalid-app-auth-token', '无效的应用授权令牌'));
  }
  if (id.certSns && (p.get('app_cert_sn') !== id.certSns.appCertSn || p.get('alipay_root_cert_sn') !== id.certSns.alipayRootCertSn)) {
    return invalid('isv.invalid-cert-sn', 'simulator: app_cert_sn or alipay_root_cert_sn does not match the configured certificates');
  }
  return undefined;
}

/** The gateway's canonical string: sorted `k=v` with raw values, sign and empty values left out. */
export function gatewayCanonical(p: Map<string, string>): string {
  return [...p.entries()]
    .filter(([name, value]) => name !== 'sign' && value !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function checkSignature(p: Map<string, string>, key: KeyObject): GatewayCheck | undefined {
  const canonical = gatewayCanonical(p);
  const ok = rsaVerify('sha256', Buffer.from(canonical, 'utf8'), key, Buffer.from(p.get('sign')!, 'base64'));
  if (ok) return undefined;
  // The real gateway echoes its canonical string, HTML-escaped, so integrators can diff it with theirs.
  const echo = canonical.replaceAll('&', '&amp;');
  const subMsg = `验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：${echo}`;
  return { ok: false, answer: signedFailure('40002', 'isv.invalid-signature', subMsg), badSignature: true };
}

export function checkGatewayRequest(placed: Placed, id: GatewayIdentity): GatewayCheck {
  const merged = merge(placed);
  if ('error' in merged) {
    return checkIdentity(new Map([...placed.query, ...placed.body]), id) ?? merged.error;
  }
  const p = merged.params;
  const problem = checkIdentity(p, id) ?? checkProtocol(p, id) ?? checkSignature(p, id.appPublicKey);
  if (problem) return problem;
  const empty = [...p.entries()].find(([, value]) => value === '');
  if (empty) {
    // The gateway drops empty values, so this request verified without it; we refuse it anyway
    // so a client that sends empties (which breaks as soon as it also signs them) is caught here.
    return invalid('isv.invalid-parameter', `simulator: parameter ${empty[0]} is empty; omit it instead`);
  }
  return { ok: true, params: p };
}
