import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Agent, type Dispatcher } from 'undici';
import { resolveSecret } from '../../../src/config/secrets.js';
import type { BusinessEvent, EventCode } from '../../../src/core/events.js';
import { TRADE_CODES, VISIT_CODES } from '../../../src/core/events.js';
import type { AttemptInfo, DeliveryOutcome, PreviewResult, Sink, SinkDeps } from '../../../src/core/sink.js';
import { clipRemoteText, trustCounter, type AnswerTrust } from '../../../src/core/trust.js';
import type { Logger } from '../../../src/log.js';
import type { AntchainSinkConfig } from './config.js';
import { buildBusinessParams } from './request.js';
import { parseGatewayResponse } from './response.js';
import { classifyAnswer } from './result-codes.js';
import { RESPONSE_TOO_LARGE, sendRequest, type HttpAnswer } from './transport.js';
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
  const trusted = trustCounter(config.pauseAfterUntrustedAnswers);

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
    if (signal.aborted) {
      return { status: 'retry', info: { requestId: ready.reqMsgId, durationMs: 0 }, code: 'ABORTED', message: 'attempt abandoned before sending' };
    }
    const answer = await sendRequest(dispatcher, ready.signed.request, signal, {
      timeoutMs: config.timeout,
      maxResponseBytes: config.maxResponseBytes,
      capOption: `sinks.${name}.maxResponseBytes`,
    });
    const { outcome, trust } = answerOutcome(answer, { secret: credentials.accessSecret, reqMsgId: ready.reqMsgId, durationMs: Math.round(performance.now() - started) });
    if (outcome.status === 'delivered' && outcome.result?.token_status === 'TOKEN_FAILED') {
      logger.warn({ eventId: event.id, reqMsgId: ready.reqMsgId }, 'event processed but the token grant failed');
    }
    return trusted.judge(outcome, trust, UNTRUSTED_HINT);
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

/**
 * Remote messages may echo an account; keep phone numbers and e-mail addresses out of logs.
 * Both patterns are linear in the text's length:
 * - an address may only start where a run of address characters starts (the lookbehind), so
 *   a long run without '@' is scanned once instead of once per position in it (quadratic:
 *   22 s for 100k characters before);
 * - a phone-ish run (digits, spaces, dashes, ending in a digit) fails from a start only when
 *   no digit lies 6 or more places further in the run, so at most 6 starts per run fail and
 *   the first one that does not consumes the run.
 * Remote text is clipped where it is read (response.ts, by src/core/trust.ts), so logs never
 * see more than that of it.
 */
const EMAIL = /(?<![^\s@"',;:])[^\s@"',;:]+@[^\s@"',;:]+/g;
const PHONE = /\+?\d[\d\s-]{5,}\d/g;

export function maskPersonal(text: string | undefined): string | undefined {
  return text?.replace(EMAIL, '[redacted]').replace(PHONE, '[redacted]');
}

/** Answers that say nothing the sink can trust: a run of them pauses the sink (src/core/trust.ts). */
const UNTRUSTED_HINT = 'check the endpoint (a proxy or a login page in front of the gateway?) and accessSecret, which verifies the answers';

export interface AnswerContext {
  secret: string;
  reqMsgId: string;
  durationMs: number;
}

/**
 * One HTTP answer → the attempt's outcome, and what it says about trusting the gateway. Pure:
 * the hostile-answer tests feed it directly. Untrusted: an OK answer whose sign is missing or
 * wrong or that is signed for another attempt, a body that is no gateway answer (HTML, not
 * JSON, no `response`) under a status below 400, a body over the size cap. An error answer
 * (`result_code` other than OK, never signed by the gateway) is trusted as the protocol
 * allows; HTTP error statuses and transport failures say nothing either way.
 */
export function answerOutcome(answer: HttpAnswer, ctx: AnswerContext): { outcome: DeliveryOutcome; trust: AnswerTrust } {
  const info: AttemptInfo = { requestId: ctx.reqMsgId, durationMs: ctx.durationMs };
  if (!answer.ok) {
    const outcome: DeliveryOutcome = { status: 'retry', info, code: answer.code, message: clipRemoteText(answer.message) };
    return { outcome, trust: answer.code === RESPONSE_TOO_LARGE ? 'untrusted' : 'neutral' };
  }
  info.httpStatus = answer.status;
  const parsed = parseGatewayResponse(answer.body, ctx.secret);
  let trust: AnswerTrust = answer.status >= 400 ? 'neutral' : 'untrusted';
  if (parsed.kind === 'response') {
    if (parsed.resultCode !== undefined) info.remoteCode = parsed.resultCode;
    if (parsed.fields.event_status !== undefined) info.remoteSubCode = parsed.fields.event_status;
    const remoteMessage = parsed.resultMsg || parsed.fields.message;
    if (remoteMessage) info.remoteMessage = remoteMessage;
    if (parsed.resultCode !== undefined) {
      const forThisAttempt = parsed.reqMsgId === undefined || parsed.reqMsgId === ctx.reqMsgId;
      trust = parsed.signValid === false || (parsed.signValid === true && !forThisAttempt) ? 'untrusted' : 'trusted';
    }
  }
  const verdict = classifyAnswer(answer.status, parsed, ctx.reqMsgId);
  if (verdict.outcome === 'delivered') return { outcome: { status: 'delivered', info, result: verdict.result }, trust };
  // Verdict messages quote remote text (each part clipped already); the whole stays bounded too.
  const message = clipRemoteText(verdict.message);
  if (verdict.outcome === 'retry') {
    const retry: DeliveryOutcome = { status: 'retry', info, code: verdict.code, message };
    return { outcome: answer.retryAfterMs === undefined ? retry : { ...retry, afterMs: answer.retryAfterMs }, trust };
  }
  return { outcome: { status: verdict.outcome, info, code: verdict.code, message }, trust };
}
