import { describe, expect, it } from 'vitest';
import { BufferPool, sizeClass } from '../src/pool';

const fake = (label: string) => ({ label }) as unknown as GPUBuffer;

describe('BufferPool', () => {
  it('reuses buffers by size class', () => {
    const pool = new BufferPool(1 << 20);
    const a = fake('a');
    expect(pool.give(a, 4096)).toEqual([]);
    expect(pool.take(8192)).toBeUndefined();
    expect(pool.take(4096)).toBe(a);
    expect(pool.bytes).toBe(0);
  });

  it('evicts the buffers pooled longest ago to stay within its budget', () => {
    const pool = new BufferPool(10_000);
    const [a, b, c] = [fake('a'), fake('b'), fake('c')];
    pool.give(a, 4000);
    pool.give(b, 4000);
    // c needs 4000 more: a, the oldest, goes.
    expect(pool.give(c, 4000)).toEqual([a]);
    expect(pool.count).toBe(2);
    expect(pool.take(4000)).toBe(c);
    expect(pool.take(4000)).toBe(b);
    // A buffer over the whole budget is never pooled.
    const huge = fake('huge');
    expect(pool.give(huge, 20_000)).toEqual([huge]);
    expect(pool.count).toBe(0);
  });

  it('size classes bound the slack at 12.5% above 4 KiB', () => {
    for (const bytes of [1, 17, 4096, 5000, 1_000_000, 268_435_456]) {
      const cls = sizeClass(bytes, 2 ** 31);
      expect(cls).toBeGreaterThanOrEqual(bytes);
      if (bytes > 4096) expect(cls / bytes).toBeLessThanOrEqual(1.125);
    }
  });
});
