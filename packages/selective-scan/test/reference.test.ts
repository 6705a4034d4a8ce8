import { discretizeDiagonal } from '@longseq/ssm-discretize';
import { freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  autoAlgorithm,
  chunkedScanRef,
  combineScanPairs,
  hillisSteeleLevels,
  mambaDiscretize,
  type ScanPair,
  selectiveScanRef,
  sequentialScanRef,
} from '../src';

/** Random pairs in the scan's range: a = e^(dt A) in (0, 1], b of order one. */
function randomPairs(count: number, seed: number): ScanPair[] {
  const random = rng(seed);
  const a = randomFloats(count, random, 0.05, 1);
  const b = randomFloats(count, random, -1, 1);
  return Array.from({ length: count }, (_, i) => ({ a: a[i]!, b: b[i]! }));
}

/** |x - y| relative to the larger magnitude, for float64 results equal up to rounding. */
function relativeGap(x: number, y: number): number {
  return Math.abs(x - y) / Math.max(Math.abs(x), Math.abs(y), 1e-300);
}

describe('the scan operator (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)', () => {
  it('is associative on random values (float64, up to rounding)', () => {
    const seed = freshSeed();
    const pairs = randomPairs(3000, seed);
    for (let i = 0; i + 2 < pairs.length; i += 3) {
      const [p, q, r] = [pairs[i]!, pairs[i + 1]!, pairs[i + 2]!];
      const left = combineScanPairs(combineScanPairs(p, q), r);
      const right = combineScanPairs(p, combineScanPairs(q, r));
      expect(relativeGap(left.a, right.a), `seed ${seed}`).toBeLessThan(1e-15);
      expect(Math.abs(left.b - right.b), `seed ${seed}`).toBeLessThan(1e-15 * (1 + Math.abs(left.b)));
    }
  });

  it('applied to a state is the two steps one after the other', () => {
    const seed = freshSeed();
    const [p, q] = randomPairs(2, seed);
    const h = 0.37;
    const both = combineScanPairs(p!, q!);
    expect(both.a * h + both.b).toBeCloseTo(q!.a * (p!.a * h + p!.b) + q!.b, 14);
  });

  it('is not commutative (order matters: the scan must keep it)', () => {
    const p = { a: 0.5, b: 1 };
    const q = { a: 0.25, b: -2 };
    expect(combineScanPairs(p, q)).not.toEqual(combineScanPairs(q, p));
  });

  it('scanning in chunks with carries equals the sequential scan, for any chunk length', () => {
    const seed = freshSeed();
    for (const count of [1, 2, 7, 64, 301]) {
      const pairs = randomPairs(count, seed + count);
      const h0 = 0.3;
      const sequential = sequentialScanRef(pairs, h0);
      for (const chunk of [1, 2, 3, 16, 64, 1000]) {
        const chunked = chunkedScanRef(pairs, chunk, h0);
        for (let t = 0; t < count; t++) {
          expect(
            Math.abs(chunked[t]! - sequential[t]!),
            `seed ${seed} L ${count} chunk ${chunk} t ${t}`,
          ).toBeLessThan(1e-14);
        }
      }
    }
  });

  it("Hillis-Steele's last level holds every prefix (the states from h0 = 0)", () => {
    const seed = freshSeed();
    const pairs = randomPairs(37, seed);
    const levels = hillisSteeleLevels(pairs);
    expect(levels).toHaveLength(1 + Math.ceil(Math.log2(37)));
    const sequential = sequentialScanRef(pairs);
    const last = levels[levels.length - 1]!;
    for (let t = 0; t < pairs.length; t++) expect(last[t]!.b).toBeCloseTo(sequential[t]!, 14);
  });
});

describe('selectiveScanRef', () => {
  it("discretizes as @longseq/ssm-discretize's 'mamba' method: dA = exp(dt a), dBu = dt b u", () => {
    const seed = freshSeed();
    const random = rng(seed);
    const n = 16;
    const a = randomFloats(n, random, -8, -0.1);
    const b = randomFloats(n, random, -1, 1);
    for (const dt of [1e-3, 0.07, 0.5, 3]) {
      const u = random() * 2 - 1;
      const shared = discretizeDiagonal(a, dt, b, { method: 'mamba' });
      for (let s = 0; s < n; s++) {
        const mine = mambaDiscretize(dt, a[s]!, b[s]!, u);
        expect(relativeGap(mine.dA, shared.A[s]!), `seed ${seed}`).toBeLessThan(1e-15);
        expect(relativeGap(mine.dBu, shared.B[s]! * u), `seed ${seed}`).toBeLessThan(1e-15);
      }
    }
  });

  it('follows mamba_ssm selective_scan_ref on a hand-checked case', () => {
    // batch 1, d 1, L 2, n 1; A = -1, B = 2, C = 3, D = 0.5, dt = 0.1 and 0.2, u = 1 and -1.
    const u = { shape: [1, 1, 2], data: [1, -1] };
    const delta = { shape: [1, 1, 2], data: [0.1, 0.2] };
    const A = { shape: [1, 1], data: [-1] };
    const B = { shape: [1, 1, 2], data: [2, 2] };
    const C = { shape: [1, 1, 2], data: [3, 3] };
    const D = { shape: [1], data: [0.5] };
    const { y, lastState } = selectiveScanRef(u, delta, A, B, C, { D, returnLastState: true });
    const h1 = 0.1 * 2 * 1;
    const h2 = Math.exp(-0.2) * h1 + 0.2 * 2 * -1;
    expect(y.data[0]).toBeCloseTo(3 * h1 + 0.5, 14);
    expect(y.data[1]).toBeCloseTo(3 * h2 - 0.5, 14);
    expect(lastState!.data[0]).toBeCloseTo(h2, 14);
  });

  it('uses softplus with the threshold 20 and the gate silu(z)', () => {
    const u = { shape: [1, 1, 1], data: [1] };
    const A = { shape: [1, 1], data: [0] };
    const B = { shape: [1, 1], data: [1] };
    const C = { shape: [1, 1], data: [1] };
    // A = 0 and time-invariant B, C: y = dt * u, so y shows dt.
    const dtOf = (raw: number) =>
      selectiveScanRef(u, { shape: [1, 1, 1], data: [raw] }, A, B, C, { deltaSoftplus: true }).y.data[0]!;
    expect(dtOf(25)).toBe(25);
    expect(dtOf(0)).toBeCloseTo(Math.log(2), 15);
    expect(dtOf(-30)).toBeCloseTo(Math.exp(-30), 25);
    const gated = selectiveScanRef(u, { shape: [1, 1, 1], data: [2] }, A, B, C, {
      z: { shape: [1, 1, 1], data: [1.5] },
    }).y.data[0]!;
    expect(gated).toBeCloseTo(2 * (1.5 / (1 + Math.exp(-1.5))), 14);
  });

  it('gives channel c of a grouped B the group floor(c / (d / g))', () => {
    // d 4, g 2: channels 0, 1 use group 0 (B = 1), channels 2, 3 use group 1 (B = 10).
    const u = { shape: [1, 4, 1], data: [1, 1, 1, 1] };
    const delta = { shape: [1, 4, 1], data: [1, 1, 1, 1] };
    const A = { shape: [4, 1], data: [0, 0, 0, 0] };
    const B = { shape: [1, 2, 1, 1], data: [1, 10] };
    const C = { shape: [4, 1], data: [1, 1, 1, 1] };
    expect(Array.from(selectiveScanRef(u, delta, A, B, C).y.data)).toEqual([1, 1, 10, 10]);
  });
});

describe("algorithm: 'auto'", () => {
  it('picks sequential for decoding and for many channels, parallel for few channels and long L', () => {
    expect(autoAlgorithm(1, 4, 1)).toBe('sequential');
    expect(autoAlgorithm(1, 4, 32)).toBe('sequential');
    expect(autoAlgorithm(1, 4, 33)).toBe('parallel');
    expect(autoAlgorithm(8, 2048, 4096)).toBe('sequential');
    expect(autoAlgorithm(1, 1536, 65536)).toBe('parallel');
  });
});
