import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runDemo, type DemoOptions } from '../../src/demo/demo.js';

function output() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

const base = (out: NodeJS.WritableStream, signal: AbortSignal): DemoOptions => ({
  orders: 150,
  rate: 1000,
  faults: 'light',
  seed: 7,
  drainTimeout: 60,
  out,
  signal,
  listen: '127.0.0.1:0',
});

describe('npm run demo', () => {
  it('runs the whole pipeline, reports per code and sink, and leaves nothing behind', async () => {
    const out = output();
    const result = await runDemo(base(out.stream, new AbortController().signal));
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    const r = result.report!;
    const total = Object.values(r.events).reduce((a, b) => a + b, 0);
    expect(total).toBe(r.expectedEvents);
    expect(Object.keys(r.events).sort()).toEqual(['REFUND_SUCCESS', 'TRADE_CONFIRM', 'TRADE_SUCCESS']);
    expect(r.gateways.antchain.effects).toBe(r.deliveries.antchain!.delivered);
    expect(r.gateways.zhima.effects).toBe(r.deliveries.zhima!.delivered);
    expect(r.deliveries.antchain!.pending ?? 0).toBe(0);
    expect(r.parkedInputs.length).toBeGreaterThan(0); // the generator's blank-status rows
    expect(r.parkedDeliveries.map((p) => p.code)).toContain('INVALID_EVENT'); // its bad phone numbers / cinema ids
    expect(r.latency.antchain!.p99).toBeGreaterThanOrEqual(r.latency.antchain!.p50);
    const text = out.text();
    expect(text).toMatch(/orders 150\/150 +events \d+ +antchain delivered \d+ retries \d+ parked \d+/);
    expect(text).toMatch(/^EVENT CODE\s+EVENTS$/m);
    expect(text).toMatch(/^SINK\s+DELIVERED\s+PARKED\s+PENDING\s+NOT APPLICABLE\s+SKIPPED\s+GATEWAY EFFECTS\s+DUPLICATES ABSORBED\s+p50 COMMIT→DELIVERED\s+p99$/m);
    expect(text).toContain('OK: every event stored once');
    expect(result.directories).toHaveLength(2);
    for (const d of result.directories) expect(existsSync(d), d).toBe(false);
  });

  it('stops cleanly when interrupted (Ctrl-C)', async () => {
    const out = output();
    const stop = new AbortController();
    const pending = runDemo({ ...base(out.stream, stop.signal), orders: 100_000, rate: 500 });
    const started = Date.now();
    // Interrupt once the connector runs and orders are being generated.
    await new Promise<void>((resolve) => {
      const check = () => (/connector log:/.test(out.text()) ? resolve() : setTimeout(check, 50));
      check();
    });
    stop.abort();
    const result = await pending;
    expect(result).toMatchObject({ ok: false, interrupted: true });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(out.text()).toContain('interrupted: stopped the generator, the connector, both simulators and PostgreSQL; removed their files');
    for (const d of result.directories) expect(existsSync(d), d).toBe(false);
  });
});
