import { createApp, type App } from '../app.js';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import { configWarnings } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { createMetrics, mergeHooks, type AppHooks, type Metrics } from '../observe/metrics.js';
import { createProbe, type LiveProbe } from '../observe/probe.js';

export interface RunningConnector {
  app: App;
  metrics: Metrics;
  probe: LiveProbe;
  /** The admin listener, unless `admin.listen: off`. */
  admin?: AdminServer;
  /**
   * Resolves when the app has stopped (after `signal` aborts) and the listener is closed. A
   * signal that aborted before the app started resolves it without starting anything.
   */
  done: Promise<void>;
}

/**
 * `order-relay run` without the process plumbing: the app, its metrics and the admin
 * listener, stopped together when `signal` aborts. The demo runs the same thing in-process.
 */
export async function startConnector(
  config: Config,
  deps: { logger: Logger; env?: NodeJS.ProcessEnv; signal: AbortSignal; hooks?: AppHooks; listen?: string; defaultMetrics?: boolean },
): Promise<RunningConnector> {
  for (const warning of configWarnings(config)) deps.logger.warn({ component: 'config' }, warning);
  const metrics = createMetrics({ sinks: Object.keys(config.sinks), defaultMetrics: deps.defaultMetrics ?? true });
  // Bind the listener first: a port in use should stop start-up before anything connects.
  let probe: LiveProbe | undefined;
  const listen = deps.listen ?? config.admin.listen;
  let admin: AdminServer | undefined;
  try {
    if (listen !== 'off') admin = await startAdminServer({ listen, registry: metrics.registry, probe: deferred(() => probe), logger: deps.logger, config, ...(deps.env ? { env: deps.env } : {}) });
  } catch (err) {
    throw new Error(`admin listener on ${listen}: ${err instanceof Error ? err.message : String(err)} (set admin.listen to another host:port, or off)`);
  }
  let app: App;
  try {
    app = createApp(config, { logger: deps.logger, ...(deps.env ? { env: deps.env } : {}), hooks: mergeHooks(metrics.hooks, deps.hooks) });
  } catch (err) {
    await admin?.close();
    throw err;
  }
  probe = createProbe(config, app);
  metrics.attach(probe);
  // Stopped while the listener was being bound (a SIGTERM right after start): connect to
  // nothing, write nothing, close what exists.
  const run = deps.signal.aborted ? Promise.all(app.sinks.map((s) => s.close().catch(() => {}))).then(() => {}) : app.run(deps.signal);
  const done = run.finally(async () => {
    await admin?.close();
    await probe?.close();
  });
  return { app, metrics, probe, ...(admin ? { admin } : {}), done };
}

/** A probe that answers "starting" until the real one exists. */
function deferred(get: () => LiveProbe | undefined): LiveProbe {
  const starting = { ready: false, checks: [{ name: 'startup', ok: false, detail: 'starting' }] };
  return {
    live: () => get()?.live() ?? { sinks: [], sources: [] },
    snapshot: () => get()?.snapshot() ?? Promise.resolve({ at: new Date().toISOString(), sinks: [], slots: [], live: { sinks: [], sources: [] } }),
    ready: () => get()?.ready() ?? Promise.resolve(starting),
    close: async () => {},
  };
}
