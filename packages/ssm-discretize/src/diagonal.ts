/**
 * Diagonal state space models (the S4D and Mamba case): A = diag(a_1..a_N), one input, so
 * every state evolves on its own and discretization is elementwise:
 *
 * | method          | A-bar_n                                | B-bar_n                               |
 * | --------------- | -------------------------------------- | ------------------------------------- |
 * | `zoh`           | exp(dt a_n)                            | (exp(dt a_n) - 1) / a_n * b_n (dt b_n as a_n -> 0) |
 * | `gbt` (alpha)   | (1 + (1-alpha) dt a_n) / (1 - alpha dt a_n) | dt b_n / (1 - alpha dt a_n)      |
 * | `bilinear`, `euler`, `backward_diff` | gbt with alpha 1/2, 0, 1 |                           |
 * | `mamba`         | exp(dt a_n)                            | dt b_n                                |
 *
 * These are exactly the dense formulas of ./discretize.ts applied to a diagonal A (a test
 * checks it). Vectors are real (`Float64Array` / number[]) or complex (`{ re, im }`); the
 * result is complex when A or B is.
 */
import { ArgumentError, ShapeError } from '@longseq/backend';
import { type DiscretizationMethod, checkMethod, checkStep, methodAlpha } from './discretize';

/** A complex vector with separate real and imaginary parts of equal length. */
export interface ComplexVector {
  readonly re: Float64Array;
  readonly im: Float64Array;
}

export type RealVectorLike = Float64Array | Float32Array | readonly number[];
export type VectorLike =
  | RealVectorLike
  | ComplexVector
  | { readonly re: RealVectorLike; readonly im: RealVectorLike };

export interface DiagonalDiscretizeOptions {
  /** Default 'zoh'. */
  readonly method?: DiscretizationMethod;
  /** The gbt weight in [0, 1]; only for method 'gbt'. */
  readonly alpha?: number;
}

/** A-bar and B-bar of a diagonal system, elementwise. */
export interface DiagonalDiscrete<V> {
  readonly A: V;
  readonly B: V;
}

export function isComplexVector(v: unknown): v is ComplexVector {
  return typeof v === 'object' && v !== null && 're' in v && 'im' in v;
}

/** Converts a vector argument to a ComplexVector (imaginary part 0 for real input), checking finiteness. */
export function toComplexVector(v: VectorLike, argument: string): ComplexVector {
  if (isComplexVector(v)) {
    const re = Float64Array.from(v.re as ArrayLike<number>);
    const im = Float64Array.from(v.im as ArrayLike<number>);
    if (re.length !== im.length)
      throw new ShapeError(`${argument}.im`, `length ${re.length} (as ${argument}.re)`, [im.length]);
    checkFiniteVector(re, `${argument}.re`);
    checkFiniteVector(im, `${argument}.im`);
    return { re, im };
  }
  if (!(Array.isArray(v) || v instanceof Float64Array || v instanceof Float32Array))
    throw new ArgumentError(argument, 'a real vector or { re, im }', v);
  const re = Float64Array.from(v as ArrayLike<number>);
  checkFiniteVector(re, argument);
  return { re, im: new Float64Array(re.length) };
}

function checkFiniteVector(v: Float64Array, argument: string): void {
  for (let i = 0; i < v.length; i++)
    if (!Number.isFinite(v[i])) throw new ArgumentError(`${argument}[${i}]`, 'a finite number', v[i]);
}

/** (e^z - 1) / z for complex z, with its series near 0 where the division would cancel. */
export function expm1OverZ(zr: number, zi: number): [number, number] {
  if (Math.hypot(zr, zi) < 1e-5) {
    // 1 + z/2 + z^2/6 + z^3/24: the next term is below 1e-21.
    const z2r = zr * zr - zi * zi;
    const z2i = 2 * zr * zi;
    const z3r = z2r * zr - z2i * zi;
    const z3i = z2r * zi + z2i * zr;
    return [1 + zr / 2 + z2r / 6 + z3r / 24, zi / 2 + z2i / 6 + z3i / 24];
  }
  // e^z - 1 = (expm1(zr) cos zi + (cos zi - 1)) + i e^zr sin zi, with cos zi - 1 = -2 sin^2(zi/2).
  const numRe = Math.expm1(zr) * Math.cos(zi) - 2 * Math.sin(zi / 2) ** 2;
  const numIm = Math.exp(zr) * Math.sin(zi);
  const d = zr * zr + zi * zi;
  return [(numRe * zr + numIm * zi) / d, (numIm * zr - numRe * zi) / d];
}

/**
 * Discretizes a diagonal system elementwise (table above). `A` and `B` have N entries each;
 * `dt` is one step for all states. Real A and B give real vectors (`Float64Array`); a complex
 * A or B (`{ re, im }`) gives complex ones.
 *
 * ```ts
 * const { A: Abar, B: Bbar } = discretizeDiagonal({ re: [-0.5], im: [Math.PI] }, 0.01, [1], { method: 'mamba' });
 * ```
 */
export function discretizeDiagonal(
  A: RealVectorLike,
  dt: number,
  B: RealVectorLike,
  options?: DiagonalDiscretizeOptions,
): DiagonalDiscrete<Float64Array>;
export function discretizeDiagonal(
  A: VectorLike,
  dt: number,
  B: VectorLike,
  options?: DiagonalDiscretizeOptions,
): DiagonalDiscrete<ComplexVector>;
export function discretizeDiagonal(
  A: VectorLike,
  dt: number,
  B: VectorLike,
  options: DiagonalDiscretizeOptions = {},
): DiagonalDiscrete<Float64Array> | DiagonalDiscrete<ComplexVector> {
  const a = toComplexVector(A, 'A');
  const b = toComplexVector(B, 'B');
  const n = a.re.length;
  if (n === 0) throw new ShapeError('A', '[N] with N >= 1', [0]);
  if (b.re.length !== n) throw new ShapeError('B', `[${n}] (A's length)`, [b.re.length]);
  checkStep(dt);
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const method = checkMethod(options.method ?? 'zoh');
  const alpha = methodAlpha(method, options.alpha);
  const out = discretizeDiagonalUnchecked(a, b, dt, method, alpha);
  if (isComplexVector(A) || isComplexVector(B)) return out;
  // Real A and B stay real under every method.
  return { A: out.A.re, B: out.B.re };
}

/** The elementwise formulas, on validated complex vectors (also used by the GPU references). */
export function discretizeDiagonalUnchecked(
  a: ComplexVector,
  b: ComplexVector,
  dt: number,
  method: DiscretizationMethod,
  alpha: number | undefined,
): DiagonalDiscrete<ComplexVector> {
  const n = a.re.length;
  const Ar = new Float64Array(n);
  const Ai = new Float64Array(n);
  const Br = new Float64Array(n);
  const Bi = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const zr = dt * a.re[k]!;
    const zi = dt * a.im[k]!;
    const br = b.re[k]!;
    const bi = b.im[k]!;
    if (method === 'zoh' || method === 'mamba') {
      const mag = Math.exp(zr);
      Ar[k] = mag * Math.cos(zi);
      Ai[k] = mag * Math.sin(zi);
      // zoh: B-bar = (e^z - 1)/z * dt b; mamba: dt b.
      const [fr, fi] = method === 'zoh' ? expm1OverZ(zr, zi) : [1, 0];
      Br[k] = dt * (fr * br - fi * bi);
      Bi[k] = dt * (fr * bi + fi * br);
    } else {
      const al = alpha!;
      // den = 1 - alpha z; A-bar = (1 + (1 - alpha) z) / den; B-bar = dt b / den.
      const dr = 1 - al * zr;
      const di = -al * zi;
      const d2 = dr * dr + di * di;
      if (!(d2 > Number.EPSILON ** 2))
        throw new ArgumentError(
          `A[${k}]`,
          `1 - alpha * dt * A[${k}] != 0 for method '${method}' (alpha = ${al}, dt = ${dt})`,
          'a singular denominator',
        );
      const nr = 1 + (1 - al) * zr;
      const ni = (1 - al) * zi;
      Ar[k] = (nr * dr + ni * di) / d2;
      Ai[k] = (ni * dr - nr * di) / d2;
      Br[k] = (dt * (br * dr + bi * di)) / d2;
      Bi[k] = (dt * (bi * dr - br * di)) / d2;
    }
  }
  return { A: { re: Ar, im: Ai }, B: { re: Br, im: Bi } };
}
