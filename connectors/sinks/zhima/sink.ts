import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Agent } from 'undici';
import type { BusinessEvent } from '../../../src/core/events.js';
import type { DeliveryOutcome, PreviewOptions, PreviewResult, Sink, SinkDeps } from '../../../src/core/sink.js';
import { trustCounter } from '../../../src/core/trust.js';
import type { ZhimaSinkConfig } from './config.js';
import { send } from './http.js';
import { scrubUserIds } from './response.js';
import { loadSinkMaterial } from './material.js';
import { attemptResult, type AttemptResult } from './outcome.js';
import { buildBizContent } from './request.js';
import { signAsync, signSync } from './sign.js';
import { preparedRequest, unsignedCall } from './wire.js';

export interface ZhimaSinkDeps extends SinkDeps {
  /** Config path used in error messages (default `sinks.<name>`). */
  configPath?: string;
}

/**
 * A run of answers that fail verification or cannot be read (pauseAfterUntrustedAnswers in a
 * row) points at the Alipay public key (wrong or rotated) or at something in front of the
 * gateway, not at one mangled answer: the dispatcher pauses the sink (src/core/trust.ts).
 */
const UNTRUSTED_HINT = 'check alipayPublicKey (or certMode: a rotated Alipay certificate?) and the endpoint (a proxy or a login page in front of the gateway?)';

const randomRequestId = (): string => randomBytes(16).toString('hex');

export function createZhimaSink(config: ZhimaSinkConfig, deps: ZhimaSinkDeps): Sink {
  const name = deps.name ?? 'zhima';
  const configPath = deps.configPath ?? `sinks.${name}`;
  const material = loadSinkMaterial(config, configPath, deps.env ?? process.env);
  const log = deps.logger.child({ component: 'sink', sink: name, kind: 'zhima' });
  const now = deps.now ?? (() => new Date());
  const nonce = deps.nonce ?? randomRequestId;
  const ownAgent = deps.dispatcher
    ? undefined
    : new Agent({ connections: config.concurrency, keepAliveTimeout: 30_000, connect: { timeout: Math.min(config.timeout, 10_000) } });
  const dispatcher = deps.dispatcher ?? ownAgent!;
  const trusted = trustCounter(config.pauseAfterUntrustedAnswers);

  function handles(event: BusinessEvent): boolean {
    if (event.kind !== 'TRADE') return false;
    if (config.events && !config.events.includes(event.code)) return false;
    return (config.states as Partial<Record<string, string>>)[event.code] !== undefined;
  }

  /** Turns a run of untrusted answers into a sink failure (see UNTRUSTED_HINT above). */
  function judge({ outcome, trust }: AttemptResult): DeliveryOutcome {
    return trusted.judge(outcome, trust, UNTRUSTED_HINT);
  }

  function record(event: BusinessEvent, outcome: DeliveryOutcome): void {
    if (outcome.status === 'not_applicable') {
      log.debug({ eventId: event.id, eventCode: event.code, outcome: outcome.status, reason: outcome.reason }, 'not applicable');
      return;
    }
    const { info } = outcome;
    // The same field names and messages as the AntChain sink's lines (the child logger says which sink).
    const fields = {
      eventId: event.id,
      eventCode: event.code,
      outcome: outcome.status,
      outcomeCode: outcome.status === 'delivered' ? undefined : outcome.code,
      requestId: info.requestId,
      httpStatus: info.httpStatus,
      remoteCode: info.remoteCode,
      remoteSubCode: info.remoteSubCode,
      remoteMessage: info.remoteMessage === undefined ? undefined : scrubUserIds(info.remoteMessage),
      durationMs: info.durationMs,
    };
    if (outcome.status === 'delivered') log.debug(fields, 'event delivered');
    else if (outcome.status === 'retry') log.info(fields, 'attempt to be retried');
    else if (outcome.status === 'rejected') log.warn(fields, 'event rejected');
    else log.error(fields, 'sink failure');
  }

  async function attempt(bizContent: string, signal: AbortSignal): Promise<AttemptResult> {
    const requestId = nonce();
    const started = performance.now();
    const elapsed = (): number => performance.now() - started;
    if (signal.aborted) {
      const outcome = { status: 'retry', info: { requestId, durationMs: 0 }, code: 'ABORTED', message: 'attempt abandoned before sending' } as const;
      return { outcome, trust: 'neutral' };
    }
    // A fresh timestamp and signature on every attempt: the gateway refuses stale timestamps.
    const call = unsignedCall(material.common, bizContent, now());
    let sign: string;
    try {
      sign = await signAsync(call.canonical, material.privateKey);
    } catch (err) {
      const message = `signing failed: ${(err as Error).message}`;
      return { outcome: { status: 'sink_failure', info: { requestId, durationMs: elapsed() }, code: 'SIGN_FAILED', message }, trust: 'neutral' };
    }
    const req = preparedRequest(config.endpoint, call, sign, requestId);
    const http = await send(req, {
      dispatcher,
      timeoutMs: config.timeout,
      signal,
      maxResponseBytes: config.maxResponseBytes,
      capOption: `${configPath}.maxResponseBytes`,
    });
    return attemptResult({ requestId, durationMs: elapsed() }, http, material.verify);
  }

  async function deliver(event: BusinessEvent, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (!handles(event)) return { status: 'not_applicable', reason: `sink ${name} does not handle ${event.code}` };
    const built = buildBizContent(config, event);
    let outcome: DeliveryOutcome;
    if (built.status === 'ok') outcome = judge(await attempt(built.bizContent, signal));
    else if (built.status === 'rejected') outcome = { ...built, info: { durationMs: 0 } };
    else outcome = built;
    record(event, outcome);
    return outcome;
  }

  function preview(event: BusinessEvent, options: PreviewOptions): PreviewResult {
    if (!handles(event)) return { status: 'not_applicable', reason: `sink ${name} does not handle ${event.code}` };
    const built = buildBizContent(config, event);
    if (built.status !== 'ok') return built;
    const call = unsignedCall(material.common, built.bizContent, options.at);
    const sign = signSync(call.canonical, material.privateKey);
    return { status: 'request', request: preparedRequest(config.endpoint, call, sign, options.nonce) };
  }

  async function close(): Promise<void> {
    await ownAgent?.close();
  }

  return { name, kind: 'zhima', handles, deliver, preview, close } satisfies Sink;
}
