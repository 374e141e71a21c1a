import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Paths pino masks in every log line. Secrets, keys and signatures never belong in a log;
 * personal data (phones, logon ids, Alipay user ids) neither.
 */
export const REDACT_PATHS = [
  'secret', '*.secret', 'accessSecret', '*.accessSecret', 'accessKeySecret', '*.accessKeySecret',
  'privateKey', '*.privateKey', 'password', '*.password', '*.*.password',
  'sign', '*.sign', 'signature', '*.signature', 'authorization', '*.authorization',
  'phone', '*.phone', 'userIdNo', '*.userIdNo', 'user_id', '*.user_id', 'userId', '*.userId',
  'user_id_no', '*.user_id_no', 'body', '*.body', 'row', '*.row', 'order', 'refund', 'visit',
  'connectionString', '*.connectionString',
  // Tokens and request bodies that carry user ids (Zhima biz_content holds the Alipay user id).
  'appAuthToken', '*.appAuthToken', 'app_auth_token', '*.app_auth_token', 'token', '*.token',
  'biz_content', '*.biz_content', 'bizContent', '*.bizContent', 'alipay_user_id', '*.alipay_user_id',
  'logonId', '*.logonId', 'buyer_phone', '*.buyer_phone', 'sharer_phone', '*.sharer_phone',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to inspect output. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      base: { service: 'order-relay' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination(1),
  );
}

/** A logger that drops everything, for tests and one-shot commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
