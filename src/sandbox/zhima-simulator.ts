import { setMaxListeners } from 'node:events';
import { randomBytes, createPrivateKey, createPublicKey } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { silentLogger, type Logger } from '../log.js';
import { answerBody, SUCCESS, signedFailure, type Answer, type AnswerSigner } from './zhima-sim/answer.js';
import { checkBizContent, type BizRules } from './zhima-sim/biz-check.js';
import { mergeFaults, NO_FAULTS, planFaults, seededRandom, type FaultPlan, type ZhimaFaults } from './zhima-sim/faults.js';
import { checkGatewayRequest, type GatewayIdentity } from './zhima-sim/gateway-check.js';
import { formParams, readBody, sendJson, sendText } from './zhima-sim/http-io.js';
import { EffectLedger, type ZhimaSimulatorStats } from './zhima-sim/ledger.js';

export { NO_FAULTS as ZHIMA_NO_FAULTS, zhimaFaultsSchema, type ZhimaFaults, type ZhimaFaultsInput } from './zhima-sim/faults.js';
export type { ZhimaEffect, ZhimaSimulatorStats } from './zhima-sim/ledger.js';

/**
 * A loopback Alipay gateway for `zhima.data.state.data.sync`, for tests, the demo and chaos
 * runs. It checks every request as the real gateway does (placement, common parameters,
 * Beijing timestamp within 15 minutes, RSA2 signature with the app public key, biz_content
 * rules), signs its answers with the gateway key in the real envelope (alipay-sdk with
 * validateSign accepts them), keeps one effect per out_biz_no and injects seeded faults.
 * `/__sim/stats`, `/__sim/faults` and `/__sim/reset` on the same port drive it from outside.
 */
export interface ZhimaSimulatorOptions extends BizRules {
  /** 0 or unset picks a free port. */
  port?: number;
  host?: string;
  appId: string;
  /** The app public key the merchant "uploaded": verifies request signatures. */
  appPublicKeyPem: string;
  /** The gateway's private key: signs answers (clients verify with its public key). */
  gatewayPrivateKeyPem: string;
  faults?: Partial<ZhimaFaults>;
  /** PRNG seed for fault decisions (default 1). */
  seed?: number;
  logger?: Logger;
  /** Gateway clock for the timestamp check and effect times. */
  now?: () => Date;
  /** If set, app_auth_token must be one of these (else 20001 aop.invalid-app-auth-token). */
  appAuthTokens?: readonly string[];
  /** Cert mode: SNs the requests must carry, and the alipay_cert_sn sent with every signed answer. */
  cert?: { appCertSn: string; alipayRootCertSn: string; alipayCertSn: string };
}

export interface ZhimaSimulator {
  /** `http://127.0.0.1:<port>/gateway.do` */
  url: string;
  port: number;
  stats(): ZhimaSimulatorStats;
  faults(): ZhimaFaults;
  /** Merges a partial setting; throws on values out of range. */
  setFaults(faults: Partial<ZhimaFaults>): ZhimaFaults;
  /** Forgets every effect and counter and re-seeds the PRNG; faults stay as set. */
  reset(): void;
  close(): Promise<void>;
}

const GATEWAY_PATH = '/gateway.do';

export async function startZhimaSimulator(options: ZhimaSimulatorOptions): Promise<ZhimaSimulator> {
  const host = options.host ?? '127.0.0.1';
  const seed = options.seed ?? 1;
  const now = options.now ?? (() => new Date());
  const log = (options.logger ?? silentLogger()).child({ component: 'zhima-simulator' });
  const identity: GatewayIdentity = {
    appId: options.appId,
    appPublicKey: createPublicKey(options.appPublicKeyPem),
    now,
    ...(options.appAuthTokens && { appAuthTokens: options.appAuthTokens }),
    ...(options.cert && { certSns: options.cert }),
  };
  const signer: AnswerSigner = {
    key: createPrivateKey(options.gatewayPrivateKeyPem),
    ...(options.cert && { alipayCertSn: options.cert.alipayCertSn }),
  };
  let faults = mergeFaults(NO_FAULTS, options.faults);
  let random = seededRandom(seed);
  const ledger = new EffectLedger();
  const closing = new AbortController();
  // Every delayed answer listens for close: as many listeners as requests in flight.
  setMaxListeners(0, closing.signal);

  function answer(res: ServerResponse, reply: Answer, corrupt = false): void {
    log.debug({ code: reply.fields.code, subCode: reply.fields.sub_code }, 'answer');
    sendText(res, 200, answerBody(reply, signer, corrupt), { trace_id: randomBytes(15).toString('hex') });
  }

  /** Applies the "front door" faults; true when the request was consumed by one. */
  function frontDoor(plan: FaultPlan, res: ServerResponse): boolean {
    if (plan.before === 'http5xx') {
      ledger.countFault('http5xx');
      sendText(res, 502, '<html>502 Bad Gateway</html>');
      return true;
    }
    if (plan.before === 'hang') {
      // Never answer: the socket stays open until the client gives up or the simulator closes.
      ledger.countFault('hang');
      return true;
    }
    return false;
  }

  async function gateway(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const body = await readBody(req);
    if (body === undefined) return sendText(res, 413, '<html>413 Request Entity Too Large</html>');
    const receivedAt = now();
    ledger.countRequest();
    const plan = planFaults(faults, random);
    if (plan.delayMs > 0) await delay(plan.delayMs, undefined, { signal: closing.signal }).catch(() => undefined);
    if (closing.signal.aborted || frontDoor(plan, res)) return;
    const check = checkGatewayRequest({ query: url.searchParams, body: formParams(req, body) }, identity);
    if (!check.ok) {
      if (check.badSignature) ledger.countRejectedSignature();
      else ledger.countInvalid();
      return answer(res, check.answer);
    }
    const rawBiz = check.params.get('biz_content');
    const biz = checkBizContent(rawBiz, options);
    if (!biz.ok) {
      ledger.countInvalid();
      return answer(res, biz.answer);
    }
    if (plan.beforeEffect === 'code20000') {
      ledger.countFault('code20000');
      return answer(res, signedFailure('20000', 'isp.unknow-error', '系统繁忙'));
    }
    ledger.apply(biz.biz, rawBiz!, now(), receivedAt);
    if (plan.afterEffect === 'dropAfterCommit') {
      ledger.countFault('dropAfterCommit');
      res.socket?.destroy();
      return;
    }
    const corrupt = plan.afterEffect === 'corruptSignature';
    if (corrupt) ledger.countFault('corruptSignature');
    answer(res, { kind: 'signed', fields: SUCCESS }, corrupt);
  }

  const sim = {
    stats: (): ZhimaSimulatorStats => ledger.stats(),
    faults: (): ZhimaFaults => ({ ...faults }),
    setFaults(update: Partial<ZhimaFaults>): ZhimaFaults {
      faults = mergeFaults(faults, update);
      return { ...faults };
    },
    reset(): void {
      ledger.reset();
      random = seededRandom(seed);
    },
  };

  async function admin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method === 'GET' && path === '/__sim/stats') return sendJson(res, 200, sim.stats());
    if (req.method === 'GET' && path === '/__sim/faults') return sendJson(res, 200, sim.faults());
    if (req.method === 'POST' && path === '/__sim/reset') {
      sim.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (req.method === 'POST' && path === '/__sim/faults') {
      const body = await readBody(req);
      try {
        return sendJson(res, 200, sim.setFaults(JSON.parse(body?.toString('utf8') || '{}') as Partial<ZhimaFaults>));
      } catch (err) {
        return sendJson(res, 400, { error: err instanceof Error ? err.message : String(err) });
      }
    }
    return sendJson(res, 404, { error: `no admin route ${req.method} ${path}` });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (url.pathname.startsWith('/__sim/')) return admin(req, res, url.pathname);
    if (url.pathname !== GATEWAY_PATH) return sendText(res, 404, '<html>404 Not Found</html>');
    if (req.method !== 'POST') return sendText(res, 405, '<html>405 Method Not Allowed</html>', { allow: 'POST' });
    return gateway(req, res, url);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      log.error({ err }, 'simulator handler failed');
      if (!res.headersSent) sendText(res, 500, '<html>500 Internal Server Error</html>');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  async function close(): Promise<void> {
    closing.abort();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  return { url: `http://${host}:${port}${GATEWAY_PATH}`, port, ...sim, close };
}
