import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnector } from '../../src/cli/connector.js';
import { createLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { pendingCount } from '../helpers/ledger-fixtures.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { operatorConfig, startSims } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;

beforeAll(async () => {
  db = await createTestDatabase('logs');
  await createOrderTables(db.pool);
  sims = await startSims();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

function capture() {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(...s.split('\n').filter(Boolean)) } };
}

const DB_PASSWORD = 'Db-Pa55word-Never-Logged';
const PHONES = ['13912345678', '15887654321'];
const ALIPAY_USER = '2088123456789012';

describe('logs', () => {
  it('carry a component on every line and never a secret, key, signature or personal data', async () => {
    const out = capture();
    const logger = createLogger({ level: 'trace', destination: out.stream });
    // The password is ignored by the test server (trust) but sits in every connection string.
    const url = new URL(db.url);
    url.password = DB_PASSWORD;
    const { config } = operatorConfig(url.toString(), sims, { admin: { listen: '127.0.0.1:0' }, log: { level: 'trace' } });
    sims.antchain.setFaults({ http5xxRate: 0.2, needRetryRate: 0.1, dropAfterCommitRate: 0.1 });
    // Answers whose signature does not verify: after three in a row the Zhima sink pauses.
    sims.zhima.setFaults({ corruptSignatureRate: 1 });
    const stop = new AbortController();
    const connector = await startConnector(config, { logger, env: { ...process.env, ...sims.env }, signal: stop.signal });
    try {
      await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'streaming');
      const insert = (no: string, phone: string, status = 'PAID') =>
        db.pool.query(
          `INSERT INTO orders (order_no, status, buyer_phone, sharer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
           VALUES ($1, $2, $3, $4, $5, '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
          [no, status, phone, PHONES[1], ALIPAY_USER],
        );
      for (let i = 0; i < 6; i++) await insert(`G0${i}`, PHONES[0]!);
      await insert('G10', '12345'); // not a mobile number: AntChain parks it
      await insert('G11', PHONES[0]!, ' '); // no status: parked input
      await waitFor(() => connector.probe.live().sinks.find((s) => s.sink === 'zhima')?.paused, 'zhima paused');
      sims.zhima.setFaults({ corruptSignatureRate: 0 });
      await waitFor(async () => (await pendingCount(db.pool, 'order_relay')) === 0, 'everything settled', 30_000);
      // Things a careless line could print.
      logger.child({ component: 'test' }).info(
        {
          secret: 'x-secret',
          accessSecret: sims.keys.antchainAccessSecret,
          privateKey: sims.keys.appPrivatePem,
          sink: { accessSecret: sims.keys.antchainAccessSecret, privateKey: sims.keys.appPrivatePem, appAuthToken: 'tok-123456' },
          headers: { authorization: 'Bearer abc.def' },
          row: { buyer_phone: PHONES[0] },
          phone: PHONES[1],
          userId: ALIPAY_USER,
          biz_content: `{"user_id":"${ALIPAY_USER}"}`,
        },
        'redaction probe',
      );
    } finally {
      stop.abort();
      await connector.done;
      sims.antchain.setFaults({ http5xxRate: 0, needRetryRate: 0, dropAfterCommitRate: 0 });
    }

    const text = out.lines.join('\n');
    const parsed = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    // The run exercised the noisy paths.
    const msgs = new Set(parsed.map((p) => p.msg));
    for (const m of ['attempt to be retried', 'event rejected', 'sink paused: the sink itself is failing; deliveries stay pending, probing with backoff', 'sink resumed', 'redaction probe']) {
      expect(msgs).toContain(m);
    }
    for (const p of parsed) expect(typeof p.component, JSON.stringify(p)).toBe('string');
    // Both sinks log an attempt with the same field names.
    const attempts = parsed.filter((p) => p.component === 'sink' && (p.msg === 'attempt to be retried' || p.msg === 'event rejected'));
    expect(new Set(attempts.map((p) => p.kind))).toEqual(new Set(['antchain', 'zhima']));
    for (const p of attempts) expect(Object.keys(p), JSON.stringify(p)).toEqual(expect.arrayContaining(['sink', 'eventId', 'eventCode', 'outcome', 'outcomeCode', 'durationMs']));

    const secrets = [
      sims.keys.antchainAccessSecret,
      DB_PASSWORD,
      ...PHONES,
      ALIPAY_USER,
      'tok-123456',
      'Bearer abc.def',
      'x-secret',
      // Any 40-character slice of either private key's body.
      ...[sims.keys.appPrivatePem, sims.keys.gatewayPrivatePem].flatMap((pem) => pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----')).map((l) => l.slice(0, 40))),
    ];
    for (const s of secrets) expect(text.includes(s), `log output contains ${s.slice(0, 6)}…`).toBe(false);
    // No request signature (AntChain `sign`, Alipay `sign`) in any form.
    expect(text).not.toMatch(/"sign"\s*:\s*"(?!\[redacted\])/);
    expect(text).not.toMatch(/[?&]sign=/);
    expect(text).toContain('[redacted]');
  });
});
