/**
 * The GPU forms of a batch of diagonal SSMs (the S4D and Mamba case): H channels of N
 * states, one dt per channel. Each op validates its inputs (typed errors before any GPU
 * work), parses attributes, and runs the kernels registered for the backend's kind
 * (./webgpu, ./gpujs). Float64 references with the same semantics: ./reference.ts.
 *
 * - `ssmKernel`: the convolution kernel K [H, L] by a Vandermonde product.
 * - `causalConv`: y = K * u per channel through an FFT of length >= 2L (or directly).
 * - `diagonalScan`: the recurrence over u [H, L], the same y computed step by step.
 */
import {
  ArgumentError,
  type Backend,
  DeviceLimitError,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkSameBackend,
  checkTensor,
  formatShape,
  registerKernelsOnce,
  runKernel,
} from '@longseq/backend';
import {
  CausalConv,
  type CausalConvAlgorithm,
  type CausalConvAttrs,
  type FftVariant,
  type GpuMethodCode,
  SsmDiscretize,
  type SsmDiscretizeAttrs,
  SsmScan,
  SsmVandermonde,
} from './contract';
import { type DiscretizationMethod, checkMethod, methodAlpha } from './discretize';
import { causalConvGpuJsKernel } from './gpujs/conv';
import { ssmDiscretizeGpuJsKernel, ssmScanGpuJsKernel, ssmVandermondeGpuJsKernel } from './gpujs/ssm';
import { causalConvWebGpuKernel } from './webgpu/conv';
import {
  MAX_SCAN_STATES,
  ssmDiscretizeWebGpuKernel,
  ssmScanWebGpuKernel,
  ssmVandermondeWebGpuKernel,
} from './webgpu/ssm';

/**
 * A batch of diagonal continuous SSMs on the device. Real: A, B, C are [H, N]; complex: [H, N, 2]
 * (re, im interleaved; each state stands for a conjugate pair, so outputs are 2 Re(...)).
 */
export interface DiagonalSsm {
  readonly A: Tensor;
  readonly B: Tensor;
  readonly C: Tensor;
  /**
   * The step of each channel, [H]: host numbers (checked finite and > 0) or a device tensor
   * (used as is: a tensor's values are not read back to check them).
   */
  readonly dt: Tensor | ArrayLike<number>;
}

export interface SsmGpuOptions {
  /** Default 'zoh'. Every method of `discretizeDiagonal` is available. */
  readonly method?: DiscretizationMethod;
  /** The gbt weight, only for method 'gbt'. */
  readonly alpha?: number;
}

export interface CausalConvOptions {
  /** 'fft' (default): O(L log L) per channel. 'direct': O(L^2), one thread per output. */
  readonly algorithm?: CausalConvAlgorithm;
  /**
   * WebGPU FFT passes. 'auto' (default) and 'workgroup': the fused path, five passes over
   * global memory (four-step split M = M1 M2 with every transform in workgroup memory, radix
   * 4; the product with K's spectrum fused between the forward and inverse transforms), up to
   * M = localFftCapacity(backend)^2 / 2; beyond, global passes. 'global': one pass per radix-2
   * stage always. gpu.js always runs global passes.
   */
  readonly fft?: FftVariant;
}

/** The longest sequence the ops accept. */
export const MAX_SEQUENCE_LENGTH = 1 << 22;

let registered = false;
/** Registers this package's kernels for both backend kinds (done on first use). */
export function registerSsmKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    ssmDiscretizeWebGpuKernel,
    ssmDiscretizeGpuJsKernel,
    ssmVandermondeWebGpuKernel,
    ssmVandermondeGpuJsKernel,
    ssmScanWebGpuKernel,
    ssmScanGpuJsKernel,
    causalConvWebGpuKernel,
    causalConvGpuJsKernel,
  ] as never[]);
  registered = true;
}

function checkLength(L: unknown, argument: string): number {
  if (typeof L !== 'number' || !Number.isInteger(L) || L < 1 || L > MAX_SEQUENCE_LENGTH)
    throw new ArgumentError(argument, `an integer in [1, ${MAX_SEQUENCE_LENGTH}]`, L);
  return L;
}

/** gpu.js' GL modes index with float32: every tensor a kernel touches must stay under 2^24 elements. */
function checkGpuJsIndexRange(backend: Backend, argument: string, elements: number): void {
  if (backend.kind === 'gpujs' && elements >= 2 ** 24)
    throw new DeviceLimitError(argument, 'gpu.js float32 index range (elements)', elements, 2 ** 24 - 1);
}

interface ParsedSsm {
  readonly backend: Backend;
  readonly H: number;
  readonly N: number;
  readonly complex: boolean;
  readonly dt: Tensor;
  readonly ownsDt: boolean;
  readonly attrs: SsmDiscretizeAttrs;
}

function parseSsm(ssm: DiagonalSsm, options: SsmGpuOptions): ParsedSsm {
  if (ssm === null || typeof ssm !== 'object')
    throw new ArgumentError('ssm', 'an object { A, B, C, dt }', ssm);
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const A = checkTensor(ssm.A, 'A');
  const B = checkTensor(ssm.B, 'B');
  const C = checkTensor(ssm.C, 'C');
  for (const [name, t] of [
    ['A', A],
    ['B', B],
    ['C', C],
  ] as const)
    checkDType(t, name, ['f32']);
  checkSameBackend(A.backend, { B, C });
  const complex = A.rank === 3;
  if (!(A.rank === 2 || (A.rank === 3 && A.shape[2] === 2)) || A.shape[0] === 0 || A.shape[1] === 0)
    throw new ShapeError('A', '[H, N] (real) or [H, N, 2] (complex), H, N >= 1', A.shape);
  const H = A.shape[0]!;
  const N = A.shape[1]!;
  for (const [name, t] of [
    ['B', B],
    ['C', C],
  ] as const) {
    if (formatShape(t.shape) !== formatShape(A.shape))
      throw new ShapeError(name, `${formatShape(A.shape)} (A's shape)`, t.shape);
  }
  const method = checkMethod(options.method ?? 'zoh');
  const alpha = methodAlpha(method, options.alpha) ?? 0;
  const methodCode: GpuMethodCode = method === 'zoh' ? 0 : method === 'mamba' ? 1 : 2;
  checkGpuJsIndexRange(A.backend, 'A', H * N * 8);
  checkBindingSize(A.backend, 'A (discretized, 8 values per state)', H * N * 8);
  let dt: Tensor;
  let ownsDt = false;
  if (typeof ssm.dt === 'object' && ssm.dt !== null && 'backend' in ssm.dt) {
    dt = checkTensor(ssm.dt, 'dt');
    checkDType(dt, 'dt', ['f32']);
    checkSameBackend(A.backend, { dt });
    if (dt.rank !== 1 || dt.shape[0] !== H)
      throw new ShapeError('dt', `[${H}] (one step per channel)`, dt.shape);
  } else {
    const steps = ssm.dt as ArrayLike<number>;
    if (steps === undefined || typeof steps.length !== 'number')
      throw new ArgumentError('dt', `${H} steps (a Tensor [H] or an array)`, steps);
    if (steps.length !== H) throw new ShapeError('dt', `[${H}] (one step per channel)`, [steps.length]);
    for (let h = 0; h < H; h++) {
      const v = steps[h];
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
        throw new ArgumentError(`dt[${h}]`, 'a finite number > 0', v);
    }
    dt = A.backend.tensor(Float32Array.from(steps), [H]);
    ownsDt = true;
  }
  registerSsmKernels();
  return {
    backend: A.backend,
    H,
    N,
    complex,
    dt,
    ownsDt,
    attrs: { H, N, complex, methodCode, alpha },
  };
}

async function discretizeOnDevice(ssm: DiagonalSsm, parsed: ParsedSsm): Promise<Tensor> {
  try {
    return single(
      await runKernel(SsmDiscretize, parsed.backend, [ssm.A, ssm.B, ssm.C, parsed.dt], parsed.attrs),
    );
  } finally {
    if (parsed.ownsDt) parsed.dt.dispose();
  }
}

function single(result: Tensor | Tensor[]): Tensor {
  return Array.isArray(result) ? result[0]! : result;
}

/**
 * The SSM convolution kernel K [H, L] of a batch of diagonal systems:
 * K[h, l] = f Re(sum_n C_n B-bar_n A-bar_n^l), f = 2 for complex systems (S4D), 1 for real.
 * Discretization happens on the device with each channel's dt.
 */
export async function ssmKernel(ssm: DiagonalSsm, L: number, options: SsmGpuOptions = {}): Promise<Tensor> {
  const parsed = parseSsm(ssm, options);
  try {
    checkLength(L, 'L');
    checkGpuJsIndexRange(parsed.backend, 'K [H, L]', parsed.H * L);
    checkBindingSize(parsed.backend, 'K', parsed.H * L, [parsed.H, L]);
  } catch (e) {
    if (parsed.ownsDt) parsed.dt.dispose();
    throw e;
  }
  const params = await discretizeOnDevice(ssm, parsed);
  try {
    const attrs = { H: parsed.H, N: parsed.N, L, factor: parsed.complex ? 2 : 1 };
    return single(await runKernel(SsmVandermonde, parsed.backend, [params], attrs));
  } finally {
    params.dispose();
  }
}

/**
 * The recurrence over u [H, L]: x_k = A-bar x_{k-1} + B-bar u_k per state, y_k = f Re(C x_k).
 * WebGPU: one thread per channel walks the sequence (N up to MAX_SCAN_STATES); gpu.js: one
 * thread per output re-running the recurrence (O(L^2 N), for checking).
 */
export async function diagonalScan(
  ssm: DiagonalSsm,
  u: Tensor,
  options: SsmGpuOptions = {},
): Promise<Tensor> {
  const parsed = parseSsm(ssm, options);
  try {
    checkTensor(u, 'u');
    checkDType(u, 'u', ['f32']);
    checkSameBackend(parsed.backend, { u });
    if (u.rank !== 2 || u.shape[0] !== parsed.H || u.shape[1] === 0)
      throw new ShapeError('u', `[${parsed.H}, L] with L >= 1`, u.shape);
    checkLength(u.shape[1], 'u.shape[1] (L)');
    checkGpuJsIndexRange(parsed.backend, 'u', u.size);
    if (parsed.backend.kind === 'webgpu' && parsed.N > MAX_SCAN_STATES)
      throw new DeviceLimitError('A (states N)', 'MAX_SCAN_STATES', parsed.N, MAX_SCAN_STATES);
  } catch (e) {
    if (parsed.ownsDt) parsed.dt.dispose();
    throw e;
  }
  const params = await discretizeOnDevice(ssm, parsed);
  try {
    const attrs = { H: parsed.H, N: parsed.N, L: u.shape[1]!, factor: parsed.complex ? 2 : 1 };
    return single(await runKernel(SsmScan, parsed.backend, [params, u], attrs));
  } finally {
    params.dispose();
  }
}

/** The FFT length for sequences of length L: the power of two >= 2L. */
export function fftLength(L: number): number {
  return 2 ** Math.ceil(Math.log2(2 * Math.max(1, L)));
}

/**
 * The causal convolution y[h, k] = sum_{j <= k} K[h, j] u[h, k - j] of u [H, L] with K [H, L].
 * 'fft': zero-pad to M = fftLength(L), FFT on the device, multiply, inverse FFT.
 */
export async function causalConv(u: Tensor, K: Tensor, options: CausalConvOptions = {}): Promise<Tensor> {
  checkTensor(u, 'u');
  checkTensor(K, 'K');
  checkDType(u, 'u', ['f32']);
  checkDType(K, 'K', ['f32']);
  checkSameBackend(u.backend, { K });
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const algorithm = options.algorithm ?? 'fft';
  if (algorithm !== 'fft' && algorithm !== 'direct')
    throw new ArgumentError('options.algorithm', "'fft' or 'direct'", algorithm);
  if (u.rank !== 2 || u.shape[0] === 0 || u.shape[1] === 0)
    throw new ShapeError('u', '[H, L] with H, L >= 1', u.shape);
  if (formatShape(K.shape) !== formatShape(u.shape))
    throw new ShapeError('K', `${formatShape(u.shape)} (u's shape)`, K.shape);
  const fft = options.fft ?? 'auto';
  if (fft !== 'auto' && fft !== 'workgroup' && fft !== 'global')
    throw new ArgumentError('options.fft', "'auto', 'workgroup' or 'global'", fft);
  const H = u.shape[0]!;
  const L = checkLength(u.shape[1], 'u.shape[1] (L)');
  const M = fftLength(L);
  if (algorithm === 'fft') {
    // Four FFT buffers of [ceil(H / 2), M] complex values (channels go in pairs).
    const rows = Math.ceil(H / 2);
    checkGpuJsIndexRange(u.backend, `FFT buffer [${rows}, ${M}, 2]`, rows * M * 2);
    checkBindingSize(u.backend, 'FFT buffer', rows * M * 2, [rows, M, 2]);
  } else {
    checkGpuJsIndexRange(u.backend, 'u', H * L);
  }
  registerSsmKernels();
  const attrs: CausalConvAttrs = { H, L, M, algorithm, fft };
  return single(await runKernel(CausalConv, u.backend, [u, K], attrs));
}
