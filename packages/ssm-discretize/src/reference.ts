/**
 * Float64 references of the two forms of a discrete SSM, written to be read. They are the
 * oracles of the GPU kernels (`ssmKernel`, `causalConv`, `diagonalScan`) and document their
 * semantics. `precision: 'f32'` rounds every intermediate to float32: the straightforward
 * float32 computation the test rule compares against.
 *
 * Convention (S4's): the state includes the current input,
 *   x_k = A-bar x_{k-1} + B-bar u_k,  y_k = C x_k (+ D u_k),  x_{-1} = 0,
 * so y = K * u (causal) with K_l = C A-bar^l B-bar. SciPy's `dimpulse` reads the output
 * before the update (y[k] = C x[k] + D u[k], x[k+1] = A x[k] + B u[k]), so its impulse
 * response is (D, K_0, K_1, ...): `impulseResponse` returns that.
 *
 * Shapes (one meaning per letter): H channels, N states, L length, m inputs, p outputs.
 * Diagonal systems are batched over channels with their own dt each; complex ones store
 * values interleaved (re, im) in a trailing dimension of 2.
 */
import type { DiscreteStateSpace } from './discretize';
import type { DiscretizationMethod } from './discretize';
import { expm1OverZ } from './diagonal';

export interface RefOptions {
  /** 'f64' (default) or 'f32': round every intermediate to float32. */
  readonly precision?: 'f64' | 'f32';
}

const identity = (v: number): number => v;

function rounder(options: RefOptions): (v: number) => number {
  return options.precision === 'f32' ? Math.fround : identity;
}

/** K_l = C A^l B for l < L, as [L, p, m] flat (dense system, repeated powers). */
export function denseKernelRef(system: DiscreteStateSpace, L: number): Float64Array {
  const { A, B, C } = system;
  const n = A.rows;
  const m = B.cols;
  const p = C.rows;
  const out = new Float64Array(L * p * m);
  let power = Float64Array.from(B.data); // A^l B, [n, m]
  for (let l = 0; l < L; l++) {
    for (let i = 0; i < p; i++)
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += C.data[i * n + k]! * power[k * m + j]!;
        out[(l * p + i) * m + j] = s;
      }
    const next = new Float64Array(n * m);
    for (let i = 0; i < n; i++)
      for (let k = 0; k < n; k++) {
        const a = A.data[i * n + k]!;
        for (let j = 0; j < m; j++) next[i * m + j]! += a * power[k * m + j]!;
      }
    power = next;
  }
  return out;
}

/** SciPy's `dimpulse` of a discrete system: (D, CB, CAB, ...) for L steps, [L, p, m] flat. */
export function impulseResponse(system: DiscreteStateSpace, L: number): Float64Array {
  const p = system.C.rows;
  const m = system.B.cols;
  const out = new Float64Array(L * p * m);
  out.set(system.D.data.subarray(0, p * m), 0);
  if (L > 1) out.set(denseKernelRef(system, L - 1), p * m);
  return out;
}

/** One recurrent step of a dense system: x' = A x + B u, y = C x' + D u. */
export function denseStep(
  system: DiscreteStateSpace,
  x: Float64Array,
  u: ArrayLike<number>,
): { x: Float64Array; y: Float64Array } {
  const { A, B, C, D } = system;
  const n = A.rows;
  const m = B.cols;
  const p = C.rows;
  const next = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += A.data[i * n + k]! * x[k]!;
    for (let j = 0; j < m; j++) s += B.data[i * m + j]! * u[j]!;
    next[i] = s;
  }
  const y = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += C.data[i * n + k]! * next[k]!;
    for (let j = 0; j < m; j++) s += D.data[i * m + j]! * u[j]!;
    y[i] = s;
  }
  return { x: next, y };
}

/** Runs `denseStep` over u [L, m] from x = 0: y [L, p]. */
export function denseScan(system: DiscreteStateSpace, u: ArrayLike<number>, L: number): Float64Array {
  const m = system.B.cols;
  const p = system.C.rows;
  let x: Float64Array = new Float64Array(system.A.rows);
  const y = new Float64Array(L * p);
  for (let l = 0; l < L; l++) {
    const step = denseStep(system, x, Array.prototype.slice.call(u, l * m, (l + 1) * m));
    x = step.x;
    y.set(step.y, l * p);
  }
  return y;
}

/** A batch of diagonal SSMs on the host: H channels of N states, one dt per channel. */
export interface DiagonalSsmHost {
  readonly H: number;
  readonly N: number;
  /** true: A, B, C are [H, N, 2] interleaved complex and K = 2 Re(...); false: [H, N] real. */
  readonly complex: boolean;
  readonly A: ArrayLike<number>;
  readonly B: ArrayLike<number>;
  readonly C: ArrayLike<number>;
  /** [H], each > 0. */
  readonly dt: ArrayLike<number>;
  readonly method: DiscretizationMethod;
  /** gbt weight (bilinear 1/2, euler 0, backward_diff 1); ignored by zoh and mamba. */
  readonly alpha: number;
}

/** A-bar, B-bar of one state (complex), by the formulas of ./diagonal.ts, with rounding `r`. */
function discretizeState(
  ar: number,
  ai: number,
  br: number,
  bi: number,
  dt: number,
  method: DiscretizationMethod,
  alpha: number,
  r: (v: number) => number,
): [number, number, number, number] {
  const zr = r(dt * ar);
  const zi = r(dt * ai);
  if (method === 'zoh' || method === 'mamba') {
    const mag = r(Math.exp(zr));
    const Ar = r(mag * r(Math.cos(zi)));
    const Ai = r(mag * r(Math.sin(zi)));
    if (method === 'mamba') return [Ar, Ai, r(dt * br), r(dt * bi)];
    // B-bar = dt (e^z - 1) / z * b. Float64: expm1OverZ. Float32 (as the GPU kernels): a
    // Taylor series 1 + z/2 + ... + z^5/720 for |z| < 0.1, where e^z - 1 would cancel, else
    // the quotient.
    let fr: number;
    let fi: number;
    if (r === identity) {
      [fr, fi] = expm1OverZ(zr, zi);
    } else if (r(r(zr * zr) + r(zi * zi)) < 0.01) {
      // Horner: s = 1/720; s = 1/(k+1)! + z s for k = 4..0.
      let sr = 1 / 720;
      let si = 0;
      for (const c of [1 / 120, 1 / 24, 1 / 6, 1 / 2, 1]) {
        const tr = r(r(r(zr * sr) - r(zi * si)) + r(c));
        si = r(r(zr * si) + r(zi * sr));
        sr = tr;
      }
      fr = sr;
      fi = si;
    } else {
      const er = r(Ar - 1);
      const mod = r(r(zr * zr) + r(zi * zi));
      fr = r(r(r(er * zr) + r(Ai * zi)) / mod);
      fi = r(r(r(Ai * zr) - r(er * zi)) / mod);
    }
    fr = r(fr * dt);
    fi = r(fi * dt);
    return [Ar, Ai, r(r(fr * br) - r(fi * bi)), r(r(fr * bi) + r(fi * br))];
  }
  const dr = r(1 - r(alpha * zr));
  const di = r(-alpha * zi);
  const d2 = r(r(dr * dr) + r(di * di));
  const nr = r(1 + r((1 - alpha) * zr));
  const ni = r((1 - alpha) * zi);
  return [
    r(r(r(nr * dr) + r(ni * di)) / d2),
    r(r(r(ni * dr) - r(nr * di)) / d2),
    r(r(dt * r(r(br * dr) + r(bi * di))) / d2),
    r(r(dt * r(r(bi * dr) - r(br * di))) / d2),
  ];
}

function stateAt(ssm: DiagonalSsmHost, which: 'A' | 'B' | 'C', h: number, n: number): [number, number] {
  const v = ssm[which];
  if (!ssm.complex) return [v[h * ssm.N + n]!, 0];
  const i = (h * ssm.N + n) * 2;
  return [v[i]!, v[i + 1]!];
}

/**
 * The SSM convolution kernel K [H, L] of a diagonal system by the Vandermonde product:
 * K[h, l] = f * Re(sum_n C_n B-bar_n A-bar_n^l), f = 2 for complex systems (conjugate pairs,
 * S4D) and 1 for real ones. A-bar^l is evaluated as exp(l log A-bar), as the GPU kernels do:
 * for zoh and mamba that is exp(l dt a) exactly.
 */
export function diagonalKernelRef(ssm: DiagonalSsmHost, L: number, options: RefOptions = {}): Float64Array {
  const r = rounder(options);
  const { H, N } = ssm;
  const K = new Float64Array(H * L);
  const factor = ssm.complex ? 2 : 1;
  for (let h = 0; h < H; h++) {
    const dt = ssm.dt[h]!;
    for (let n = 0; n < N; n++) {
      const [ar, ai] = stateAt(ssm, 'A', h, n);
      const [br, bi] = stateAt(ssm, 'B', h, n);
      const [cr, ci] = stateAt(ssm, 'C', h, n);
      const [Ar, Ai, Br, Bi] = discretizeState(ar, ai, br, bi, dt, ssm.method, ssm.alpha, r);
      // w = C B-bar; log A-bar = (log |A-bar|, arg A-bar).
      const wr = r(r(cr * Br) - r(ci * Bi));
      const wi = r(r(cr * Bi) + r(ci * Br));
      // log A-bar: exactly z = dt a for zoh and mamba; log|A-bar| + i arg A-bar otherwise.
      const exact = ssm.method === 'zoh' || ssm.method === 'mamba';
      const logMag = exact ? r(dt * ar) : r(Math.log(Math.hypot(Ar, Ai)));
      const arg = exact ? r(dt * ai) : r(Math.atan2(Ai, Ar));
      for (let l = 0; l < L; l++) {
        const mag = r(Math.exp(r(l * logMag)));
        const pr = r(mag * r(Math.cos(r(l * arg))));
        const pi = r(mag * r(Math.sin(r(l * arg))));
        K[h * L + l] = r(K[h * L + l]! + r(factor * r(r(wr * pr) - r(wi * pi))));
      }
    }
  }
  return K;
}

/**
 * The recurrence of a diagonal system over u [H, L]: per channel and state,
 * x_k = A-bar x_{k-1} + B-bar u_k, and y_k = f Re(sum_n C_n x_{k,n}). y [H, L].
 */
export function diagonalScanRef(
  ssm: DiagonalSsmHost,
  u: ArrayLike<number>,
  L: number,
  options: RefOptions = {},
): Float64Array {
  const r = rounder(options);
  const { H, N } = ssm;
  const y = new Float64Array(H * L);
  const factor = ssm.complex ? 2 : 1;
  for (let h = 0; h < H; h++) {
    const dt = ssm.dt[h]!;
    for (let n = 0; n < N; n++) {
      const [ar, ai] = stateAt(ssm, 'A', h, n);
      const [br, bi] = stateAt(ssm, 'B', h, n);
      const [cr, ci] = stateAt(ssm, 'C', h, n);
      const [Ar, Ai, Br, Bi] = discretizeState(ar, ai, br, bi, dt, ssm.method, ssm.alpha, r);
      let xr = 0;
      let xi = 0;
      for (let k = 0; k < L; k++) {
        const uk = u[h * L + k]!;
        const nr = r(r(r(Ar * xr) - r(Ai * xi)) + r(Br * uk));
        const ni = r(r(r(Ar * xi) + r(Ai * xr)) + r(Bi * uk));
        xr = nr;
        xi = ni;
        y[h * L + k] = r(y[h * L + k]! + r(factor * r(r(cr * xr) - r(ci * xi))));
      }
    }
  }
  return y;
}

/** The causal convolution y[h, k] = sum_{j <= k} K[h, j] u[h, k - j], directly (O(L^2) per channel). */
export function causalConvRef(
  u: ArrayLike<number>,
  K: ArrayLike<number>,
  H: number,
  L: number,
  options: RefOptions = {},
): Float64Array {
  const r = rounder(options);
  const y = new Float64Array(H * L);
  for (let h = 0; h < H; h++) {
    for (let k = 0; k < L; k++) {
      let s = 0;
      for (let j = 0; j <= k; j++) s = r(s + r(K[h * L + j]! * u[h * L + k - j]!));
      y[h * L + k] = s;
    }
  }
  return y;
}

/**
 * In-place iterative radix-2 FFT of re/im (length a power of two), e^{-2 pi i jk / M}, with
 * rounding `r` after every operation (float64 twiddles, as the GPU table).
 */
function fftInPlace(re: Float64Array, im: Float64Array, r: (v: number) => number): void {
  const M = re.length;
  for (let i = 1, j = 0; i < M; i++) {
    let bit = M >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j]!, re[i]!];
      [im[i], im[j]] = [im[j]!, im[i]!];
    }
  }
  for (let size = 2; size <= M; size *= 2) {
    const half = size / 2;
    for (let k = 0; k < half; k++) {
      const wr = r(Math.cos((-2 * Math.PI * k) / size));
      const wi = r(Math.sin((-2 * Math.PI * k) / size));
      for (let start = 0; start < M; start += size) {
        const a = start + k;
        const b = a + half;
        const tr = r(r(re[b]! * wr) - r(im[b]! * wi));
        const ti = r(r(re[b]! * wi) + r(im[b]! * wr));
        re[b] = r(re[a]! - tr);
        im[b] = r(im[a]! - ti);
        re[a] = r(re[a]! + tr);
        im[a] = r(im[a]! + ti);
      }
    }
  }
}

/**
 * The same causal convolution as `causalConvRef`, through FFTs of length M = the power of
 * two >= 2L (O(L log L)): the reference for long sequences, where the direct sum is too slow
 * on the CPU. With `precision: 'f32'` it is the float32 FFT computation.
 */
export function causalConvFftRef(
  u: ArrayLike<number>,
  K: ArrayLike<number>,
  H: number,
  L: number,
  options: RefOptions = {},
): Float64Array {
  const r = rounder(options);
  const M = 2 ** Math.ceil(Math.log2(2 * Math.max(1, L)));
  const y = new Float64Array(H * L);
  for (let h = 0; h < H; h++) {
    const ur = new Float64Array(M);
    const ui = new Float64Array(M);
    const kr = new Float64Array(M);
    const ki = new Float64Array(M);
    for (let t = 0; t < L; t++) {
      ur[t] = r(u[h * L + t]!);
      kr[t] = r(K[h * L + t]!);
    }
    fftInPlace(ur, ui, r);
    fftInPlace(kr, ki, r);
    // Y = U Kf, inverse by conj(FFT(conj Y)) / M.
    for (let t = 0; t < M; t++) {
      const pr = r(r(ur[t]! * kr[t]!) - r(ui[t]! * ki[t]!));
      const pi = r(r(ur[t]! * ki[t]!) + r(ui[t]! * kr[t]!));
      ur[t] = pr;
      ui[t] = -pi;
    }
    fftInPlace(ur, ui, r);
    for (let t = 0; t < L; t++) y[h * L + t] = r(ur[t]! / M);
  }
  return y;
}
