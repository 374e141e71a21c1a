/**
 * Postgres LSNs come in two spellings here: "0/15082B8" (replication message header) and
 * "00000000/01508468" (pgoutput begin/commit). Compare them as 64-bit numbers, never as
 * strings and never by concatenating the hex halves.
 */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: "${lsn}"`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Normalises either spelling to Postgres' own ("16/B374D848"). */
export function normalizeLsn(lsn: string): string {
  return formatLsn(parseLsn(lsn));
}

export function lsnMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
