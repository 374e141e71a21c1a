/** Capped exponential backoff with jitter: half fixed, half random, so retries of a burst spread out. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  return Math.round(base / 2 + random() * (base / 2));
}

/** A token bucket: `rate` requests per second, bursts up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();

  constructor(
    private readonly rate: number,
    private readonly burst = Math.max(1, rate),
  ) {
    this.tokens = this.burst;
  }

  /** Milliseconds to wait before the next request may go (0 = now); takes the token. */
  take(): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }
}
