import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFaults } from '../../src/cli/simulate.js';
import { REPO } from '../helpers/pipeline.js';

describe('order-relay simulate --faults', () => {
  it('a bad value exits 1 with one line naming the field, not zod\'s JSON', async () => {
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(REPO, 'bin/order-relay.js'), 'simulate', 'antchain', '--access-key', 'AK', '--faults', '{"http5xxRate":2}'],
        { cwd: REPO, env: { ...process.env, ANTCHAIN_ACCESS_SECRET: 'secret' } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'order-relay simulate: --faults: http5xxRate: a probability, a number from 0 to 1, got 2\n' });
  });

  it('says what each field takes, names unknown fields with the known ones, and passes good values through', () => {
    expect(() => parseFaults('zhima', '{"latencyMs":-5,"hangRate":"0.1"}')).toThrow(
      /^--faults: latencyMs: whole milliseconds from 0 to 600000, got -5; hangRate: a probability, a number from 0 to 1, got "0.1"$/,
    );
    expect(() => parseFaults('antchain', '{"code20000Rate":0.1}')).toThrow(
      '--faults: "code20000Rate" is no fault setting of the antchain simulator (it has latencyMs, jitterMs, http5xxRate, needRetryRate, failedNeedRetryRate, hangRate, dropAfterCommitRate)',
    );
    expect(() => parseFaults('antchain', '{http5xxRate: 1}')).toThrow(`--faults: not JSON; e.g. '{"http5xxRate":0.1,"latencyMs":20}'`);
    expect(() => parseFaults('antchain', '[0.1]')).toThrow(/^--faults: expected a JSON object of fault settings/);
    expect(parseFaults('zhima', '{"code20000Rate":0.1,"latencyMs":20}')).toEqual({ code20000Rate: 0.1, latencyMs: 20 });
  });
});
