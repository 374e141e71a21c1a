import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/demo.js';

describe('npm run demo: parked inputs', () => {
  it('the progress line and the report count the same parked rows, each bad row once though the stream and the backfill both read it', async () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d: Buffer) => (text += d.toString()));
    const result = await runDemo({
      orders: 300,
      rate: 1000,
      faults: 'none',
      seed: 3,
      drainTimeout: 60,
      out: stream,
      signal: new AbortController().signal,
      listen: '127.0.0.1:0',
    });
    expect(result.problems).toEqual([]);
    const r = result.report!;
    const progress = [...text.matchAll(/\| parked inputs (\d+) {2}backlog/g)].map((m) => Number(m[1]));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(r.parkedInputCount);
    expect(text).toContain(`parked inputs: ${r.parkedInputCount} (`);
    // The generator's bad rows are blank statuses, each reason names its order: one row each.
    expect(r.parkedInputCount).toBeGreaterThan(0);
    expect(r.parkedInputs).toHaveLength(r.parkedInputCount);
    expect(new Set(r.parkedInputs.map((p) => p.reason)).size).toBe(r.parkedInputCount);
  });
});
