/**
 * Initializations of S4-family models, in float64.
 *
 * HiPPO matrices (A, B) for x' = A x + B u, with the signs and scalings of the S4 repository's
 * `transition(measure, N)` (state-spaces, `src/models/hippo/hippo.py`), i.e. A already carries
 * its minus sign. With n, k = 0..N-1 and r_n = sqrt(2n + 1):
 *
 * | measure   | A[n, k]                                                        | B[n]          |
 * | --------- | -------------------------------------------------------------- | ------------- |
 * | `legs`    | -r_n r_k if n > k; -(n + 1) if n = k; 0 if n < k                | r_n           |
 * | `legt`    | -r_n r_k / 2 if n >= k; -(-1)^(n-k) r_n r_k / 2 if n < k       | r_n / 2       |
 * | `lagt`    | -1 if n > k; -1/2 if n = k; 0 if n < k                         | 1             |
 * | `fourier` | FouT: state 0 the mean, states 2j-1, 2j the cosine and sine of frequency j (j >= 1): A[2j-1, 2j] = 2 pi j, A[2j, 2j-1] = -2 pi j, minus B B^T | B[0] = 1, B[2j-1] = sqrt 2, B[2j] = 0 |
 *
 * (FouT follows the HiPPO paper's translated Fourier measure on a window of length 1: the
 * derivative of the basis gives the rotation blocks, and the rank-one term -B B^T removes the
 * value leaving the window, equal by periodicity to the value entering it.)
 *
 * S4D's diagonal initializations (Gu et al. 2022, "On the Parameterization and
 * Initialization of Diagonal State Space Models") for `modes` = N/2 complex states of a real
 * state size N (the conjugate halves are implied, hence the factor 2 in K = 2 Re(...)):
 * - S4D-Lin: a_n = -1/2 + i pi n
 * - S4D-Inv: a_n = -1/2 + i (N / pi) (N / (2n + 1) - 1)
 * - S4D-Real: a_n = -(n + 1) (real, `modes` states)
 * with B = 1.
 *
 * NPLR (normal plus low rank) form of LegS, as S4 uses it: A = V Lambda V^* - P P^T with
 * P_n = sqrt(n + 1/2). The normal part S = A + P P^T = -I/2 + (a skew-symmetric matrix), so
 * Lambda = -1/2 + i w where (w, V) is the Hermitian eigen-decomposition of -i (S + I/2).
 */
import { ArgumentError } from '@longseq/backend';
import type { ComplexVector } from './diagonal';
import { type ComplexMatrix, type Matrix, eighHermitian, zeros } from './linalg';

export type HippoMeasure = 'legs' | 'legt' | 'lagt' | 'fourier';
export const HIPPO_MEASURES: readonly HippoMeasure[] = ['legs', 'legt', 'lagt', 'fourier'];

/** The largest state size the initializations accept. */
export const MAX_INIT_STATE = 4096;

function checkStateSize(n: unknown, argument: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_INIT_STATE)
    throw new ArgumentError(argument, `an integer in [1, ${MAX_INIT_STATE}]`, n);
  return n;
}

/** HiPPO transition matrices: A [N, N] and B [N, 1] (table above). */
export function hippo(measure: HippoMeasure, N: number): { A: Matrix; B: Matrix } {
  checkStateSize(N, 'N');
  if (!HIPPO_MEASURES.includes(measure))
    throw new ArgumentError('measure', `one of ${HIPPO_MEASURES.map((m) => `'${m}'`).join(', ')}`, measure);
  const A = zeros(N, N);
  const B = zeros(N, 1);
  const r = (n: number) => Math.sqrt(2 * n + 1);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < N; k++) {
      let v = 0;
      if (measure === 'legs') v = n > k ? -r(n) * r(k) : n === k ? -(n + 1) : 0;
      else if (measure === 'legt') v = (n >= k ? -0.5 : -0.5 * (-1) ** (n - k)) * r(n) * r(k);
      else if (measure === 'lagt') v = n > k ? -1 : n === k ? -0.5 : 0;
      A.data[n * N + k] = v;
    }
    if (measure === 'legs') B.data[n] = r(n);
    else if (measure === 'legt') B.data[n] = r(n) / 2;
    else if (measure === 'lagt') B.data[n] = 1;
    else B.data[n] = n === 0 ? 1 : n % 2 === 1 ? Math.SQRT2 : 0;
  }
  if (measure === 'fourier') {
    for (let j = 1; 2 * j <= N; j++) {
      const c = 2 * j - 1;
      const s = 2 * j;
      if (s < N) {
        A.data[c * N + s] = 2 * Math.PI * j;
        A.data[s * N + c] = -2 * Math.PI * j;
      }
    }
    for (let n = 0; n < N; n++) for (let k = 0; k < N; k++) A.data[n * N + k]! -= B.data[n]! * B.data[k]!;
  }
  return { A, B };
}

export type S4DInit = 'lin' | 'inv' | 'real';
export const S4D_INITS: readonly S4DInit[] = ['lin', 'inv', 'real'];

/**
 * S4D's diagonal A (and B = 1) for `modes` states: complex for 'lin' and 'inv' (each stands
 * for a conjugate pair, real state size 2 * modes), real for 'real'.
 */
export function s4dInit(init: S4DInit, modes: number): { A: ComplexVector; B: ComplexVector } {
  checkStateSize(modes, 'modes');
  if (!S4D_INITS.includes(init))
    throw new ArgumentError('init', `one of ${S4D_INITS.map((m) => `'${m}'`).join(', ')}`, init);
  const re = new Float64Array(modes);
  const im = new Float64Array(modes);
  const N = 2 * modes;
  for (let n = 0; n < modes; n++) {
    if (init === 'real') {
      re[n] = -(n + 1);
    } else {
      re[n] = -0.5;
      im[n] = init === 'lin' ? Math.PI * n : (N / Math.PI) * (N / (2 * n + 1) - 1);
    }
  }
  return { A: { re, im }, B: { re: new Float64Array(modes).fill(1), im: new Float64Array(modes) } };
}

/** The NPLR / DPLR form of HiPPO-LegS: A = V diag(Lambda) V^* - P P^T. */
export interface LegsNplr {
  /** The HiPPO-LegS A [N, N] and B [N, 1] it decomposes. */
  readonly A: Matrix;
  readonly B: Matrix;
  /** The low-rank factor, P_n = sqrt(n + 1/2). */
  readonly P: Float64Array;
  /** The normal part S = A + P P^T. */
  readonly S: Matrix;
  /** Eigenvalues of S: -1/2 + i w, ascending in w. */
  readonly Lambda: ComplexVector;
  /** Unitary eigenvectors of S (columns). */
  readonly V: ComplexMatrix;
  /** B and P in the eigenbasis: V^* B and V^* P (the DPLR parameters S4 trains). */
  readonly Btilde: ComplexVector;
  readonly Ptilde: ComplexVector;
}

export function nplrLegs(N: number): LegsNplr {
  const { A, B } = hippo('legs', N);
  const P = Float64Array.from({ length: N }, (_, n) => Math.sqrt(n + 0.5));
  const S = zeros(N, N);
  for (let i = 0; i < N * N; i++) S.data[i] = A.data[i]! + P[Math.floor(i / N)]! * P[i % N]!;
  // -i (S + I/2): S + I/2 is skew-symmetric, so this is Hermitian and purely imaginary.
  const h: ComplexMatrix = { rows: N, cols: N, re: new Float64Array(N * N), im: new Float64Array(N * N) };
  for (let i = 0; i < N; i++)
    for (let j = 0; j < N; j++) h.im[i * N + j] = -(S.data[i * N + j]! + (i === j ? 0.5 : 0));
  const { values, vectors: V } = eighHermitian(h);
  const Lambda = { re: new Float64Array(N).fill(-0.5), im: values };
  // V^* x for a real vector x.
  const adjointTimes = (x: ArrayLike<number>): ComplexVector => {
    const re = new Float64Array(N);
    const im = new Float64Array(N);
    for (let k = 0; k < N; k++) {
      for (let i = 0; i < N; i++) {
        re[k]! += V.re[i * N + k]! * x[i]!;
        im[k]! -= V.im[i * N + k]! * x[i]!;
      }
    }
    return { re, im };
  };
  return { A, B, P, S, Lambda, V, Btilde: adjointTimes(B.data), Ptilde: adjointTimes(P) };
}
