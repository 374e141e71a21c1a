/**
 * Who owns and who streams the slot, seen from Postgres, for the chaos run with several
 * connector processes (`--instances N`).
 *
 * - The owner: the process holding the slot's advisory lock. Its lock connection's
 *   application_name is `order-relay-slot-owner host:pid` (connectors/sources/postgres/ownership.ts).
 * - The streamer: the process whose connection the slot's walsender serves
 *   (pg_replication_slots.active_pid). The walsender's client_port is the local port of the
 *   process's TCP socket to Postgres; /proc/net/tcp names that socket's inode and
 *   /proc/<pid>/fd the process holding it.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import pg from 'pg';
import { sleep } from '../bench/harness.js';

export interface SlotView {
  /** Pid of the process holding the slot's lock (from its application_name), if any. */
  lockPid: number | null;
  /** The walsender streaming the slot, if the slot is active. */
  walsenderPid: number | null;
  /** The process the walsender streams to, when it is one of the candidates. */
  streamerPid: number | null;
}

/** The TCP sockets of this host, from /proc/net/tcp{,6}: ports, state (01 = established) and inode. */
function tcpSockets(): Array<{ local: number; remote: number; state: string; inode: string }> {
  const out: Array<{ local: number; remote: number; state: string; inode: string }> = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      out.push({ local: parseInt(f[1]!.split(':')[1]!, 16), remote: parseInt(f[2]!.split(':')[1]!, 16), state: f[3]!, inode: f[9]! });
    }
  }
  return out;
}

/** The connection's local port → the socket's inode. */
function socketInode(localPort: number, remotePort: number): string | undefined {
  return tcpSockets().find((s) => s.local === localPort && s.remote === remotePort)?.inode;
}

/** Inodes of the established TCP connections to `remotePort`. */
function connectionsTo(remotePort: number): Set<string> {
  return new Set(tcpSockets().filter((s) => s.state === '01' && s.remote === remotePort).map((s) => s.inode));
}

/** Socket inodes a process holds. */
function socketInodes(pid: number): string[] {
  const out: string[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.push(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Which of `pids` holds the socket with this inode. */
function socketHolder(inode: string, pids: number[]): number | null {
  const target = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return pid;
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return null;
}

export class SlotProbe {
  private readonly pool: pg.Pool;
  private readonly serverPort: number;

  constructor(
    url: string,
    private readonly slot: string,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'chaos-slot-probe' });
    // Postgres restarts during the run: a failed query is retried by the caller.
    this.pool.on('error', () => {});
    this.serverPort = Number(new URL(url).port || 5432);
  }

  /** Whether the process has a connection to Postgres open (a connector still starting has none). */
  connected(pid: number): boolean {
    const open = connectionsTo(this.serverPort);
    return socketInodes(pid).some((i) => open.has(i));
  }

  /** One look; `candidates` are the live connector pids the walsender may stream to. */
  async view(candidates: number[]): Promise<SlotView> {
    const { rows } = await this.pool.query<{ lock_app: string | null; active_pid: number | null; client_port: number | null }>(
      `SELECT (SELECT a.application_name
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND (l.classid::int, l.objid::int) = (hashtext('order-relay:slot'), hashtext($1::text)) AND l.objsubid = 2
                LIMIT 1) AS lock_app,
              s.active_pid, w.client_port
         FROM pg_replication_slots s LEFT JOIN pg_stat_activity w ON w.pid = s.active_pid
        WHERE s.slot_name = $1`,
      [this.slot],
    );
    const r = rows[0];
    const m = /:(\d+)$/.exec(r?.lock_app ?? '');
    const lockPid = m ? Number(m[1]) : null;
    const walsenderPid = r?.active_pid ?? null;
    let streamerPid: number | null = null;
    if (walsenderPid !== null && r?.client_port) {
      const inode = socketInode(r.client_port, this.serverPort);
      if (inode) streamerPid = socketHolder(inode, candidates);
    }
    return { lockPid, walsenderPid, streamerPid };
  }

  /** `view`, retried while Postgres is unavailable; null when it stays so past `ms`. */
  async viewRetrying(candidates: () => number[], ms = 5000): Promise<SlotView | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        return await this.view(candidates());
      } catch {
        if (Date.now() > deadline) return null;
        await sleep(100);
      }
    }
  }

  /**
   * After the owner `killedPid` got its signal at `since`: polls until a live process other
   * than it is streaming the slot (a walsender other than `oldWalsender`, serving one of
   * `candidates()`). Resolves with the time and that process's pid, or null after `timeoutMs`.
   */
  async awaitTakeover(since: number, killedPid: number, oldWalsender: number | null, candidates: () => number[], timeoutMs: number, everyMs = 25): Promise<{ ms: number; pid: number; lockPid: number | null } | null> {
    while (Date.now() - since < timeoutMs) {
      try {
        const v = await this.view(candidates().filter((p) => p !== killedPid));
        if (v.walsenderPid !== null && v.walsenderPid !== oldWalsender && v.streamerPid !== null) return { ms: Date.now() - since, pid: v.streamerPid, lockPid: v.lockPid };
      } catch {
        /* Postgres briefly unavailable */
      }
      await sleep(everyMs);
    }
    return null;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}
