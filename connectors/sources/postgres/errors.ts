/** The slot is streaming to another process: this instance waits as a hot standby. */
export class SlotInUseError extends Error {
  override readonly name = 'SlotInUseError';
  constructor(slot: string, detail: string) {
    super(`replication slot "${slot}" is in use by another connection (${detail}); waiting for it to be released`);
  }
}

/** The slot does not exist and `create` is off (or it vanished while we had a checkpoint). */
export class SlotMissingError extends Error {
  override readonly name = 'SlotMissingError';
  constructor(slot: string, hint: string) {
    super(`replication slot "${slot}" does not exist: ${hint}`);
  }
}

export class PublicationError extends Error {
  override readonly name = 'PublicationError';
}

export function pgCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
