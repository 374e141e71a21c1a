/**
 * What a gateway answer means for the event, as a table (first match wins). `code` and
 * `sub_code` are the only things we branch on; `msg`/`sub_msg` are human text.
 *
 * The line between `rejected` and `sink_failure`: an answer about *this event's content* parks
 * the event; an answer about the credentials, the clock, the app or its permissions would be
 * the same for every event, so the dispatcher pauses the whole sink instead of parking
 * thousands of good events. Where a code can be either, we park: a paused sink that can never
 * get past one bad event is worse than a parked event an operator replays.
 */

export type Verdict = 'retry' | 'rejected' | 'sink_failure';

export interface ResultRule {
  code: string;
  /** Exact sub_code, a prefix ending in `.`/`*`, or undefined for any. */
  subCode?: string;
  verdict: Verdict;
  /** Minimum wait before the retry, for throttling answers. */
  afterMs?: number;
  note: string;
}

export const ANY = '*';

export const RESULT_CODES: readonly ResultRule[] = [
  { code: ANY, subCode: 'isp.*', verdict: 'retry', note: 'Alipay-side service error ("稍后重试")' },
  { code: '20000', verdict: 'retry', note: 'Service Currently Unavailable (isp.unknow-error, aop.unknow-error)' },
  { code: '20001', verdict: 'sink_failure', note: 'app_auth_token invalid or expired: refresh it in config' },
  { code: '40001', verdict: 'sink_failure', note: 'Missing Required Arguments: a client bug, same for every event' },
  { code: '40002', subCode: 'isv.invalid-parameter', verdict: 'rejected', note: 'a parameter value of this event is invalid' },
  {
    code: '40002',
    verdict: 'sink_failure',
    note: 'Invalid Arguments: signature, app id, timestamp (clock), sign type, method, charset, format, cert',
  },
  { code: '40003', verdict: 'sink_failure', note: 'Insufficient Conditions: app state or signature config' },
  { code: '40004', subCode: 'SYSTEM_ERROR', verdict: 'retry', note: 'Zhima system busy' },
  { code: '40004', subCode: 'ZMDATA.*', verdict: 'rejected', note: 'this event\'s data is wrong (user_id, biz_state_code, biz_data…)' },
  { code: '40004', subCode: 'ZMDAT.*', verdict: 'rejected', note: 'ZMDAT.SERVICE_ID_ERROR (sic, as the API document spells it)' },
  { code: '40004', verdict: 'rejected', note: 'Business Failed for this event' },
  { code: '40005', verdict: 'retry', afterMs: 60_000, note: 'call limit exceeded: back off' },
  { code: '40006', verdict: 'sink_failure', note: 'Insufficient Permissions: product not signed or app not authorised' },
  { code: ANY, verdict: 'rejected', note: 'unknown code: park for a human (no blind retries)' },
];

function subCodeMatches(pattern: string | undefined, subCode: string | undefined): boolean {
  if (pattern === undefined) return true;
  if (subCode === undefined) return false;
  return pattern.endsWith('*') ? subCode.startsWith(pattern.slice(0, -1)) : subCode === pattern;
}

/** The rule for a non-success answer. The table ends with a catch-all, so there is always one. */
export function ruleFor(code: string, subCode: string | undefined): ResultRule {
  const rule = RESULT_CODES.find(
    (r) => (r.code === ANY || r.code === code) && subCodeMatches(r.subCode, subCode),
  );
  return rule!;
}
