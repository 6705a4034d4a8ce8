import { ArgumentError } from '@longseq/backend';
import { describe, expect, it } from 'vitest';
import { HIPPO_MEASURES, type Matrix, discretizeDiagonal, hippo, nplrLegs, s4dInit } from '../src';

const at = (m: Matrix, i: number, j: number) => m.data[i * m.cols + j]!;

describe('HiPPO matrices', () => {
  it('LegS: -sqrt((2n+1)(2k+1)) below the diagonal, -(n+1) on it, 0 above; B = sqrt(2n+1); eigenvalues -(n+1)', () => {
    const N = 7;
    const { A, B } = hippo('legs', N);
    for (let n = 0; n < N; n++) {
      expect(B.data[n]).toBeCloseTo(Math.sqrt(2 * n + 1), 15);
      for (let k = 0; k < N; k++) {
        const want = n > k ? -Math.sqrt((2 * n + 1) * (2 * k + 1)) : n === k ? -(n + 1) : 0;
        expect(at(A, n, k)).toBeCloseTo(want, 14);
      }
    }
  });
  it('LegT: -r_n r_k / 2 for n >= k, -(-1)^(n-k) r_n r_k / 2 above; B = r_n / 2', () => {
    const { A, B } = hippo('legt', 6);
    expect(at(A, 3, 1)).toBeCloseTo(-Math.sqrt(7 * 3) / 2, 14);
    expect(at(A, 1, 3)).toBeCloseTo(-Math.sqrt(3 * 7) / 2, 14); // (-1)^(-2) = 1
    expect(at(A, 1, 2)).toBeCloseTo(Math.sqrt(3 * 5) / 2, 14);
    expect(at(A, 2, 2)).toBeCloseTo(-5 / 2, 14);
    expect(B.data[4]).toBeCloseTo(3 / 2, 14);
  });
  it('LagT: -1 below, -1/2 on the diagonal, 0 above, B = 1', () => {
    const { A, B } = hippo('lagt', 5);
    for (let n = 0; n < 5; n++) {
      expect(B.data[n]).toBe(1);
      for (let k = 0; k < 5; k++) expect(at(A, n, k)).toBe(n > k ? -1 : n === k ? -0.5 : 0);
    }
  });
  it('Fourier (FouT): rotation blocks of frequency 2 pi j minus B B^T; B = (1, sqrt2, 0, sqrt2, 0, ...)', () => {
    const N = 6;
    const { A, B } = hippo('fourier', N);
    expect(Array.from(B.data)).toEqual([1, Math.SQRT2, 0, Math.SQRT2, 0, Math.SQRT2]);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < N; k++) {
        let rot = 0;
        if (n % 2 === 1 && k === n + 1) rot = 2 * Math.PI * ((n + 1) / 2);
        if (n % 2 === 0 && n > 0 && k === n - 1) rot = -2 * Math.PI * (n / 2);
        expect(at(A, n, k)).toBeCloseTo(rot - B.data[n]! * B.data[k]!, 14);
      }
    }
  });
  it('rejects bad sizes and measures', () => {
    expect(() => hippo('legs', 0)).toThrow(ArgumentError);
    expect(() => hippo('legs', 2.5)).toThrow(/^N:/);
    expect(() => hippo('chebyshev' as 'legs', 4)).toThrow(/^measure:/);
    expect(HIPPO_MEASURES).toHaveLength(4);
  });
});

describe('S4D initializations', () => {
  it('Lin, Inv and Real follow their closed forms', () => {
    const lin = s4dInit('lin', 4);
    const inv = s4dInit('inv', 4);
    const real = s4dInit('real', 4);
    for (let n = 0; n < 4; n++) {
      expect(lin.A.re[n]).toBe(-0.5);
      expect(lin.A.im[n]).toBeCloseTo(Math.PI * n, 14);
      expect(inv.A.im[n]).toBeCloseTo((8 / Math.PI) * (8 / (2 * n + 1) - 1), 13);
      expect(real.A.re[n]).toBe(-(n + 1));
      expect(real.A.im[n]).toBe(0);
      expect(lin.B.re[n]).toBe(1);
    }
    expect(() => s4dInit('legs' as 'lin', 4)).toThrow(/^init:/);
    expect(() => s4dInit('lin', -1)).toThrow(/^modes:/);
  });
  it('discretizes to eigenvalues inside the unit circle', () => {
    const { A, B } = s4dInit('inv', 16);
    const d = discretizeDiagonal(A, 0.01, B, { method: 'zoh' });
    for (let n = 0; n < 16; n++) expect(Math.hypot(d.A.re[n]!, d.A.im[n]!)).toBeLessThan(1);
  });
});

describe('NPLR form of LegS', () => {
  for (const N of [1, 4, 16, 64]) {
    it(`N = ${N}: V Lambda V^* - P P^T reconstructs A to 1e-10, V is unitary, S is normal`, () => {
      const { A, P, Lambda, V, Btilde, B } = nplrLegs(N);
      let err = 0;
      let unitary = 0;
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < N; j++) {
          // (V diag(Lambda) V^*)_ij = sum_k V_ik Lambda_k conj(V_jk)
          let re = 0;
          let im = 0;
          let gr = 0;
          let gi = 0;
          for (let k = 0; k < N; k++) {
            const vr = V.re[i * N + k]!;
            const vi = V.im[i * N + k]!;
            const wr = V.re[j * N + k]!;
            const wi = -V.im[j * N + k]!;
            const lr = Lambda.re[k]! * vr - Lambda.im[k]! * vi;
            const li = Lambda.re[k]! * vi + Lambda.im[k]! * vr;
            re += lr * wr - li * wi;
            im += lr * wi + li * wr;
            // (V^* V)_ij = sum_k conj(V_ki) V_kj
            const ar = V.re[k * N + i]!;
            const ai = -V.im[k * N + i]!;
            gr += ar * V.re[k * N + j]! - ai * V.im[k * N + j]!;
            gi += ar * V.im[k * N + j]! + ai * V.re[k * N + j]!;
          }
          err = Math.max(err, Math.abs(re - P[i]! * P[j]! - at(A, i, j)), Math.abs(im));
          unitary = Math.max(unitary, Math.abs(gr - (i === j ? 1 : 0)), Math.abs(gi));
        }
      }
      expect(err).toBeLessThan(1e-10);
      expect(unitary).toBeLessThan(1e-12);
      for (let k = 0; k < N; k++) expect(Lambda.re[k]).toBe(-0.5);
      // B~ = V^* B keeps B's norm.
      const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
      expect(Math.hypot(norm(Btilde.re), norm(Btilde.im))).toBeCloseTo(norm(B.data), 10);
    });
  }
});
