import { describe, expect, it } from 'vitest';
import { FAILOVER_TARGET_S, renderReport, runChaos, SHORT, type ChaosReport } from './chaos.js';

/**
 * The short chaos run: SIGKILLs of the connector, a Postgres restart and simulator faults
 * during a seeded load, then every invariant of exactly-once. `npm run chaos` is the long run;
 * CHAOS_SEED=<n> replays a failure.
 */
describe('chaos (short)', () => {
  const seed = Number(process.env.CHAOS_SEED ?? 20261121);

  function expectInvariants(report: ChaosReport, summary: string, kills: number): void {
    expect(report.kills, summary).toBe(kills);
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
  }

  it('loses nothing, doubles nothing, keeps order and never acknowledges past the ledger', async () => {
    const lines: string[] = [];
    const report = await runChaos({ ...SHORT, seed, kafka: false, log: (l) => lines.push(l) });
    expectInvariants(report, `${lines.join('\n')}\n${renderReport(report)}`, SHORT.kills);
  }, 120_000);

  it('two instances on one ledger: the same, with SIGKILLs of the slot owner and of the standby, and another process taking the slot over', async () => {
    const lines: string[] = [];
    // Six restarts: four SIGKILLs, so both roles are hit (the plan's last SIGKILLs go to a role not hit yet).
    const kills = 6;
    const report = await runChaos({ ...SHORT, kills, seed, instances: 2, kafka: false, log: (l) => lines.push(l) });
    const summary = `${lines.join('\n')}\n${renderReport(report)}`;
    expectInvariants(report, summary, kills);
    expect(report.instances, summary).toBe(2);
    expect(report.kills_by_role!.SIGKILL.owner, summary).toBeGreaterThanOrEqual(1);
    expect(report.kills_by_role!.SIGKILL.standby, summary).toBeGreaterThanOrEqual(1);
    // Every SIGKILL of the owner was followed by another process streaming the slot, in time.
    expect(report.failover_timeouts, summary).toBe(0);
    expect(report.failover_s!.count, summary).toBe(report.kills_by_role!.SIGKILL.owner);
    expect(report.failover_s!.max!, summary).toBeLessThanOrEqual(FAILOVER_TARGET_S);
  }, 120_000);
});
