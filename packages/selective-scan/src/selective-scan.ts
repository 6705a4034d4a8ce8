/**
 * selectiveScan: Mamba's S6 scan. Validates every input (typed errors before any GPU work),
 * parses the attributes, and runs the `SelectiveScan` kernel registered for the tensors'
 * backend kind (WGSL programs in ./webgpu, gpu.js ones in ./gpujs). ./reference.ts spells
 * out the semantics.
 */
import {
  ArgumentError,
  type Backend,
  checkBindingSize,
  checkDType,
  checkOneOf,
  checkSameBackend,
  checkTensor,
  DeviceLimitError,
  formatShape,
  registerKernelsOnce,
  runKernel,
  ShapeError,
  type Tensor,
} from '@longseq/backend';
import {
  packScanInputs,
  type ScanAlgorithm,
  type ScanExp,
  type ScanOperandLayout,
  SelectiveScan,
  type SelectiveScanAttrs,
} from './contract';
import { selectiveScanGpuJsKernel } from './gpujs/selective-scan';
import { selectiveScanWebGpuKernel } from './webgpu/selective-scan';

export interface SelectiveScanOptions {
  /** Skip connection, [d]: y += D * u. */
  readonly D?: Tensor;
  /** Gate, [batch, d, L]: y *= silu(z). */
  readonly z?: Tensor;
  /** Added to delta before the softplus, [d]. */
  readonly deltaBias?: Tensor;
  /** dt = softplus(delta + deltaBias), with PyTorch's threshold (x past 20 stays x). Default false. */
  readonly deltaSoftplus?: boolean;
  /** The state before the first step, [batch, d, n]. Default zeros. */
  readonly initialState?: Tensor;
  /** Also return the state after the last step, [batch, d, n] (for decoding). Default false. */
  readonly returnLastState?: boolean;
  /**
   * - 'sequential': WebGPU: one thread per (batch, channel) stepping through time with its n
   *   states in registers. gpu.js: chunk carries folded in order.
   * - 'parallel': WebGPU: a workgroup scans chunks of time with the associative operator
   *   (a tree in workgroup memory), carrying the state from chunk to chunk. gpu.js: chunk
   *   carries by a Hillis-Steele scan over chunks (log passes).
   * - 'auto' (default): sequential when batch x d >= 8192 (enough channels to fill a GPU)
   *   or L <= 32 (decoding), else parallel. See `autoAlgorithm`.
   */
  readonly algorithm?: ScanAlgorithm;
  /**
   * Reads delta, A and deltaBias back to the host and throws ArgumentError on a non-finite
   * value before the scan. Off by default: it waits for the GPU and copies delta (the size of
   * the input); without it a non-finite dt propagates as NaN / Infinity into y, as in PyTorch.
   */
  readonly checkFinite?: boolean;
  /**
   * WebGPU: how e^(dt A) is computed. 'fast': the hardware exp2 with the argument's rounding
   * error carried by fma (about 5 instructions and one special-function op). 'accurate': a
   * range-reduced polynomial, about 1 ulp (about 20 instructions). 'auto' (default): fast
   * where a one-time probe finds the device's exp2 within 3 ulp (GPUs), else accurate
   * (SwiftShader). gpu.js uses its Math.exp.
   */
  readonly exp?: ScanExp;
  /**
   * WebGPU: use subgroup operations where the device offers them (default true). The
   * parallel kernel scans across its workgroup with subgroup shuffles (2 barriers per state
   * and chunk instead of 12); the sequential kernel (L a multiple of 4, n >= 8) splits each
   * channel's states over a quad of 4 lanes, for four times the threads. false forces the
   * workgroup-memory tree and one thread per channel (for comparison).
   */
  readonly subgroups?: boolean;
  /**
   * WebGPU parallel kernel: cut each sequence into this many segments, scanned by separate
   * workgroups in three passes (segment totals, the state entering each segment, then y).
   * 'auto' (default): 1 when batch x ceil(d / 4) already gives 1024 workgroups, else as many
   * as that takes, up to one per chunk of 256 steps. Lets few channels with a long sequence
   * fill a GPU.
   */
  readonly segments?: number | 'auto';
}

export interface SelectiveScanResult {
  /** [batch, d, L]. */
  readonly y: Tensor;
  /** [batch, d, n], when `returnLastState` was set. */
  readonly lastState?: Tensor;
}

/**
 * 'auto': the sequential kernel (least work per step) when there are channels enough to fill
 * a GPU with one thread each, or the sequence is short (decoding); the parallel kernel
 * (threads over time too) when a few channels scan a long sequence.
 */
export function autoAlgorithm(batch: number, d: number, L: number): 'sequential' | 'parallel' {
  return L <= 32 || batch * d >= AUTO_SEQUENTIAL_CHANNELS ? 'sequential' : 'parallel';
}

/**
 * batch x d from which 'auto' picks the sequential kernel. Measured on an H100 (d 2048,
 * L 4096, n 16): 2048 channels parallel 0.75 ms / sequential 0.92, 4096: 0.62 / 0.94,
 * 8192: 1.14 / 1.02, 16384: 2.22 / 1.40; with 256 channels the parallel kernel is 3x
 * (L 1024) to 10x (L 65536) faster. The crossing lies between 4096 and 8192 channels.
 */
export const AUTO_SEQUENTIAL_CHANNELS = 8192;

/** Largest state size n: the sequential kernel keeps n states per thread in registers. */
export const MAX_STATES = 256;

const ALGORITHMS: readonly ScanAlgorithm[] = ['auto', 'sequential', 'parallel'];
const EXP_MODES: readonly ScanExp[] = ['auto', 'fast', 'accurate'];

let registered = false;
/** Registers the SelectiveScan kernels for both backend kinds (done on first use). */
export function registerSelectiveScanKernels(): void {
  if (registered) return;
  registerKernelsOnce([selectiveScanWebGpuKernel, selectiveScanGpuJsKernel] as never[]);
  registered = true;
}

function expectShape(t: Tensor, argument: string, shape: readonly number[], meaning: string): void {
  if (formatShape(t.shape) !== formatShape(shape)) {
    throw new ShapeError(argument, `${formatShape(shape)} (${meaning})`, t.shape);
  }
}

function optionalTensor(value: unknown, argument: string, backend: Backend): Tensor | undefined {
  if (value === undefined) return undefined;
  const t = checkTensor(value, argument);
  checkDType(t, argument, ['f32']);
  checkSameBackend(backend, { [argument]: t });
  return t;
}

function checkPositiveInteger(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ArgumentError(argument, "an integer >= 1 or 'auto'", value);
  }
  return value;
}

function optionalBoolean(value: unknown, argument: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new ArgumentError(argument, 'a boolean', value);
  return value;
}

/** B or C: [batch, n, L], [batch, g, n, L] with g dividing d, or [d, n]. */
function operandLayout(
  t: Tensor,
  argument: string,
  batch: number,
  d: number,
  n: number,
  L: number,
): { layout: ScanOperandLayout; groups: number } {
  const expected = `[${batch}, ${n}, ${L}] (batch, n, L), [${batch}, g, ${n}, ${L}] with g dividing d = ${d}, or [${d}, ${n}] (d, n)`;
  const s = t.shape;
  if (s.length === 2 && s[0] === d && s[1] === n) return { layout: 'invariant', groups: 1 };
  if (s.length === 3 && s[0] === batch && s[1] === n && s[2] === L) return { layout: 'variable', groups: 1 };
  if (s.length === 4 && s[0] === batch && s[2] === n && s[3] === L && s[1]! >= 1 && d % s[1]! === 0) {
    return { layout: 'variable', groups: s[1]! };
  }
  throw new ShapeError(argument, expected, s);
}

function parse(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options: SelectiveScanOptions,
): { backend: Backend; attrs: SelectiveScanAttrs; inputs: Tensor[] } {
  checkTensor(u, 'u');
  checkDType(u, 'u', ['f32']);
  if (u.rank !== 3) throw new ShapeError('u', '[batch, d, L]', u.shape);
  const [batch, d, L] = u.shape as [number, number, number];
  if (L === 0)
    throw new ShapeError('u', '[batch, d, L] with L >= 1 (an empty sequence has no scan)', u.shape);
  if (d === 0) throw new ShapeError('u', '[batch, d, L] with d >= 1', u.shape);
  const backend = u.backend;
  for (const [name, t] of [
    ['delta', delta],
    ['A', A],
    ['B', B],
    ['C', C],
  ] as const) {
    checkTensor(t, name);
    checkDType(t, name, ['f32']);
    checkSameBackend(backend, { [name]: t });
  }
  expectShape(delta, 'delta', u.shape, "u's shape [batch, d, L]");
  if (A.rank !== 2 || A.shape[0] !== d || A.shape[1]! < 1) {
    throw new ShapeError('A', `[${d}, n] (d, n) with n >= 1`, A.shape);
  }
  const n = A.shape[1]!;
  if (n > MAX_STATES) throw new DeviceLimitError('A state size n', 'MAX_STATES', n, MAX_STATES);
  const b = operandLayout(B, 'B', batch, d, n, L);
  const c = operandLayout(C, 'C', batch, d, n, L);

  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const D = optionalTensor(options.D, 'options.D', backend);
  if (D) expectShape(D, 'options.D', [d], 'd');
  const z = optionalTensor(options.z, 'options.z', backend);
  if (z) expectShape(z, 'options.z', u.shape, "u's shape [batch, d, L]");
  const deltaBias = optionalTensor(options.deltaBias, 'options.deltaBias', backend);
  if (deltaBias) expectShape(deltaBias, 'options.deltaBias', [d], 'd');
  const initialState = optionalTensor(options.initialState, 'options.initialState', backend);
  if (initialState) expectShape(initialState, 'options.initialState', [batch, d, n], 'batch, d, n');
  const deltaSoftplus = optionalBoolean(options.deltaSoftplus, 'options.deltaSoftplus');
  const returnLastState = optionalBoolean(options.returnLastState, 'options.returnLastState');
  optionalBoolean(options.checkFinite, 'options.checkFinite');
  const requested = checkOneOf(options.algorithm ?? 'auto', 'options.algorithm', ALGORITHMS);
  const algorithm = requested === 'auto' ? autoAlgorithm(batch, d, L) : requested;
  const exp = checkOneOf(options.exp ?? 'auto', 'options.exp', EXP_MODES);
  const subgroups =
    options.subgroups === undefined ? true : optionalBoolean(options.subgroups, 'options.subgroups');
  const segments =
    options.segments === undefined || options.segments === 'auto'
      ? 'auto'
      : checkPositiveInteger(options.segments, 'options.segments');

  for (const [name, t] of Object.entries({ u, delta, A, B, C, D, z, deltaBias, initialState })) {
    if (t) checkBindingSize(backend, name, t.size, t.shape);
  }
  registerSelectiveScanKernels();
  return {
    backend,
    inputs: packScanInputs({ u, delta, A, B, C, D, z, deltaBias, initialState }),
    attrs: {
      batch,
      channels: d,
      length: L,
      states: n,
      bLayout: b.layout,
      bGroups: b.groups,
      cLayout: c.layout,
      cGroups: c.groups,
      hasD: D !== undefined,
      hasZ: z !== undefined,
      hasDeltaBias: deltaBias !== undefined,
      deltaSoftplus,
      hasInitialState: initialState !== undefined,
      returnLastState,
      algorithm,
      exp,
      subgroups,
      segments,
      yShape: [batch, d, L],
      stateShape: [batch, d, n],
    },
  };
}

/** Throws ArgumentError naming the tensor and the first non-finite element. */
async function checkFiniteValues(tensors: Record<string, Tensor | undefined>): Promise<void> {
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    const data = await t.read();
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) {
        throw new ArgumentError(name, `finite values (element ${i} of ${formatShape(t.shape)})`, data[i]);
      }
    }
  }
}

/**
 * Mamba's selective scan (mamba_ssm's `selective_scan_fn`), see ./reference.ts for the
 * shapes and the recurrence. Returns y [batch, d, L] and, with `returnLastState`, the
 * final state [batch, d, n].
 */
export async function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options: SelectiveScanOptions & { readonly returnLastState: true },
): Promise<{ readonly y: Tensor; readonly lastState: Tensor }>;
export async function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options?: SelectiveScanOptions,
): Promise<SelectiveScanResult>;
export async function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options: SelectiveScanOptions = {},
): Promise<SelectiveScanResult> {
  const { backend, attrs, inputs } = parse(u, delta, A, B, C, options);
  if (options.checkFinite) {
    await checkFiniteValues({ delta, A, 'options.deltaBias': options.deltaBias });
  }
  const result = await runKernel(SelectiveScan, backend, inputs, attrs);
  const list = Array.isArray(result) ? result : [result];
  return attrs.returnLastState ? { y: list[0]!, lastState: list[1]! } : { y: list[0]! };
}
