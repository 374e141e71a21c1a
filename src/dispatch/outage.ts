import type { Logger } from '../log.js';

/**
 * One operation's run of failures (claiming from an unreachable ledger, say), logged as two
 * lines: the first failure, and the success that ends the run with how many failed and for
 * how long. A 13 s ledger outage used to print a line per failed claim, over a hundred.
 */
export class FailureRun {
  private failures = 0;
  private since = 0;
  private lastError = '';

  constructor(
    private readonly log: Logger,
    /** What failed, as the log says it: "claiming deliveries". */
    private readonly what: string,
  ) {}

  /** True while the operation fails. */
  get failing(): boolean {
    return this.failures > 0;
  }

  failed(err: unknown, fields: Record<string, unknown> = {}): void {
    this.lastError = String(err);
    if (this.failures++ === 0) {
      this.since = Date.now();
      this.log.warn({ err: this.lastError, ...fields }, `${this.what} failed; retrying (one more line when it works again)`);
    }
  }

  succeeded(): void {
    if (this.failures === 0) return;
    this.log.info(
      { failures: this.failures, failingForMs: Date.now() - this.since, lastErr: this.lastError },
      `${this.what} works again after ${this.failures} failed attempt${this.failures > 1 ? 's' : ''}`,
    );
    this.failures = 0;
  }
}
