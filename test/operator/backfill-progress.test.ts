import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { backfillProgress } from '../../src/cli/backfill.js';

function sink(tty: boolean) {
  const stream = Object.assign(new PassThrough(), tty ? { isTTY: true } : {});
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

const page = (table: string, done: number, total: number) => ({ table, done, total, events: done * 2 });

describe('backfill progress', () => {
  it('to a file or pipe: plain lines, at most one per interval, the last of each table and a final one; never \\r', () => {
    let clock = 0;
    const out = sink(false);
    const progress = backfillProgress(out.stream, { intervalMs: 10_000, now: () => clock });
    progress.update(page('public.orders', 500, 2000)); // the first page is written at once
    for (const done of [1000, 1500]) {
      clock += 3_000;
      progress.update(page('public.orders', done, 2000));
    }
    clock += 5_000; // 11 s after the first line
    progress.update(page('public.orders', 1900, 2000));
    clock += 1_000;
    progress.update(page('public.orders', 2000, 2000)); // within the interval: held back …
    progress.update(page('public.refunds', 100, 300)); // … and written when the next table starts
    clock += 1_000;
    progress.update(page('public.refunds', 300, 300));
    progress.done(); // the final line
    const lines = out.text().split('\n');
    expect(out.text()).not.toContain('\r');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).map((l) => l.replace(/\[[#.]+\] /, ''))).toEqual([
      'public.orders     25.0% 500/2000 rows, 1000 new events',
      'public.orders     95.0% 1900/2000 rows, 3800 new events',
      'public.orders    100.0% 2000/2000 rows, 4000 new events',
      'public.refunds   100.0% 300/300 rows, 600 new events',
    ]);
  });

  it('on a terminal: one line redrawn in place, cleared at the end', () => {
    const out = sink(true);
    const progress = backfillProgress(out.stream);
    progress.update(page('public.orders', 1, 2));
    progress.update(page('public.orders', 2, 2));
    progress.done();
    expect(out.text().split('\r\x1b[2K').filter(Boolean).map((t) => t.replace(/\[[#.]+\] /, ''))).toEqual([
      'public.orders     50.0% 1/2 rows, 2 new events',
      'public.orders    100.0% 2/2 rows, 4 new events',
    ]);
    expect(out.text()).not.toContain('\n');
  });
});
