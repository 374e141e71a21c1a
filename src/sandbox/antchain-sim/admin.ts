import type { IncomingMessage, ServerResponse } from 'node:http';
import { faultsPatchSchema, type AntchainFaults } from './faults.js';
import type { SimStats } from './state.js';

/**
 * `/__sim/*`: the simulator's control surface for out-of-process tools (demo, chaos runs).
 *   GET  /__sim/stats   → SimStats
 *   GET  /__sim/faults  → current faults
 *   POST /__sim/faults  → JSON body = partial faults; answers the resulting faults
 *   POST /__sim/reset   → forget effects and counters, re-seed
 */
export interface SimControl {
  stats(): SimStats;
  faults(): AntchainFaults;
  setFaults(patch: Partial<AntchainFaults>): AntchainFaults;
  reset(): void;
}

export async function handleAdmin(req: IncomingMessage, res: ServerResponse, path: string, sim: SimControl): Promise<void> {
  const route = `${req.method ?? 'GET'} ${path}`;
  if (route === 'GET /__sim/stats') return send(res, 200, sim.stats());
  if (route === 'GET /__sim/faults') return send(res, 200, sim.faults());
  if (route === 'POST /__sim/reset') {
    await drain(req);
    sim.reset();
    return send(res, 200, { ok: true });
  }
  if (route === 'POST /__sim/faults') {
    let body: unknown;
    try {
      body = JSON.parse((await drain(req)) || '{}');
    } catch {
      return send(res, 400, { error: 'body must be JSON' });
    }
    const patch = faultsPatchSchema.safeParse(body);
    if (!patch.success) return send(res, 400, { error: patch.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') });
    return send(res, 200, sim.setFaults(patch.data));
  }
  return send(res, 404, { error: `no admin route ${route}` });
}

async function drain(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}
