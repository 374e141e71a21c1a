import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { createClassifier } from '../classify/classifier.js';
import type { Config } from '../config/schema.js';
import type { Row } from '../core/events.js';
import type { SourceChange } from '../core/source.js';
import { silentLogger } from '../log.js';
import { createSink } from '../registry.js';

const rowSchema = z.record(z.string(), z.any()).nullable().optional();

/** The change file: one row change as a user would write it by hand. */
const changeFileSchema = z.strictObject({
  table: z.string().min(1),
  op: z.enum(['insert', 'update', 'delete']),
  old: rowSchema,
  new: rowSchema,
  /** For a refund row: the order row it belongs to (what the ledger would know). */
  order: rowSchema,
  committedAt: z.string().optional(),
});

export interface PreviewArgs {
  change: string;
  at?: string;
  nonce?: string;
}

/** Yields one JSON line per event and per (event, sink): what would be sent, without sending. */
export function preview(config: Config, args: PreviewArgs, env: NodeJS.ProcessEnv = process.env): string[] {
  let parsed: z.infer<typeof changeFileSchema>;
  try {
    parsed = changeFileSchema.parse(JSON.parse(readFileSync(args.change, 'utf8')));
  } catch (err) {
    throw new Error(`change file ${args.change}: ${err instanceof z.ZodError ? z.prettifyError(err).replace(/\n/g, '; ') : (err as Error).message}`);
  }
  const at = args.at ? new Date(args.at) : new Date();
  if (Number.isNaN(at.getTime())) throw new Error(`--at: not an ISO-8601 time: ${args.at}`);
  const nonce = args.nonce ?? randomHex();
  if (!/^[0-9a-f]{32}$/.test(nonce)) throw new Error('--nonce: expected 32 lowercase hex characters');
  const change: SourceChange = {
    table: parsed.table,
    op: parsed.op,
    after: (parsed.new ?? null) as Row | null,
    before: (parsed.old ?? null) as Row | null,
    position: 'preview',
    committedAt: parsed.committedAt ?? at.toISOString(),
  };
  const classifier = createClassifier(config);
  const orderRow = parsed.order as Row | undefined;
  const result = classifier.classify(change, () => orderRow ?? undefined);
  if (result.kind === 'bad') throw new Error(`the change would be parked: ${result.reason}`);
  if (result.kind === 'ignored') return [];
  const logger = silentLogger();
  const sinks = Object.entries(config.sinks).map(([name, sc]) => createSink(name, sc, { logger, env }));
  const lines: string[] = [];
  for (const event of result.events) {
    lines.push(JSON.stringify({ eventId: event.id, eventCode: event.code, event }));
    for (const sink of sinks) {
      if (!sink.handles(event)) continue;
      const p = sink.preview(event, { at, nonce });
      const base = { sink: sink.name, eventId: event.id, eventCode: event.code };
      if (p.status === 'request') lines.push(JSON.stringify({ ...base, request: p.request }));
      else if (p.status === 'not_applicable') lines.push(JSON.stringify({ ...base, notApplicable: p.reason }));
      else lines.push(JSON.stringify({ ...base, rejected: { code: p.code, message: p.message } }));
    }
  }
  void Promise.all(sinks.map((s) => s.close()));
  return lines;
}

function randomHex(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}
