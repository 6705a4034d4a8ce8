/**
 * Verifier for golden/discretize.json (SciPy's `signal.cont2discrete` and `signal.dimpulse`):
 * for every case, @longseq/ssm-discretize's float64 `discretize` must reproduce the file's
 * A, B, C, D for each method (zoh, bilinear, euler = forward difference, backward_diff), and
 * the ZOH system's impulse response (D, K_0, K_1, ...) with K_l = C A-bar^l B-bar must equal
 * `dimpulse`. The impulse is then run through the backend: the causal FFT convolution of a
 * unit impulse with K (float32) must give K back, within the test rule; the float32
 * baseline is the worse of K rounded to float32 (the direct sum) and a float32 FFT
 * convolution on the host (the same algorithm in plain float32).
 *
 * File layout per case: n states, m inputs, p outputs, dt, A [n, n], B [n, m], C [p, n],
 * D [p, m], one object per method with A, B, C, D, and zoh_impulse [m][steps][p].
 */
import { compareToReference } from '@longseq/backend';
import {
  type DiscreteStateSpace,
  type Matrix,
  causalConv,
  causalConvFftRef,
  denseKernelRef,
  discretize,
  impulseResponse,
  toMatrix,
} from '@longseq/ssm-discretize';
import { UnsupportedFormatError } from '../errors';
import {
  type CaseResult,
  type CheckResult,
  type GoldenFormat,
  type GoldenTarget,
  type VerifyContext,
  checkFrom,
} from './types';

const METHODS = ['zoh', 'bilinear', 'euler', 'backward_diff'] as const;

/** How far float64 results may drift from the file, relative to the largest entry. */
const FLOAT64_AGREEMENT = 1e-12;

interface DiscretizeCase {
  readonly n: number;
  readonly m: number;
  readonly p: number;
  readonly dt: number;
  readonly system: { A: Matrix; B: Matrix; C: Matrix; D: Matrix };
  readonly expected: Record<(typeof METHODS)[number], { A: Matrix; B: Matrix; C: Matrix; D: Matrix }>;
  /** [m][steps][p] as in the file. */
  readonly impulse: number[][][];
}

function parseCase(raw: unknown, index: number): DiscretizeCase {
  const where = `case ${index}`;
  if (raw === null || typeof raw !== 'object')
    throw new UnsupportedFormatError(`${where}: expected an object`);
  const c = raw as Record<string, unknown>;
  const matrices = (v: unknown, at: string) => {
    if (v === null || typeof v !== 'object')
      throw new UnsupportedFormatError(`${at}: expected { A, B, C, D }`);
    const o = v as Record<string, unknown>;
    const get = (k: string) => {
      try {
        return toMatrix(o[k] as number[][], `${at}.${k}`);
      } catch (err) {
        throw new UnsupportedFormatError(err instanceof Error ? err.message : String(err));
      }
    };
    return { A: get('A'), B: get('B'), C: get('C'), D: get('D') };
  };
  const dt = c.dt;
  if (typeof dt !== 'number' || !(dt > 0))
    throw new UnsupportedFormatError(`${where}: 'dt' must be a number > 0`);
  const system = matrices(c, where);
  const expected = Object.fromEntries(
    METHODS.map((m) => [m, matrices(c[m], `${where}.${m}`)]),
  ) as DiscretizeCase['expected'];
  if (!Array.isArray(c.zoh_impulse))
    throw new UnsupportedFormatError(`${where}: expected 'zoh_impulse' [m][steps][p]`);
  return {
    n: system.A.rows,
    m: system.B.cols,
    p: system.C.rows,
    dt,
    system,
    expected,
    impulse: c.zoh_impulse as number[][][],
  };
}

/** A check of float64 values against the file: max |a - b| relative to the file's largest entry. */
function float64Check(name: string, got: ArrayLike<number>, want: ArrayLike<number>): CheckResult {
  let err = got.length === want.length ? 0 : Number.POSITIVE_INFINITY;
  let scale = 1;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= err)) err = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  const allowed = FLOAT64_AGREEMENT * scale;
  const pass = err <= allowed;
  return {
    name,
    pass,
    maxError: err,
    baselineError: 0,
    allowed,
    ...(pass ? {} : { reason: `float64 result differs from SciPy by ${err.toExponential(2)}` }),
  };
}

/** dimpulse's [m][steps][p] as the [steps, p, m] layout of `impulseResponse`. */
function impulseLayout(c: DiscretizeCase, steps: number): Float64Array {
  const out = new Float64Array(steps * c.p * c.m);
  for (let j = 0; j < c.m; j++)
    for (let l = 0; l < steps; l++)
      for (let i = 0; i < c.p; i++) out[(l * c.p + i) * c.m + j] = c.impulse[j]?.[l]?.[i] ?? Number.NaN;
  return out;
}

/**
 * The impulse response through the backend: for every (output, input) pair one channel with
 * u = (1, 0, 0, ...) and K = (D, K_0, K_1, ...) in float32; y = K * u must be K.
 */
async function impulseOnBackend(
  context: VerifyContext,
  c: DiscretizeCase,
  zoh: DiscreteStateSpace,
  steps: number,
) {
  const { backend } = context;
  const H = c.p * c.m;
  const full = impulseResponse(zoh, steps); // [steps, p, m]
  const kernel = new Float32Array(H * steps);
  const unit = new Float32Array(H * steps);
  for (let ch = 0; ch < H; ch++) {
    unit[ch * steps] = 1;
    for (let l = 0; l < steps; l++) kernel[ch * steps + l] = full[l * H + ch]!;
  }
  const u = backend.tensor(unit, [H, steps]);
  const K = backend.tensor(kernel, [H, steps]);
  try {
    const y = await causalConv(u, K);
    const got = await y.read();
    y.dispose();
    // Back to [steps, p, m] to compare with the file.
    const out = new Float64Array(H * steps);
    const ref32 = new Float64Array(H * steps);
    const fft32 = causalConvFftRef(unit, kernel, H, steps, { precision: 'f32' });
    for (let ch = 0; ch < H; ch++)
      for (let l = 0; l < steps; l++) {
        const want = full[l * H + ch]!;
        const direct = kernel[ch * steps + l]!;
        const viaFft = fft32[ch * steps + l]!;
        out[l * H + ch] = got[ch * steps + l]!;
        ref32[l * H + ch] = Math.abs(direct - want) > Math.abs(viaFft - want) ? direct : viaFft;
      }
    return { out, ref32 };
  } finally {
    u.dispose();
    K.dispose();
  }
}

async function verifyDiscretize(target: GoldenTarget, context: VerifyContext): Promise<CaseResult[]> {
  const cases = (target.json as { cases?: unknown }).cases;
  if (!Array.isArray(cases)) throw new UnsupportedFormatError(`${target.basename}: expected a 'cases' array`);
  const results: CaseResult[] = [];
  for (let index = 0; index < cases.length; index++) {
    const c = parseCase(cases[index], index);
    const checks: CheckResult[] = [];
    for (const method of METHODS) {
      const d = discretize(c.system, c.dt, { method });
      for (const key of ['A', 'B', 'C', 'D'] as const)
        checks.push(float64Check(`${method}.${key}`, d[key].data, c.expected[method][key].data));
    }
    const zoh = discretize(c.system, c.dt, { method: 'zoh' });
    const steps = c.impulse[0]?.length ?? 0;
    const want = impulseLayout(c, steps);
    checks.push(float64Check('impulse', impulseResponse(zoh, steps), want));
    // The kernel by repeated powers is the impulse response shifted by one step.
    const kernel = denseKernelRef(zoh, Math.max(0, steps - 1));
    checks.push(float64Check('kernel', kernel, want.subarray(c.p * c.m)));
    const gpu = await impulseOnBackend(context, c, zoh, steps);
    checks.push(checkFrom('impulse.conv', compareToReference(gpu.out, want, gpu.ref32)));
    const result: CaseResult = {
      index,
      name: `n ${c.n} m ${c.m} p ${c.p} dt ${c.dt.toPrecision(4)}`,
      pass: checks.every((k) => k.pass),
      checks,
    };
    results.push(result);
    context.onCase?.(result, cases.length);
  }
  return results;
}

export const discretizeFormat: GoldenFormat = {
  name: 'discretize',
  description:
    'SSM discretization cases (ZOH, bilinear, Euler, backward difference; dimpulse), e.g. golden/discretize.json',
  matches(target) {
    if (target.isDirectory) return false;
    if (/^discretize.*\.json$/i.test(target.basename)) return true;
    const first = (target.json as { cases?: unknown[] } | undefined)?.cases?.[0];
    return first !== null && typeof first === 'object' && ['A', 'B', 'dt', 'zoh'].every((k) => k in first);
  },
  verify: verifyDiscretize,
};
