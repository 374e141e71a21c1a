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
  // The same field names and messages as the Zhima sink's lines (the child logger says which sink).
  const fields = {
    eventId: event.id,
    eventCode: event.code,
    outcome: outcome.status,
    outcomeCode: 'code' in outcome ? outcome.code : undefined,
    requestId: outcome.info.requestId, // req_msg_id: quote it to AntChain support
    httpStatus: outcome.info.httpStatus,
    remoteCode: outcome.info.remoteCode, // result_code
    remoteSubCode: outcome.info.remoteSubCode, // event_status
    remoteMessage: maskPersonal(outcome.info.remoteMessage ?? ('message' in outcome ? outcome.message : undefined)),
    durationMs: outcome.info.durationMs,
  };
  if (outcome.status === 'delivered') logger.debug(fields, 'event delivered');
  else if (outcome.status === 'retry') logger.info(fields, 'attempt to be retried');
  else if (outcome.status === 'rejected') logger.warn(fields, 'event rejected');
  else logger.error(fields, 'sink failure');
}

/**
 * Remote messages may echo an account; keep phone numbers and e-mail addresses out of logs.
 * What is masked is what the patterns `[^\s@"',;:]+@[^\s@"',;:]+` (an address) and then
 * `\+?\d[\d\s-]{5,}\d` (a phone-ish run) match, but found in one linear pass each: as
 * regular expressions the first was quadratic on a long run without '@' (22 s for 100k
 * characters) and the second overflows V8's backtracking stack on a long run of digits and
 * spaces. Remote text is clipped where it is read (response.ts, by src/core/trust.ts), so
 * logs never see more than that of it anyway.
 */
export function maskPersonal(text: string | undefined): string | undefined {
  return text === undefined ? undefined : maskPhones(maskAddresses(text));
}

const REDACTED = '[redacted]';

/** `\s` of JavaScript regular expressions. */
function isSpace(c: number): boolean {
  return (
    c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff
  );
}

const ADDRESS = 1;
const PHONE_RUN = 2;
const DIGIT = 4;
/** Character classes of ASCII by code; everything above is an address character unless a space. */
const ASCII_CLASS = Uint8Array.from({ length: 128 }, (_, c) => {
  const digit = c >= 0x30 && c <= 0x39;
  const address = !(isSpace(c) || '@"\',;:'.includes(String.fromCharCode(c)));
  return (address ? ADDRESS : 0) | (digit || isSpace(c) || c === 0x2d ? PHONE_RUN : 0) | (digit ? DIGIT : 0);
});

function classOf(c: number): number {
  if (c < 128) return ASCII_CLASS[c]!;
  return isSpace(c) ? PHONE_RUN : ADDRESS;
}

/** Not whitespace, `@`, `"`, `'`, `,`, `;` or `:`. */
const isAddressChar = (c: number): boolean => (classOf(c) & ADDRESS) !== 0;
const isPhoneChar = (c: number): boolean => (classOf(c) & PHONE_RUN) !== 0;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** A run of address characters, `@`, another run: each run is read once. */
function maskAddresses(text: string): string {
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < text.length) {
    if (!isAddressChar(text.charCodeAt(i))) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < text.length && isAddressChar(text.charCodeAt(j))) j++;
    if (j + 1 < text.length && text.charCodeAt(j) === 0x40 && isAddressChar(text.charCodeAt(j + 1))) {
      let k = j + 2;
      while (k < text.length && isAddressChar(text.charCodeAt(k))) k++;
      out += text.slice(copied, i) + REDACTED;
      copied = k;
      i = k;
    } else {
      i = j;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/**
 * From a digit (with a `+` just before it), the longest stretch of digits, spaces and dashes
 * that ends in a digit at least 6 places further on. When a run of such characters has no
 * digit that far from its first digit, no later start in it has one either, so each run is
 * read at most twice.
 */
function maskPhones(text: string): string {
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < text.length) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    let end = i + 1;
    while (end < text.length && isPhoneChar(text.charCodeAt(end))) end++;
    let last = end - 1;
    while (last > i && !isDigit(text.charCodeAt(last))) last--;
    if (last - i >= 6) {
      const start = i > copied && text.charCodeAt(i - 1) === 0x2b ? i - 1 : i;
      out += text.slice(copied, start) + REDACTED;
      copied = last + 1;
    }
    i = end;
  }
  return copied === 0 ? text : out + text.slice(copied);
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
