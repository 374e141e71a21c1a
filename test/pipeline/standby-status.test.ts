import { describe, expect, it } from 'vitest';
import { standbyStatusUpdate } from '../../connectors/sources/postgres/standby-status.js';

describe('standby status update', () => {
  it('reports exactly the LSN it is given as written, flushed and applied, with microseconds since 2000', () => {
    const lsn = (0x5n << 32n) | 0xcdf030n; // 5/CDF030
    const msg = standbyStatusUpdate(lsn, Date.UTC(2000, 0, 1, 0, 0, 1, 500));
    expect(msg.length).toBe(34);
    expect(String.fromCharCode(msg[0]!)).toBe('r');
    expect(msg.readBigUInt64BE(1)).toBe(lsn);
    expect(msg.readBigUInt64BE(9)).toBe(lsn); // becomes confirmed_flush_lsn: never one past
    expect(msg.readBigUInt64BE(17)).toBe(lsn);
    expect(msg.readBigInt64BE(25)).toBe(1_500_000n);
    expect(msg[33]).toBe(0);
    expect(standbyStatusUpdate(0xffffffffn, 0, true).readBigUInt64BE(9)).toBe(0xffffffffn); // no carry games at a 4 GB boundary
    expect(standbyStatusUpdate(1n, 0, true)[33]).toBe(1);
  });
});
