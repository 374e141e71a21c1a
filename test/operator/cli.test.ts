import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, REPO } from '../helpers/pipeline.js';
import { operatorConfig, seedLedger, startSims } from './helpers.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO, 'bin/order-relay.js'), ...args], { cwd: REPO, env: { ...process.env, LOG_LEVEL: 'warn', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let configPath: string;

beforeAll(async () => {
  db = await createTestDatabase('cli_ops');
  await createOrderTables(db.pool);
  sims = await startSims();
  configPath = operatorConfig(db.url, sims).path;
  await seedLedger(db.pool, 'order_relay');
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

const COMMANDS = ['run', 'migrate', 'status', 'replay', 'backfill', 'doctor', 'preview', 'demo', 'keygen', 'simulate'];

describe('order-relay commands', () => {
  it('each has --help', async () => {
    const { program } = await import('../../src/cli/program.js');
    expect(program.commands.map((c) => c.name()).sort()).toEqual([...COMMANDS].sort());
    for (const c of program.commands) {
      expect(c.helpInformation()).toMatch(new RegExp(`^Usage: order-relay ${c.name()} `));
      expect(c.description().length).toBeGreaterThan(20);
    }
    // And through the process, as an operator types it.
    const [top, status] = await Promise.all([cli(['--help']), cli(['status', '--help'])]);
    for (const c of COMMANDS) expect(top.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    expect(status).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: order-relay status \[options\]\n[\s\S]*--json/) });
  });

  it('fail with a non-zero exit and a one-line reason', async () => {
    const broken = operatorConfig('postgres://nobody@127.0.0.1:9/none', sims).path;
    const cases: Array<[string[], RegExp, NodeJS.ProcessEnv?]> = [
      [['status', '-c', 'nope.yaml'], /^order-relay status: cannot read config file nope\.yaml: ENOENT\n$/],
      [['doctor', '-c', 'config/demo.yaml'], /^order-relay doctor: config\/demo\.yaml refers to unset environment variables: database\.url: environment variable DATABASE_URL is not set; .+\n$/, { DATABASE_URL: '' }],
      [['replay', '-c', configPath], /^order-relay replay: say which parked deliveries: --event <id>, --sink <name>, --code <EVENT_CODE>, or --all\n$/],
      [['status', '-c', broken], /^order-relay status: ledger database: .*ECONNREFUSED.*\n$/],
    ];
    const results = await Promise.all(cases.map(([args, , env]) => cli(args, env)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).not.toBe(0);
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![1]);
    });
  });

  it('status --json prints the known figures; replay --dry-run lists and changes nothing; doctor exits 1 on failures', async () => {
    const [status, dry, doc] = await Promise.all([
      cli(['status', '-c', configPath, '--json']),
      cli(['replay', '-c', configPath, '--all', '--dry-run', '--json']),
      cli(['doctor', '-c', configPath, '--offline', '--json'], { ...sims.env, ANTCHAIN_ACCESS_SECRET: '' }),
    ]);
    expect(status.code).toBe(0);
    const r = JSON.parse(status.stdout) as { sinks: Array<{ sink: string; backlog: number; parked: number; retrying: number }>; parkedInputs: { count: number } };
    expect(r.sinks.map((s) => [s.sink, s.backlog, s.retrying, s.parked])).toEqual([['antchain', 3, 1, 1], ['zhima', 0, 0, 1]]);
    expect(r.parkedInputs.count).toBe(2);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ action: 'replay', dryRun: true, changed: 0, matched: [{ sink: 'antchain' }, { sink: 'zhima' }] });
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM order_relay.deliveries WHERE status = 'rejected'`)).rows[0].n).toBe(2);
    expect(doc.code).toBe(1);
    expect(doc.stderr).toMatch(/^order-relay doctor: 1 check failed \(credentials antchain\)\n$/);
    expect(JSON.parse(doc.stdout).find((c: { name: string }) => c.name === 'credentials antchain')).toMatchObject({ status: 'fail' });
  });
});
