import { Kafka } from 'kafkajs';
import pg from 'pg';
import { clientConfig } from '../../connectors/sources/kafka/index.js';
import { createLedger } from '../ledger/ledger.js';
import { slotOwner } from '../../connectors/sources/postgres/ownership.js';
import { ledgerUrl, sourceUrl } from '../app.js';
import { parseListen } from '../admin/server.js';
import type { Config } from '../config/schema.js';
import { LATEST_VERSION, schemaVersion } from '../ledger/migrations.js';
import { silentLogger } from '../log.js';
import type { LiveState } from '../observe/probe.js';
import {
  checkpointRows,
  ledgerExists,
  parkedInputCount,
  parkedInputs,
  recentErrors,
  sinkFigures,
  slotFigures,
  type CheckpointRow,
  type ParkedInput,
  type RecentError,
  type SinkFigures,
  type SlotFigures,
} from '../observe/queries.js';
import { age, bytes, clip, table } from './format.js';

export interface StatusReport {
  at: string;
  ledger: { schema: string; version: number; latest: number };
  sources: Array<
    | ({ id: string; kind: 'postgres'; checkpoint: string | null; connected: boolean | null } & SlotFigures)
    | {
        id: string;
        kind: 'kafka';
        connected: boolean | null;
        /** Per partition: the offset the ledger resumes from, the partition's end, and the difference. */
        partitions: Array<{ topic: string; partition: number; stored: string | null; end: string | null; lag: number | null }>;
        error?: string;
      }
    | { id: string; kind: 'stored'; streams: Array<{ stream: string; position: string; updatedAt: string }> }
  >;
  sinks: Array<SinkFigures & { paused: boolean | null; pausedReason?: string; pausedSince?: string; inflight: number | null; shards: Record<string, number[]> }>;
  parkedInputs: { count: number; recent: ParkedInput[] };
  lastErrors: RecentError[];
  /**
   * Per source, the changes whose status no mapping lists (they yielded no events), as the
   * running instance counted them since it started (`order_relay_changes_unmapped_total` on its
   * /metrics); null when no instance answered.
   */
  unmapped: Array<{ source: string; total: number; statuses: Array<{ table: string; status: string; n: number }> }> | null;
  /** The running instance's admin listener: reachable or not (pause state comes from there). */
  live: { url: string | null; reachable: boolean; error?: string };
  checkpoints: CheckpointRow[];
}

/**
 * Everything `order-relay status` shows. Figures come from the ledger and the source
 * database, so they are right even when no instance runs; whether a sink is paused lives
 * only in the running process, so it is asked through its admin listener (`/status`).
 */
export async function collectStatus(config: Config, options: { errors?: number; live?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<StatusReport> {
  const schema = config.ledger.schema;
  const ledger = new pg.Pool({ connectionString: ledgerUrl(config), max: 2, application_name: 'order-relay-status' });
  ledger.on('error', () => {});
  const source = config.source ? new pg.Pool({ connectionString: sourceUrl(config), max: 1, application_name: 'order-relay-status' }) : undefined;
  source?.on('error', () => {});
  try {
    const [liveResult, unmappedSamples, version] = await Promise.all([
      options.live === false ? Promise.resolve(undefined) : fetchLive(config),
      options.live === false ? Promise.resolve(undefined) : fetchUnmapped(config),
      schemaVersion(ledger, schema).catch((err: unknown) => {
        throw new Error(`ledger database: ${err instanceof Error ? err.message : String(err)}`);
      }),
    ]);
    const exists = version > 0 && (await ledgerExists(ledger, schema));
    if (!exists) throw new Error(`ledger schema "${schema}" does not exist yet: run \`order-relay migrate -c <config>\` (or start \`run\` once)`);
    const holders = createLedger(ledger, schema);
    const [figures, checkpoints, parkedCount, parkedRecent, errors, shardHolders] = await Promise.all([
      sinkFigures(ledger, schema, Object.keys(config.sinks)),
      checkpointRows(ledger, schema),
      parkedInputCount(ledger, schema),
      parkedInputs(ledger, schema, 5),
      recentErrors(ledger, schema, options.errors ?? 10),
      Promise.all(Object.keys(config.sinks).map(async (sink) => [sink, await holders.shardHolders(sink).catch(() => new Map<number, string>())] as const)),
    ]);
    const live = liveResult?.state;
    const sources: StatusReport['sources'] = [];
    if (config.source && source) {
      const slot = await slotFigures(source, config.source.slot).catch((err: unknown) => {
        throw new Error(`source database: ${err instanceof Error ? err.message : String(err)}`);
      });
      slot.owner = (await slotOwner(source, config.source.slot).catch(() => undefined)) ?? null;
      const cp = checkpoints.find((c) => c.source === 'postgres' && c.stream === 'slot');
      const liveSource = live?.sources.find((s) => s.id === 'postgres');
      sources.push({ id: 'postgres', kind: 'postgres', ...slot, checkpoint: cp?.position ?? null, connected: liveSource ? liveSource.connected : null });
    }
    if (config.kafka) {
      const liveSource = live?.sources.find((s) => s.id === 'kafka');
      sources.push({ ...(await kafkaFigures(config, checkpoints, options.env ?? process.env)), connected: liveSource ? liveSource.connected : null });
    }
    // Other sources (a backfill cursor, Kafka positions without a kafka config): stored positions.
    const others = new Map<string, CheckpointRow[]>();
    for (const c of checkpoints) {
      if (c.source === 'postgres' || (c.source === 'kafka' && config.kafka)) continue;
      others.set(c.source, [...(others.get(c.source) ?? []), c]);
    }
    for (const [id, rows] of others) {
      sources.push({ id, kind: 'stored', streams: rows.map((r) => ({ stream: r.stream, position: r.position, updatedAt: r.updatedAt })) });
    }
    return {
      at: new Date().toISOString(),
      ledger: { schema, version, latest: LATEST_VERSION },
      sources,
      sinks: figures.map((f) => {
        const st = live?.sinks.find((s) => s.sink === f.sink);
        return {
          ...f,
          paused: st ? st.paused : null,
          ...(st?.pausedReason ? { pausedReason: st.pausedReason } : {}),
          ...(st?.pausedSince ? { pausedSince: st.pausedSince } : {}),
          inflight: st ? st.inflight : null,
          shards: byHolder(shardHolders.find(([sink]) => sink === f.sink)?.[1] ?? new Map()),
        };
      }),
      parkedInputs: { count: parkedCount, recent: parkedRecent },
      unmapped: unmappedSamples ? unmappedBySource(config, unmappedSamples) : null,
      lastErrors: errors,
      live: { url: liveResult?.url ?? null, reachable: !!live, ...(liveResult?.error ? { error: liveResult.error } : {}) },
      checkpoints,
    };
  } finally {
    await Promise.all([ledger.end(), source?.end()]);
  }
}

/** Which instance delivers which shards: holder → shards, in order. */
function byHolder(holders: ReadonlyMap<number, string>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [shard, holder] of [...holders].sort((a, b) => a[0] - b[0])) (out[holder] ??= []).push(shard);
  return out;
}

/** Shards as ranges: 0-3,6,8-9. */
function ranges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(j > i ? `${xs[i]}-${xs[j]}` : String(xs[i]));
    i = j;
  }
  return out.join(',');
}

/** Stored offsets per partition against each partition's end (high watermark). */
async function kafkaFigures(config: Config, checkpoints: CheckpointRow[], env: NodeJS.ProcessEnv): Promise<Extract<StatusReport['sources'][number], { kind: 'kafka' }>> {
  const stored = new Map(checkpoints.filter((c) => c.source === 'kafka').map((c) => [c.stream, c.position]));
  const topics = config.kafka!.topics.map((t) => t.topic);
  const fromLedger = () =>
    [...stored].map(([stream, position]) => {
      const at = stream.lastIndexOf('/');
      return { topic: stream.slice(0, at), partition: Number(stream.slice(at + 1)), stored: position, end: null, lag: null };
    });
  const admin = new Kafka({ ...clientConfig(config.kafka!, env, silentLogger()), retry: { retries: 0 } }).admin();
  try {
    await withTimeout(admin.connect(), 5_000);
    const partitions: Array<{ topic: string; partition: number; stored: string | null; end: string | null; lag: number | null }> = [];
    for (const topic of topics) {
      const offsets = await withTimeout(admin.fetchTopicOffsets(topic), 5_000);
      for (const o of offsets.sort((a, b) => a.partition - b.partition)) {
        const position = stored.get(`${topic}/${o.partition}`) ?? null;
        const from = position ?? o.low;
        partitions.push({ topic, partition: o.partition, stored: position, end: o.high, lag: Math.max(0, Number(BigInt(o.high) - BigInt(from))) });
      }
    }
    return { id: 'kafka', kind: 'kafka', connected: null, partitions };
  } catch (err) {
    return { id: 'kafka', kind: 'kafka', connected: null, partitions: fromLedger(), error: `brokers: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Where the running instance's admin listener answers, or undefined when it is off. */
function adminBase(config: Config): string | undefined {
  if (config.admin.listen === 'off') return undefined;
  const { host, port } = parseListen(config.admin.listen);
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `http://${target}:${port}`;
}

async function fetchLive(config: Config): Promise<{ url: string; state?: LiveState; error?: string } | undefined> {
  const base = adminBase(config);
  if (!base) return undefined;
  const url = `${base}/status`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_500) });
    if (!res.ok) return { url, error: `HTTP ${res.status}` };
    return { url, state: (await res.json()) as LiveState };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { url, error: cause ?? (err instanceof Error ? err.message : String(err)) };
  }
}

const UNMAPPED_METRIC = 'order_relay_changes_unmapped_total';

/**
 * The unmapped-status counts live only in the running process: its /metrics has them. Undefined
 * when no instance answers (the count is then unknown, not zero).
 */
async function fetchUnmapped(config: Config): Promise<UnmappedSample[] | undefined> {
  const base = adminBase(config);
  if (!base) return undefined;
  try {
    const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(1_500) });
    if (!res.ok) return undefined;
    return parseUnmapped(await res.text());
  } catch {
    return undefined;
  }
}

export interface UnmappedSample {
  source: string;
  table: string;
  status: string;
  n: number;
}

/** The samples of order_relay_changes_unmapped_total in a Prometheus text exposition. */
export function parseUnmapped(exposition: string): UnmappedSample[] {
  const out: UnmappedSample[] = [];
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${UNMAPPED_METRIC}{`)) continue;
    const close = line.lastIndexOf('} ');
    if (close < 0) continue;
    const labels: Record<string, string> = {};
    for (const m of line.slice(UNMAPPED_METRIC.length + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const n = Number(line.slice(close + 2).trim());
    if (labels.source === undefined || labels.table === undefined || labels.status === undefined || !Number.isFinite(n) || n <= 0) continue;
    out.push({ source: labels.source, table: labels.table, status: labels.status, n });
  }
  return out;
}

function unmappedBySource(config: Config, samples: UnmappedSample[]): NonNullable<StatusReport['unmapped']> {
  const ids = [...(config.source ? ['postgres'] : []), ...(config.kafka ? ['kafka'] : [])];
  for (const s of samples) if (!ids.includes(s.source)) ids.push(s.source);
  return ids.map((source) => {
    const statuses = samples
      .filter((s) => s.source === source)
      .map(({ table, status, n }) => ({ table, status, n }))
      .sort((a, b) => b.n - a.n || a.status.localeCompare(b.status));
    return { source, total: statuses.reduce((a, b) => a + b.n, 0), statuses };
  });
}

/** "changes with a status in no mapping: 120 (e.g. paid ×120)", for one source. */
export function unmappedLine(u: NonNullable<StatusReport['unmapped']>[number]): string {
  const tables = new Set(u.statuses.map((s) => s.table));
  const examples = u.statuses.slice(0, 3).map((s) => `${tables.size > 1 ? `${s.table} ` : ''}${s.status} ×${s.n}`);
  return `${u.source}: changes with a status in no mapping: ${u.total}${examples.length ? ` (e.g. ${examples.join(', ')}${u.statuses.length > 3 ? ', …' : ''})` : ''}`;
}

export function renderStatus(r: StatusReport): string {
  const out: string[] = [];
  out.push(`ledger ${r.ledger.schema}: schema version ${r.ledger.version}${r.ledger.version < r.ledger.latest ? ` (latest ${r.ledger.latest}: run migrate)` : ''}`);
  out.push(
    r.live.reachable
      ? `instance: live at ${r.live.url}`
      : `instance: ${r.live.url ? `not reachable at ${r.live.url} (${r.live.error ?? 'no answer'})` : 'admin listener off'}; pause state unknown`,
  );
  out.push('');
  const pg = r.sources.filter((s) => s.kind === 'postgres');
  if (pg.length) {
    out.push(
      table(
        ['SOURCE', 'SLOT', 'ACTIVE', 'OWNER', 'CONFIRMED LSN', 'LAG', 'RETAINED WAL', 'WAL STATUS', 'LEDGER CHECKPOINT'],
        pg.map((s) => [
          s.id,
          s.exists ? s.slot : `${s.slot} (MISSING)`,
          s.exists ? (s.active ? 'yes' : 'no') : '-',
          s.owner ?? '(none)',
          s.confirmedLsn,
          bytes(s.lagBytes),
          bytes(s.retainedBytes),
          s.walStatus,
          s.checkpoint,
        ]),
      ),
    );
    out.push('');
  }
  for (const s of r.sources) {
    if (s.kind !== 'kafka') continue;
    out.push(
      table(
        ['KAFKA TOPIC', 'PARTITION', 'STORED OFFSET', 'END OFFSET', 'LAG'],
        s.partitions.map((p) => [p.topic, p.partition, p.stored ?? '(none yet)', p.end, p.lag]),
      ),
    );
    if (s.error) out.push(`  kafka: ${s.error} (offsets shown are the ledger's)`);
    out.push('');
  }
  if (r.unmapped) {
    for (const u of r.unmapped) out.push(unmappedLine(u));
    out.push('  (since the instance started; such changes yield no events: statuses are compared exactly, see orders.statuses / refunds.successStatuses)');
  } else out.push('changes with a status in no mapping: unknown (counted by the running instance, which did not answer)');
  out.push('');
  for (const s of r.sources) {
    if (s.kind !== 'stored') continue;
    out.push(table([`${s.id.toUpperCase()} STREAM`, 'STORED POSITION', 'UPDATED'], s.streams.map((x) => [x.stream, x.position, x.updatedAt])));
    out.push('');
  }
  out.push(
    table(
      ['SINK', 'STATE', 'BACKLOG', 'OLDEST PENDING', 'RETRYING', 'PARKED', 'BLOCKED', 'DELIVERED 1m', 'DELIVERED', 'SHARDS BY INSTANCE'],
      r.sinks.map((s) => [
        s.sink,
        s.paused === null ? '?' : s.paused ? 'PAUSED' : 'ok',
        s.backlog,
        age(s.oldestPendingSeconds),
        s.retrying,
        s.held ? `${s.parked} (${s.held} held)` : s.parked,
        s.blocked,
        s.deliveredLastMinute,
        s.delivered,
        Object.entries(s.shards).map(([holder, xs]) => `${holder} ${ranges(xs)}`).join('; ') || '(none held)',
      ]),
    ),
  );
  for (const s of r.sinks) if (s.paused) out.push(`  ${s.sink} PAUSED since ${s.pausedSince}: ${s.pausedReason}`);
  out.push('');
  out.push(`parked inputs: ${r.parkedInputs.count}`);
  for (const p of r.parkedInputs.recent) out.push(`  #${p.id} ${p.stream} @${p.position}: ${clip(p.reason, 120)}`);
  out.push('');
  if (r.lastErrors.length === 0) out.push('last errors: none');
  else {
    out.push('last errors:');
    out.push(
      table(
        ['AT', 'SINK', 'EVENT', 'CODE', 'OUTCOME', 'REQUEST ID', 'HTTP', 'REMOTE CODE', 'MESSAGE'],
        r.lastErrors.map((e) => [e.at, e.sink, e.eventId, e.eventCode, e.outcome, e.requestId, e.httpStatus, e.remoteCode, clip(e.message, 80)]),
      ),
    );
  }
  return out.join('\n');
}
