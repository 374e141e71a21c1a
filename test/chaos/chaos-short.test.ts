import { describe, expect, it } from 'vitest';
import { renderReport, runChaos, SHORT } from './chaos.js';

/**
 * The short chaos run: SIGKILLs of the connector, a Postgres restart and simulator faults
 * during a seeded load, then every invariant of exactly-once. `npm run chaos` is the long run;
 * CHAOS_SEED=<n> replays a failure.
 */
describe('chaos (short)', () => {
  it('loses nothing, doubles nothing, keeps order and never acknowledges past the ledger', async () => {
    const seed = Number(process.env.CHAOS_SEED ?? 20261121);
    const lines: string[] = [];
    const report = await runChaos({ ...SHORT, seed, kafka: false, log: (l) => lines.push(l) });
    const summary = `${lines.join('\n')}\n${renderReport(report)}`;
    expect(report.kills, summary).toBe(SHORT.kills);
    expect(report.pg_restarts, summary).toBe(SHORT.pgRestarts);
    expect(report.events_expected, summary).toBeGreaterThan(100);
    expect(
      {
        lost: report.lost, duplicates: report.duplicates, order_violations: report.order_violations, acked_beyond_ledger: report.acked_beyond_ledger, key_conflicts: report.key_conflicts,
        ledger_inconsistent: report.ledger_inconsistent, drained: report.drained,
      },
      summary,
    ).toEqual({ lost: 0, duplicates: 0, order_violations: 0, acked_beyond_ledger: 0, key_conflicts: 0, ledger_inconsistent: 0, drained: true });
    expect(report.ok, summary).toBe(true);
  }, 120_000);
});
