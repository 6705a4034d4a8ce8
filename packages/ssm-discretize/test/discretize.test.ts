import { readFileSync } from 'node:fs';
import { ArgumentError, ShapeError } from '@longseq/backend';
import { freshSeed, rng } from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  DISCRETIZATION_METHODS,
  MAX_DENSE_STATE,
  type DiscretizationMethod,
  type Matrix,
  discretize,
  denseKernelRef,
  discretizeDiagonal,
  expm,
  impulseResponse,
  toMatrix,
} from '../src';

interface GoldenSystem {
  A: number[][];
  B: number[][];
  C: number[][];
  D: number[][];
}
interface GoldenCase extends GoldenSystem {
  n: number;
  m: number;
  p: number;
  dt: number;
  zoh: GoldenSystem;
  bilinear: GoldenSystem;
  euler: GoldenSystem;
  backward_diff: GoldenSystem;
  zoh_impulse: number[][][];
}
const golden = JSON.parse(
  readFileSync(new URL('../../../../shared/golden/discretize.json', import.meta.url), 'utf8'),
) as { cases: GoldenCase[] };

function maxDiff(a: Matrix, rows: number[][]): number {
  const b = toMatrix(rows, 'golden');
  expect([a.rows, a.cols]).toEqual([b.rows, b.cols]);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

function randomMatrix(rows: number, cols: number, random: () => number, s = 1): number[][] {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => (random() * 2 - 1) * s));
}

describe('discretize (dense) against SciPy cont2discrete', () => {
  const methods = ['zoh', 'bilinear', 'euler', 'backward_diff'] as const;
  for (const [i, c] of golden.cases.entries()) {
    for (const method of methods) {
      it(`case ${i} (n ${c.n}, m ${c.m}, p ${c.p}): ${method} matches A, B, C, D to 1e-12`, () => {
        const d = discretize(c, c.dt, { method });
        const want = c[method];
        for (const key of ['A', 'B', 'C', 'D'] as const)
          expect(maxDiff(d[key], want[key])).toBeLessThan(1e-12);
      });
    }
  }
  it('gbt with alpha 1/2, 0, 1 equals bilinear, euler, backward_diff', () => {
    const c = golden.cases[1]!;
    for (const [alpha, method] of [
      [0.5, 'bilinear'],
      [0, 'euler'],
      [1, 'backward_diff'],
    ] as const) {
      const d = discretize(c, c.dt, { method: 'gbt', alpha });
      for (const key of ['A', 'B', 'C', 'D'] as const)
        expect(maxDiff(d[key], c[method][key])).toBeLessThan(1e-12);
    }
  });
});

describe('impulse response against SciPy dimpulse', () => {
  for (const [i, c] of golden.cases.entries()) {
    it(`case ${i}: dimpulse of the ZOH system = (D, K_0, K_1, ...) with K_l = C A-bar^l B-bar`, () => {
      const d = discretize(c, c.dt, { method: 'zoh' });
      const L = c.zoh_impulse[0]!.length;
      const kernel = denseKernelRef(d, L - 1);
      const impulse = impulseResponse(d, L);
      let err = 0;
      let scale = 0;
      for (let input = 0; input < c.m; input++) {
        for (let l = 0; l < L; l++) {
          for (let out = 0; out < c.p; out++) {
            const want = c.zoh_impulse[input]![l]![out]!;
            scale = Math.max(scale, Math.abs(want));
            err = Math.max(err, Math.abs(impulse[(l * c.p + out) * c.m + input]! - want));
            const k = l === 0 ? c.D[out]![input]! : kernel[((l - 1) * c.p + out) * c.m + input]!;
            err = Math.max(err, Math.abs(k - want));
          }
        }
      }
      // Relative to the largest entry: 31 powers of A-bar grow the response.
      expect(err / scale).toBeLessThan(1e-13);
    });
  }
});

describe('ZOH on random systems', () => {
  it('B-bar from the block exponential equals A^-1 (A-bar - I) B when A is invertible', () => {
    const random = rng(freshSeed());
    const n = 6;
    const A = randomMatrix(n, n, random, 2);
    const B = randomMatrix(n, 2, random);
    const d = discretize({ A, B, C: randomMatrix(1, n, random), D: [[0, 0]] }, 0.37, { method: 'zoh' });
    // A B-bar = (A-bar - I) B
    let err = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < 2; j++) {
        let lhs = 0;
        let rhs = 0;
        for (let k = 0; k < n; k++) {
          lhs += A[i]![k]! * d.B.data[k * 2 + j]!;
          rhs += (d.A.data[i * n + k]! - (i === k ? 1 : 0)) * B[k]![j]!;
        }
        err = Math.max(err, Math.abs(lhs - rhs));
      }
    }
    expect(err).toBeLessThan(1e-12);
  });
});

describe('expm', () => {
  it('matches exp on a diagonal matrix and a rotation generator, scaled up to norm 200', () => {
    const e = expm(
      toMatrix(
        [
          [-3, 0],
          [0, 2.5],
        ],
        'a',
      ),
    );
    expect(e.data[0]).toBeCloseTo(Math.exp(-3), 15);
    expect(Math.abs(e.data[3]! - Math.exp(2.5)) / Math.exp(2.5)).toBeLessThan(1e-14);
    const theta = 200;
    const r = expm(
      toMatrix(
        [
          [0, -theta],
          [theta, 0],
        ],
        'a',
      ),
    );
    expect(Math.abs(r.data[0]! - Math.cos(theta))).toBeLessThan(1e-11);
    expect(Math.abs(r.data[2]! - Math.sin(theta))).toBeLessThan(1e-11);
  });
});

describe('discretizeDiagonal', () => {
  it('equals the dense formulas on diag(A) for every method (real and complex)', () => {
    const random = rng(freshSeed());
    const n = 5;
    const a = Array.from({ length: n }, () => -random() * 3);
    const b = Array.from({ length: n }, () => random() * 2 - 1);
    a[2] = 0; // the A -> 0 limit of ZOH
    const dt = 0.3;
    const A = a.map((v, i) => a.map((_, j) => (i === j ? v : 0)));
    const B = b.map((v) => [v]);
    for (const method of DISCRETIZATION_METHODS) {
      const options = method === 'gbt' ? { method, alpha: 0.3 } : { method };
      const dense = discretize({ A, B, C: [a.map(() => 1)], D: [[0]] }, dt, options);
      const diag = discretizeDiagonal(a, dt, b, options);
      for (let i = 0; i < n; i++) {
        expect(Math.abs(diag.A[i]! - dense.A.data[i * n + i]!)).toBeLessThan(1e-14);
        expect(Math.abs(diag.B[i]! - dense.B.data[i]!)).toBeLessThan(1e-14);
      }
    }
  });

  it('complex ZOH: B-bar = (exp(dt a) - 1) / a * b, with the a -> 0 limit dt * b', () => {
    const a = { re: [-0.5, -1e-9, 0], im: [3, 1e-9, 0] };
    const b = { re: [1, 2, 0.5], im: [0.5, 0, -1] };
    const dt = 0.1;
    const out = discretizeDiagonal(a, dt, b, { method: 'zoh' });
    for (let k = 0; k < 3; k++) {
      const er = Math.exp(dt * a.re[k]!) * Math.cos(dt * a.im[k]!);
      const ei = Math.exp(dt * a.re[k]!) * Math.sin(dt * a.im[k]!);
      expect(out.A.re[k]).toBeCloseTo(er, 15);
      expect(out.A.im[k]).toBeCloseTo(ei, 15);
      const mod = a.re[k]! ** 2 + a.im[k]! ** 2;
      // Reference: (e - 1) / a * b, or dt * b (1 + dt a / 2) near 0.
      let fr: number;
      let fi: number;
      if (mod > 1e-12) {
        fr = ((er - 1) * a.re[k]! + ei * a.im[k]!) / mod;
        fi = (ei * a.re[k]! - (er - 1) * a.im[k]!) / mod;
      } else {
        fr = dt * (1 + (dt * a.re[k]!) / 2);
        fi = dt * ((dt * a.im[k]!) / 2);
      }
      expect(out.B.re[k]).toBeCloseTo(fr * b.re[k]! - fi * b.im[k]!, 13);
      expect(out.B.im[k]).toBeCloseTo(fr * b.im[k]! + fi * b.re[k]!, 13);
    }
  });

  it('mamba: A-bar = exp(dt A), B-bar = dt B', () => {
    const out = discretizeDiagonal([-1, -2], 0.25, [3, 4], { method: 'mamba' });
    expect(Array.from(out.A)).toEqual([Math.exp(-0.25), Math.exp(-0.5)]);
    expect(Array.from(out.B)).toEqual([0.75, 1]);
  });
});

describe('discretize: bad input', () => {
  const ok = {
    A: [
      [-1, 0],
      [0, -2],
    ],
    B: [[1], [1]],
    C: [[1, 1]],
    D: [[0]],
  };
  it('typed errors naming the argument', () => {
    expect(() => discretize({ ...ok, A: [[1, 2]] }, 0.1)).toThrow(ShapeError);
    expect(() => discretize({ ...ok, A: [[1, 2]] }, 0.1)).toThrow(/^A:/);
    expect(() => discretize({ ...ok, B: [[1]] }, 0.1)).toThrow(/^B:/);
    expect(() => discretize({ ...ok, C: [[1]] }, 0.1)).toThrow(/^C:/);
    expect(() => discretize({ ...ok, D: [[0, 0]] }, 0.1)).toThrow(/^D:/);
    expect(() => discretize({ ...ok, A: [[1, 2], [3]] }, 0.1)).toThrow(ShapeError);
    for (const dt of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => discretize(ok, dt)).toThrow(/^dt: expected a finite number > 0/);
    expect(() => discretize(ok, 0.1, { method: 'foh' as DiscretizationMethod })).toThrow(ArgumentError);
    expect(() => discretize(ok, 0.1, { method: 'gbt' })).toThrow(/^options.alpha/);
    expect(() => discretize(ok, 0.1, { method: 'zoh', alpha: 0.5 })).toThrow(/^options.alpha/);
    expect(() =>
      discretize(
        {
          ...ok,
          A: [
            [Number.NaN, 0],
            [0, 1],
          ],
        },
        0.1,
      ),
    ).toThrow(/^A\[0\]/);
    // Unsupported size: the dense float64 routines stop at MAX_DENSE_STATE states.
    const n = MAX_DENSE_STATE + 1;
    const big = { rows: n, cols: n, data: new Float64Array(n * n) };
    const tall = { rows: n, cols: 1, data: new Float64Array(n) };
    expect(() => discretize({ A: big, B: tall, C: [[0]], D: [[0]] }, 0.1)).toThrow(
      /^A: expected a state size n <= 1024/,
    );
  });
  it('singular I - alpha dt A for bilinear and gbt names A', () => {
    // I - dt/2 A = 0 when A = (2 / dt) I.
    const dt = 0.5;
    const A = [
      [4, 0],
      [0, 4],
    ];
    expect(() => discretize({ ...ok, A }, dt, { method: 'bilinear' })).toThrow(ArgumentError);
    expect(() => discretize({ ...ok, A }, dt, { method: 'bilinear' })).toThrow(
      /^A: expected I - alpha \* dt \* A invertible/,
    );
    expect(() =>
      discretize(
        {
          ...ok,
          A: [
            [2, 0],
            [0, 1],
          ],
        },
        0.5,
        { method: 'backward_diff' },
      ),
    ).toThrow(/^A:/);
    expect(() => discretizeDiagonal([4], dt, [1], { method: 'bilinear' })).toThrow(/^A\[0\]/);
  });
  it('diagonal: mismatched B, empty A, bad dt', () => {
    expect(() => discretizeDiagonal([1, 2], 0.1, [1])).toThrow(/^B:/);
    expect(() => discretizeDiagonal([], 0.1, [])).toThrow(/^A:/);
    expect(() => discretizeDiagonal([-1], -0.1, [1])).toThrow(/^dt:/);
    expect(() => discretizeDiagonal({ re: [1], im: [1, 2] }, 0.1, [1])).toThrow(/^A.im/);
  });
});
