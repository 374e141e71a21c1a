/** Small text helpers for the CLI's human output. */

export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function age(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)}h`;
  return `${(seconds / 86_400).toFixed(1)}d`;
}

export function clip(text: string | null | undefined, max: number): string {
  if (!text) return '-';
  const one = text.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/**
 * A progress line on a terminal (redrawn in place), or a plain line every few seconds when
 * the output is a file or a pipe.
 */
export function progressReporter(stream: NodeJS.WriteStream | NodeJS.WritableStream, options: { intervalMs?: number } = {}) {
  const tty = 'isTTY' in stream && stream.isTTY === true;
  const every = options.intervalMs ?? (tty ? 0 : 2_000);
  let last = 0;
  let drawn = false;
  return {
    tty,
    update(text: string, force = false): void {
      const now = Date.now();
      if (!force && now - last < every) return;
      last = now;
      if (tty) {
        stream.write(`\r\x1b[2K${text}`);
        drawn = true;
      } else stream.write(`${text}\n`);
    },
    done(text?: string): void {
      if (tty && drawn) stream.write(`\r\x1b[2K`);
      if (text) stream.write(`${text}\n`);
      drawn = false;
    },
  };
}

export function bar(done: number, total: number, width = 30): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.round(ratio * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(ratio * 100).toFixed(1).padStart(5)}%`;
}
