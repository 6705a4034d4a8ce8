/**
 * Small dense float64 linear algebra, written to be read: row-major matrices, LU with
 * partial pivoting, the matrix exponential (scaling and squaring with a [6/6] Pade
 * approximant), and a Jacobi eigen-solver for complex Hermitian matrices. Sizes here are
 * state sizes (N up to a few hundred), so O(N^3) loops are fine.
 */
import { ArgumentError, ShapeError } from '@longseq/backend';

/** A real matrix, row-major: element (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/** A complex matrix with separate real and imaginary parts, row-major. */
export interface ComplexMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly re: Float64Array;
  readonly im: Float64Array;
}

/** What the public API accepts for a matrix: nested rows or a `Matrix`. */
export type MatrixLike = Matrix | readonly (readonly number[])[];

export function zeros(rows: number, cols: number): Matrix {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function identity(n: number): Matrix {
  const m = zeros(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

/** Converts nested rows (or a Matrix, copied) to a Matrix, checking that rows are equal and finite. */
export function toMatrix(value: MatrixLike, argument: string): Matrix {
  if (isMatrix(value)) {
    if (value.data.length !== value.rows * value.cols)
      throw new ShapeError(argument, `data of length rows * cols = ${value.rows * value.cols}`, [
        value.data.length,
      ]);
    checkFinite(value.data, argument);
    return { rows: value.rows, cols: value.cols, data: Float64Array.from(value.data) };
  }
  if (!Array.isArray(value)) throw new ArgumentError(argument, 'a matrix (array of rows)', value);
  const rows = value.length;
  const cols = rows === 0 ? 0 : (value[0]?.length ?? 0);
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const row = value[i];
    if (!Array.isArray(row) || row.length !== cols)
      throw new ShapeError(argument, `rows of equal length ${cols}`, `row ${i} of length ${row?.length}`);
    for (let j = 0; j < cols; j++) data[i * cols + j] = row[j]!;
  }
  checkFinite(data, argument);
  return { rows, cols, data };
}

function isMatrix(value: unknown): value is Matrix {
  return typeof value === 'object' && value !== null && 'data' in value && 'rows' in value;
}

function checkFinite(data: ArrayLike<number>, argument: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new ArgumentError(`${argument}[${i}]`, 'a finite number', data[i]);
  }
}

/** Nested rows, for printing and for JSON. */
export function toRows(m: Matrix): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < m.rows; i++) out.push(Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)));
  return out;
}

export function matmul(a: Matrix, b: Matrix): Matrix {
  const out = zeros(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k]!;
      if (aik === 0) continue;
      for (let j = 0; j < b.cols; j++) out.data[i * b.cols + j]! += aik * b.data[k * b.cols + j]!;
    }
  }
  return out;
}

/** a * alpha + b * beta, elementwise. */
export function combine(a: Matrix, alpha: number, b: Matrix, beta: number): Matrix {
  const out = zeros(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = alpha * a.data[i]! + beta * b.data[i]!;
  return out;
}

export function scale(a: Matrix, alpha: number): Matrix {
  return { rows: a.rows, cols: a.cols, data: a.data.map((v) => v * alpha) };
}

export function transpose(a: Matrix): Matrix {
  const out = zeros(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j]!;
  return out;
}

/** The largest absolute row sum (the infinity norm). */
export function normInf(a: Matrix): number {
  let best = 0;
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    for (let j = 0; j < a.cols; j++) s += Math.abs(a.data[i * a.cols + j]!);
    best = Math.max(best, s);
  }
  return best;
}

/** Thrown by `solve` when the matrix is singular to working precision. */
export class SingularMatrixError extends Error {}

/**
 * Solves M X = R for X by LU with partial pivoting. A pivot below n * eps * ||M|| counts as
 * singular (SingularMatrixError; callers turn it into an ArgumentError naming their argument).
 */
export function solve(m: Matrix, r: Matrix): Matrix {
  const n = m.rows;
  const lu = Float64Array.from(m.data);
  const x = Float64Array.from(r.data);
  const k = r.cols;
  const tiny = n * Number.EPSILON * Math.max(normInf(m), Number.MIN_VALUE);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let i = col + 1; i < n; i++)
      if (Math.abs(lu[i * n + col]!) > Math.abs(lu[pivot * n + col]!)) pivot = i;
    if (!(Math.abs(lu[pivot * n + col]!) > tiny)) throw new SingularMatrixError('singular matrix');
    if (pivot !== col) {
      swapRows(lu, n, pivot, col);
      swapRows(x, k, pivot, col);
    }
    const p = lu[col * n + col]!;
    for (let i = col + 1; i < n; i++) {
      const f = lu[i * n + col]! / p;
      if (f === 0) continue;
      for (let j = col; j < n; j++) lu[i * n + j]! -= f * lu[col * n + j]!;
      for (let j = 0; j < k; j++) x[i * k + j]! -= f * x[col * k + j]!;
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    for (let j = 0; j < k; j++) {
      let s = x[i * k + j]!;
      for (let c = i + 1; c < n; c++) s -= lu[i * n + c]! * x[c * k + j]!;
      x[i * k + j] = s / lu[i * n + i]!;
    }
  }
  return { rows: n, cols: k, data: x };
}

function swapRows(a: Float64Array, cols: number, i: number, j: number): void {
  for (let c = 0; c < cols; c++) {
    const t = a[i * cols + c]!;
    a[i * cols + c] = a[j * cols + c]!;
    a[j * cols + c] = t;
  }
}

/** [6/6] Pade coefficients of exp: c_k = (12 - k)! 6! / (12! k! (6 - k)!). */
const PADE6 = (() => {
  const c = [1];
  for (let k = 1; k <= 6; k++) c.push((c[k - 1]! * (6 - k + 1)) / (k * (12 - k + 1)));
  return c;
})();

/**
 * exp(A) by scaling and squaring (Golub and Van Loan, Algorithm 11.3.1): scale A by 2^-s so
 * that ||A / 2^s|| <= 1/2, where the [6/6] Pade approximant N(X) / D(X) is accurate to
 * well below float64 rounding, then square s times.
 */
export function expm(a: Matrix): Matrix {
  const n = a.rows;
  const norm = normInf(a);
  const s = norm > 0.5 ? Math.ceil(Math.log2(norm / 0.5)) : 0;
  const x = scale(a, 2 ** -s);
  let numer = scale(identity(n), PADE6[0]!);
  let denom = scale(identity(n), PADE6[0]!);
  let power = identity(n);
  for (let k = 1; k <= 6; k++) {
    power = matmul(power, x);
    const c = PADE6[k]!;
    numer = combine(numer, 1, power, c);
    denom = combine(denom, 1, power, k % 2 === 0 ? c : -c);
  }
  let e = solve(denom, numer);
  for (let i = 0; i < s; i++) e = matmul(e, e);
  return e;
}

/**
 * Eigen-decomposition of a complex Hermitian matrix H = V diag(w) V^* by cyclic Jacobi
 * rotations. Each rotation zeroes one off-diagonal pair (p, q): first a phase on column q
 * makes H_pq real, then a real Jacobi rotation (Golub and Van Loan's symSchur2) zeroes it.
 * Sweeps repeat until the off-diagonal mass is below 1e-15 of the matrix's norm.
 * Returns eigenvalues ascending and V's columns in the same order.
 */
export function eighHermitian(h: ComplexMatrix): { values: Float64Array; vectors: ComplexMatrix } {
  const n = h.rows;
  const re = Float64Array.from(h.re);
  const im = Float64Array.from(h.im);
  const vre = new Float64Array(n * n);
  const vim = new Float64Array(n * n);
  for (let i = 0; i < n; i++) vre[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += re[i]! ** 2 + im[i]! ** 2;
  const threshold = (1e-15 * Math.sqrt(total)) ** 2;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) off += re[p * n + q]! ** 2 + im[p * n + q]! ** 2;
    if (off <= threshold) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const hre = re[p * n + q]!;
        const him = im[p * n + q]!;
        const r = Math.hypot(hre, him);
        if (r === 0) continue;
        // Phase e^{-i phi} with H_pq = r e^{i phi}; J = diag(1, e^{-i phi}) G on columns p, q.
        const pre = hre / r;
        const pim = -him / r;
        const a = re[p * n + p]!;
        const b = re[q * n + q]!;
        const tau = (b - a) / (2 * r);
        const t = (tau >= 0 ? 1 : -1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        // J = [[c, s], [-s e, c e]] with e = e^{-i phi}: columns p and q of J.
        const jqpRe = -s * pre;
        const jqpIm = -s * pim;
        const jqqRe = c * pre;
        const jqqIm = c * pim;
        // H <- H J (columns), V <- V J.
        for (const [mr, mi] of [
          [re, im],
          [vre, vim],
        ] as const) {
          for (let i = 0; i < n; i++) {
            const xpr = mr[i * n + p]!;
            const xpi = mi[i * n + p]!;
            const xqr = mr[i * n + q]!;
            const xqi = mi[i * n + q]!;
            mr[i * n + p] = c * xpr + (xqr * jqpRe - xqi * jqpIm);
            mi[i * n + p] = c * xpi + (xqr * jqpIm + xqi * jqpRe);
            mr[i * n + q] = s * xpr + (xqr * jqqRe - xqi * jqqIm);
            mi[i * n + q] = s * xpi + (xqr * jqqIm + xqi * jqqRe);
          }
        }
        // H <- J^* H (rows): row p = c row_p + conj(Jqp) row_q, row q = s row_p + conj(Jqq) row_q.
        for (let j = 0; j < n; j++) {
          const xpr = re[p * n + j]!;
          const xpi = im[p * n + j]!;
          const xqr = re[q * n + j]!;
          const xqi = im[q * n + j]!;
          re[p * n + j] = c * xpr + (xqr * jqpRe + xqi * jqpIm);
          im[p * n + j] = c * xpi + (xqi * jqpRe - xqr * jqpIm);
          re[q * n + j] = s * xpr + (xqr * jqqRe + xqi * jqqIm);
          im[q * n + j] = s * xpi + (xqi * jqqRe - xqr * jqqIm);
        }
        re[p * n + q] = 0;
        im[p * n + q] = 0;
        re[q * n + p] = 0;
        im[q * n + p] = 0;
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => re[i * n + i]! - re[j * n + j]!);
  const values = Float64Array.from(order, (i) => re[i * n + i]!);
  const outRe = new Float64Array(n * n);
  const outIm = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let i = 0; i < n; i++) {
      outRe[i * n + dst] = vre[i * n + src]!;
      outIm[i * n + dst] = vim[i * n + src]!;
    }
  });
  return { values, vectors: { rows: n, cols: n, re: outRe, im: outIm } };
}
