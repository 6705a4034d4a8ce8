/**
 * Discretization of a continuous state space model x' = A x + B u, y = C x + D u with step
 * dt, in float64, following SciPy's `signal.cont2discrete` exactly:
 *
 * | method          | A-bar                              | B-bar                 | C-bar, D-bar |
 * | --------------- | ---------------------------------- | --------------------- | ------------ |
 * | `zoh`           | exp(dt A)                          | int_0^dt exp(sA) ds B | C, D         |
 * | `gbt` (alpha)   | (I - a dt A)^-1 (I + (1-a) dt A)   | (I - a dt A)^-1 dt B  | C (I - a dt A)^-1, D + a C B-bar |
 * | `bilinear`      | gbt with alpha = 1/2 (Tustin)      |                       |              |
 * | `euler`         | gbt with alpha = 0 (forward Euler: I + dt A, dt B, C, D) |  |              |
 * | `backward_diff` | gbt with alpha = 1                 |                       |              |
 * | `mamba`         | exp(dt A)                          | dt B                  | C, D         |
 *
 * The gbt rows of C-bar and D-bar are SciPy's: they make the discrete system's transfer
 * function H(z) equal H(s) at s = (z - 1) / (dt (alpha z + 1 - alpha)), with the output read
 * from the state before the update. `mamba` is Mamba's simplification (ZOH for A, Euler for B)
 * and is not in SciPy.
 *
 * ZOH's B-bar comes from one matrix exponential of the block matrix [[A, B], [0, 0]] dt:
 * its top-right block is int_0^dt exp(sA) ds B (Van Loan's trick), so no A^-1 is needed and
 * a singular A is fine.
 */
import { ArgumentError, ShapeError } from '@longseq/backend';
import {
  type Matrix,
  type MatrixLike,
  SingularMatrixError,
  combine,
  expm,
  identity,
  matmul,
  scale,
  solve,
  toMatrix,
  transpose,
  zeros,
} from './linalg';

export type DiscretizationMethod = 'zoh' | 'bilinear' | 'gbt' | 'euler' | 'backward_diff' | 'mamba';

export const DISCRETIZATION_METHODS: readonly DiscretizationMethod[] = [
  'zoh',
  'bilinear',
  'gbt',
  'euler',
  'backward_diff',
  'mamba',
];

export interface DiscretizeOptions {
  /** Default 'zoh'. */
  readonly method?: DiscretizationMethod;
  /** The gbt weight in [0, 1] (0 = forward Euler, 1/2 = bilinear, 1 = backward difference); only for method 'gbt'. */
  readonly alpha?: number;
}

/** A dense continuous system: A [n, n], B [n, m], C [p, n], D [p, m]. */
export interface StateSpace {
  readonly A: MatrixLike;
  readonly B: MatrixLike;
  readonly C: MatrixLike;
  readonly D: MatrixLike;
}

/** A dense discrete system with its step: x[k+1] = A x[k] + B u[k], y[k] = C x[k] + D u[k]. */
export interface DiscreteStateSpace {
  readonly A: Matrix;
  readonly B: Matrix;
  readonly C: Matrix;
  readonly D: Matrix;
  readonly dt: number;
}

/** The largest dense state size accepted (the O(n^3) float64 routines stay interactive). */
export const MAX_DENSE_STATE = 1024;

/** Checks dt: finite and > 0. */
export function checkStep(dt: unknown, argument = 'dt'): number {
  if (typeof dt !== 'number' || !Number.isFinite(dt) || dt <= 0)
    throw new ArgumentError(argument, 'a finite number > 0', dt);
  return dt;
}

/** The gbt alpha a method implies, or the one given for 'gbt'; undefined for zoh and mamba. */
export function methodAlpha(method: DiscretizationMethod, alpha: number | undefined): number | undefined {
  if (alpha !== undefined && method !== 'gbt')
    throw new ArgumentError('options.alpha', `no alpha with method '${method}' (only 'gbt')`, alpha);
  switch (method) {
    case 'bilinear':
      return 0.5;
    case 'euler':
      return 0;
    case 'backward_diff':
      return 1;
    case 'gbt':
      if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1))
        throw new ArgumentError('options.alpha', "a number in [0, 1] for method 'gbt'", alpha);
      return alpha;
    default:
      return undefined;
  }
}

export function checkMethod(method: unknown): DiscretizationMethod {
  if (!DISCRETIZATION_METHODS.includes(method as DiscretizationMethod))
    throw new ArgumentError(
      'options.method',
      `one of ${DISCRETIZATION_METHODS.map((m) => `'${m}'`).join(', ')}`,
      method,
    );
  return method as DiscretizationMethod;
}

/** Validates a dense system's shapes: A square, B with A's rows, C with A's columns, D [p, m]. */
export function checkStateSpace(system: StateSpace): { A: Matrix; B: Matrix; C: Matrix; D: Matrix } {
  if (system === null || typeof system !== 'object')
    throw new ArgumentError('system', 'an object { A, B, C, D }', system);
  const A = toMatrix(system.A, 'A');
  const B = toMatrix(system.B, 'B');
  const C = toMatrix(system.C, 'C');
  const D = toMatrix(system.D, 'D');
  const n = A.rows;
  if (A.cols !== n || n === 0) throw new ShapeError('A', '[n, n] with n >= 1 (square)', [A.rows, A.cols]);
  if (n > MAX_DENSE_STATE)
    throw new ArgumentError('A', `a state size n <= ${MAX_DENSE_STATE} for the dense float64 routines`, n);
  if (B.rows !== n || B.cols === 0) throw new ShapeError('B', `[${n}, m] with m >= 1`, [B.rows, B.cols]);
  if (C.cols !== n || C.rows === 0) throw new ShapeError('C', `[p, ${n}] with p >= 1`, [C.rows, C.cols]);
  if (D.rows !== C.rows || D.cols !== B.cols)
    throw new ShapeError('D', `[${C.rows}, ${B.cols}] (C's rows, B's columns)`, [D.rows, D.cols]);
  return { A, B, C, D };
}

/**
 * Discretizes a dense continuous system with step dt. Matches
 * `scipy.signal.cont2discrete((A, B, C, D), dt, method, alpha)` (see the table above).
 */
export function discretize(
  system: StateSpace,
  dt: number,
  options: DiscretizeOptions = {},
): DiscreteStateSpace {
  const { A, B, C, D } = checkStateSpace(system);
  checkStep(dt);
  const method = checkMethod(options.method ?? 'zoh');
  const alpha = methodAlpha(method, options.alpha);
  const n = A.rows;
  const m = B.cols;
  if (method === 'zoh') {
    // exp([[A, B], [0, 0]] dt) = [[A-bar, B-bar], [0, I]].
    const block = zeros(n + m, n + m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) block.data[i * (n + m) + j] = A.data[i * n + j]! * dt;
      for (let j = 0; j < m; j++) block.data[i * (n + m) + n + j] = B.data[i * m + j]! * dt;
    }
    const e = expm(block);
    const Ad = zeros(n, n);
    const Bd = zeros(n, m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) Ad.data[i * n + j] = e.data[i * (n + m) + j]!;
      for (let j = 0; j < m; j++) Bd.data[i * m + j] = e.data[i * (n + m) + n + j]!;
    }
    return { A: Ad, B: Bd, C, D, dt };
  }
  if (method === 'mamba') return { A: expm(scale(A, dt)), B: scale(B, dt), C, D, dt };
  const a = alpha!;
  // I - alpha dt A must be invertible; SciPy solves with it rather than forming the inverse.
  const ima = combine(identity(n), 1, A, -a * dt);
  const ipa = combine(identity(n), 1, A, (1 - a) * dt);
  try {
    const Ad = solve(ima, ipa);
    const Bd = solve(ima, scale(B, dt));
    const Cd = transpose(solve(transpose(ima), transpose(C)));
    const Dd = combine(D, 1, matmul(C, Bd), a);
    return { A: Ad, B: Bd, C: Cd, D: Dd, dt };
  } catch (e) {
    if (e instanceof SingularMatrixError)
      throw new ArgumentError(
        'A',
        `I - alpha * dt * A invertible for method '${method}' (alpha = ${a}, dt = ${dt})`,
        'a singular matrix',
      );
    throw e;
  }
}
