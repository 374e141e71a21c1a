import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Agent, type Dispatcher } from 'undici';
import { resolveSecret } from '../../../src/config/secrets.js';
import type { BusinessEvent, EventCode } from '../../../src/core/events.js';
import { TRADE_CODES, VISIT_CODES } from '../../../src/core/events.js';
import type { AttemptInfo, DeliveryOutcome, PreviewResult, Sink, SinkDeps } from '../../../src/core/sink.js';
import type { Logger } from '../../../src/log.js';
import type { AntchainSinkConfig } from './config.js';
import { buildBusinessParams } from './request.js';
import { parseGatewayResponse } from './response.js';
import { classifyAnswer } from './result-codes.js';
import { sendRequest } from './transport.js';
import { gatewayUrl, signRequest, type SignedRequest } from './wire.js';

export type AntchainSinkDeps = SinkDeps;

/** Why a request cannot be built: the sink has nothing to do, or the event is unfit as it is. */
type Prepared =
  | { status: 'ready'; signed: SignedRequest; reqMsgId: string }
  | { status: 'not_applicable'; reason: string }
  | { status: 'rejected'; code: 'INVALID_EVENT'; message: string };

export const INVALID_EVENT = 'INVALID_EVENT';

export function createAntchainSink(config: AntchainSinkConfig, deps: AntchainSinkDeps): Sink {
  const name = deps.name ?? 'antchain';
  const env = deps.env ?? process.env;
  const credentials = {
    accessKey: resolveSecret(config.accessKey, `sinks.${name}.accessKey`, env),
    accessSecret: resolveSecret(config.accessSecret, `sinks.${name}.accessSecret`, env),
  };
  const url = gatewayUrl(config.endpoint);
  const codes = handledCodes(config);
  const now = deps.now ?? (() => new Date());
  const nonce = deps.nonce ?? (() => randomUUID().replaceAll('-', ''));
  const ownsDispatcher = deps.dispatcher === undefined;
  const dispatcher =
    deps.dispatcher ??
    new Agent({ keepAliveTimeout: 4_000, connections: config.concurrency, connect: { timeout: Math.min(config.timeout, 10_000) } });
  const logger = deps.logger.child({ component: 'sink', sink: name, kind: 'antchain' });

  function prepare(event: BusinessEvent, at: Date, reqMsgId: string): Prepared {
    if (!codes.has(event.code)) return { status: 'not_applicable', reason: `sink ${name} does not send ${event.code}` };
    const business = buildBusinessParams(event, config);
    if (!business.ok) return { status: 'rejected', code: INVALID_EVENT, message: business.message };
    const wire = signRequest(business.params, { at, reqMsgId }, credentials, {
      url,
      sdkVersion: config.sdkVersion,
      baseSdkVersion: config.baseSdkVersion,
    });
    if (!wire.ok) return { status: 'rejected', code: INVALID_EVENT, message: wire.message };
    return { status: 'ready', signed: wire.signed, reqMsgId };
  }

  async function attempt(event: BusinessEvent, ready: Extract<Prepared, { status: 'ready' }>, signal: AbortSignal): Promise<DeliveryOutcome> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    if (signal.aborted) {
      return { status: 'retry', info: { requestId: ready.reqMsgId, durationMs: 0 }, code: 'ABORTED', message: 'attempt abandoned before sending' };
    }
    const answer = await sendRequest(dispatcher, ready.signed.request, signal, config.timeout);
    if (!answer.ok) {
      return { status: 'retry', info: { requestId: ready.reqMsgId, durationMs: elapsed() }, code: answer.code, message: answer.message };
    }
    const parsed = parseGatewayResponse(answer.body, credentials.accessSecret);
    const info: AttemptInfo = { requestId: ready.reqMsgId, httpStatus: answer.status, durationMs: elapsed() };
    if (parsed.kind === 'response') {
      if (parsed.resultCode !== undefined) info.remoteCode = parsed.resultCode;
      if (parsed.fields.event_status !== undefined) info.remoteSubCode = parsed.fields.event_status;
      const remoteMessage = parsed.resultMsg || parsed.fields.message;
      if (remoteMessage) info.remoteMessage = remoteMessage;
    }
    const verdict = classifyAnswer(answer.status, parsed, ready.reqMsgId);
    if (verdict.outcome === 'delivered') {
      if (verdict.result.token_status === 'TOKEN_FAILED') {
        logger.warn({ eventId: event.id, reqMsgId: ready.reqMsgId }, 'event processed but the token grant failed');
      }
      return { status: 'delivered', info, result: verdict.result };
    }
    if (verdict.outcome === 'retry') {
      const retry: DeliveryOutcome = { status: 'retry', info, code: verdict.code, message: verdict.message };
      return answer.retryAfterMs === undefined ? retry : { ...retry, afterMs: answer.retryAfterMs };
    }
    return { status: verdict.outcome, info, code: verdict.code, message: verdict.message };
  }

  const sink = {
    name,
    kind: 'antchain',
    handles: (event: BusinessEvent) => codes.has(event.code),

    async deliver(event: BusinessEvent, signal: AbortSignal): Promise<DeliveryOutcome> {
      const prepared = prepare(event, now(), nonce());
      if (prepared.status === 'not_applicable') return prepared;
      const outcome =
        prepared.status === 'rejected'
          ? ({ status: 'rejected', info: { durationMs: 0 }, code: prepared.code, message: prepared.message } as const)
          : await attempt(event, prepared, signal);
      logOutcome(logger, event, outcome);
      return outcome;
    },

    preview(event: BusinessEvent, options: { at: Date; nonce: string }): PreviewResult {
      const prepared = prepare(event, options.at, options.nonce);
      if (prepared.status === 'ready') return { status: 'request', request: prepared.signed.request };
      return prepared;
    },

    async close(): Promise<void> {
      if (ownsDispatcher) await dispatcher.close();
    },
  } satisfies Sink;
  return sink;
}

/** TRADE_CONFIRM only exists for manual confirmation; `events` narrows the set further. */
function handledCodes(config: AntchainSinkConfig): Set<EventCode> {
  const trade = TRADE_CODES.filter((code) => code !== 'TRADE_CONFIRM' || config.confirmType === 'TWO_STEP_MANUAL');
  const all: EventCode[] = [...trade, ...VISIT_CODES];
  return new Set(config.events ? all.filter((code) => config.events!.includes(code)) : all);
}

/** One line per attempt, with what support needs (req_msg_id) and nothing personal or secret. */
function logOutcome(logger: Logger, event: BusinessEvent, outcome: DeliveryOutcome): void {
  if (outcome.status === 'not_applicable') return;
  const fields = {
    eventId: event.id,
    eventCode: event.code,
    outcome: outcome.status,
    code: 'code' in outcome ? outcome.code : undefined,
    reqMsgId: outcome.info.requestId,
    httpStatus: outcome.info.httpStatus,
    resultCode: outcome.info.remoteCode,
    eventStatus: outcome.info.remoteSubCode,
    remoteMessage: maskPersonal(outcome.info.remoteMessage ?? ('message' in outcome ? outcome.message : undefined)),
    durationMs: outcome.info.durationMs,
  };
  if (outcome.status === 'delivered') logger.debug(fields, 'antchain event delivered');
  else if (outcome.status === 'retry') logger.info(fields, 'antchain attempt to be retried');
  else if (outcome.status === 'rejected') logger.warn(fields, 'antchain event rejected');
  else logger.error(fields, 'antchain sink failure');
}

/** Remote messages may echo an account; keep phone numbers and e-mail addresses out of logs. */
export function maskPersonal(text: string | undefined): string | undefined {
  return text?.replace(/[^\s@"',;:]+@[^\s@"',;:]+/g, '[redacted]').replace(/\+?\d[\d\s-]{5,}\d/g, '[redacted]');
}
