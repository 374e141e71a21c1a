import type { DeliveryOutcome } from './sink.js';

/**
 * Answers a sink cannot trust, and what is kept of remote text. Both sinks follow one rule:
 * an answer whose signature fails, that cannot be read as a gateway answer, or that is too
 * large to read, is retried under the same key; but a run of them means the endpoint, a
 * proxy in front of it or the verification key is wrong for every request, and retrying
 * event by event would go on forever while the sink looks healthy. After `limit` of them in
 * a row the sink answers `sink_failure`, so the dispatcher pauses it loudly and probes.
 */

/**
 * What one attempt says about the answers of the remote side:
 * - `trusted`: an answer the sink can act on (a verified signature, or an error answer the
 *   protocol leaves unsigned); it ends a run of untrusted ones.
 * - `untrusted`: a failed or missing signature on a success, an unreadable body (HTML, not
 *   JSON, no response object), a body over the size cap, a signed answer for another attempt.
 * - `neutral`: no answer to judge (timeout, refused connection, abort) or an HTTP error
 *   status such as 503; it neither counts nor ends a run.
 */
export type AnswerTrust = 'trusted' | 'untrusted' | 'neutral';

/** Default of the sinks' `pauseAfterUntrustedAnswers`. */
export const UNTRUSTED_ANSWERS_BEFORE_PAUSE = 5;

/** The `sink_failure` code a run of untrusted answers turns into. */
export const UNTRUSTED_ANSWERS = 'UNTRUSTED_ANSWERS';

export interface TrustCounter {
  /** The outcome as it is, or a `sink_failure` in its place once the run reaches the limit. */
  judge(outcome: DeliveryOutcome, trust: AnswerTrust, hint?: string): DeliveryOutcome;
  /** Untrusted answers since the last trusted one. */
  run(): number;
}

/**
 * Counts untrusted answers in a row, in the order attempts finish. Once the run has reached
 * the limit every further untrusted answer is a sink failure too (a paused sink's probe keeps
 * it paused); the first trusted answer resets it, so the probe that gets one resumes the sink.
 */
export function trustCounter(limit: number = UNTRUSTED_ANSWERS_BEFORE_PAUSE): TrustCounter {
  let run = 0;
  return {
    judge(outcome, trust, hint) {
      if (trust === 'trusted') run = 0;
      if (trust !== 'untrusted' || outcome.status === 'delivered' || outcome.status === 'not_applicable') return outcome;
      run += 1;
      if (run < limit) return outcome;
      const message = `${run} answers in a row failed verification or could not be read (last: ${outcome.code}: ${outcome.message})${hint ? `; ${hint}` : ''}`;
      return { status: 'sink_failure', info: outcome.info, code: UNTRUSTED_ANSWERS, message: clipRemoteText(message) };
    },
    run: () => run,
  };
}

/** Most remote text kept in a log line or an attempt record. */
export const REMOTE_TEXT_MAX = 2_000;
/** Most of a remote code (result_code, sub_code, event_status…) kept; real ones are short. */
export const REMOTE_CODE_MAX = 128;

/**
 * Remote text as it is kept for logs and the ledger: at most `max` characters, then a note of
 * how many were cut. `mask` sees only the kept part, so masking a huge text costs what masking
 * `max` characters costs. The note groups its digits ("52,428,800") so that a mask applied to
 * the clipped text later does not take the count for a phone number or an account.
 * NUL characters and lone surrogates become U+FFFD: PostgreSQL refuses both in text and jsonb,
 * and one remote message must not make an attempt unrecordable.
 */
export function clipRemoteText(text: string, max: number = REMOTE_TEXT_MAX, mask?: (kept: string) => string): string {
  if (text.length <= max) {
    const clean = storable(text);
    return mask ? mask(clean) : clean;
  }
  // Never cut a surrogate pair in two.
  const end = isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  const kept = storable(text.slice(0, end));
  return `${mask ? mask(kept) : kept}… [${(text.length - end).toLocaleString('en-US')} more characters cut]`;
}

const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `text` with NUL and lone surrogates replaced by U+FFFD: storable in PostgreSQL text and jsonb. */
export function storableText(text: string): string {
  return storable(text);
}

function storable(text: string): string {
  return text.replace(UNSTORABLE, '\ufffd');
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
