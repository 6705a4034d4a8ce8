/**
 * attention, attentionVarlen and their backward passes. Each op validates its inputs
 * (typed errors before any GPU work), resolves the layout and mask parameters, and runs
 * the FlashAttention kernel registered for the tensors' backend kind, or, with
 * `algorithm: 'naive'`, composes matmul and the softmax package (materializing the scores).
 * See ./reference.ts for the exact semantics.
 */
import {
  ArgumentError,
  type Backend,
  DeviceLimitError,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkOneOf,
  checkRank,
  checkSameBackend,
  checkTensor,
  div,
  formatShape,
  keep,
  matmul,
  mul,
  registerKernelsOnce,
  runKernel,
  scope,
  tanh,
} from '@longseq/backend';
import { softmaxWithLse } from '@longseq/softmax';
import {
  FlashAttention,
  type FlashAttentionAttrs,
  FlashAttentionBackward,
  type FlashTile,
  type FlashVariant,
} from './contract';
import { flashAttentionBackwardGpuJsKernel, flashAttentionGpuJsKernel } from './gpujs/attention';
import { type AttentionLayout, packedLayout, paddedLayout } from './layout';
import { type AttentionMaskOptions, type MaskParams, maskParams } from './reference';
import {
  flashAttentionWebGpuKernel,
  pickSubgroupMatrixConfig,
  subgroupMatrixUnavailable,
} from './webgpu/attention';
import { flashAttentionBackwardWebGpuKernel } from './webgpu/backward';

/** Smallest and largest head dim the kernels take. */
export const MIN_HEAD_DIM = 16;
export const MAX_HEAD_DIM = 256;

export type AttentionAlgorithm = 'flash' | 'naive';

export interface AttentionCommonOptions extends AttentionMaskOptions {
  /**
   * 'flash' (default): tiled, online softmax, memory beyond inputs and outputs O(N).
   * 'naive': scores and probabilities materialized ([.., Nq, Nk]) through matmul and the
   * softmax package; padded form only.
   */
  readonly algorithm?: AttentionAlgorithm;
  /** Also return the logsumexp of each query row (-Infinity for a row that sees no key). */
  readonly returnLse?: boolean;
  /** WebGPU forward tile override (for tuning); unset fields are chosen from the device limits and head dim. */
  readonly tile?: Partial<FlashTile>;
  /** WebGPU forward kernel choice; default 'auto'. */
  readonly variant?: FlashVariant;
  /** WebGPU: use subgroup operations where the device has them (default true). */
  readonly subgroups?: boolean;
}

export interface AttentionOptions extends AttentionCommonOptions {
  /** Valid query rows of each sequence (length B, each in 0..Nq); rows past it get out 0, lse -Infinity. */
  readonly seqlensQ?: ArrayLike<number>;
  /** Valid keys of each sequence (length B, each in 0..Nk); keys past it are ignored. */
  readonly seqlensK?: ArrayLike<number>;
}

export interface AttentionVarlenOptions extends AttentionCommonOptions {
  /** Cumulative query offsets, length S + 1: sequence s is tokens cuSeqlensQ[s] .. cuSeqlensQ[s+1] - 1 of q. */
  readonly cuSeqlensQ: ArrayLike<number>;
  /** Cumulative key offsets, length S + 1, into k and v. */
  readonly cuSeqlensK: ArrayLike<number>;
  /** Optional checks, as in flash_attn_varlen_func: the longest query / key sequence may not exceed them. */
  readonly maxSeqlenQ?: number;
  readonly maxSeqlenK?: number;
}

export interface AttentionResult {
  readonly output: Tensor;
  /** [B, H, Nq] (padded form) or [H, totalQ] (packed form). */
  readonly lse: Tensor;
}

export interface AttentionGradients {
  readonly dq: Tensor;
  readonly dk: Tensor;
  readonly dv: Tensor;
}

let registered = false;
/** Registers the FlashAttention kernels for both backend kinds (done on first use). */
export function registerAttentionKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    flashAttentionWebGpuKernel,
    flashAttentionGpuJsKernel,
    flashAttentionBackwardWebGpuKernel,
    flashAttentionBackwardGpuJsKernel,
  ] as never[]);
  registered = true;
}

const ALGORITHMS: readonly AttentionAlgorithm[] = ['flash', 'naive'];
const VARIANTS: readonly FlashVariant[] = ['auto', 'tiled', 'split', 'subgroup-matrix'];

function checkOptionsObject(options: unknown): void {
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
}

function checkQkv(q: Tensor, k: Tensor, v: Tensor, rank: number, expected: string): void {
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  checkSameBackend(q.backend, { k, v });
  checkDType(q, 'q', ['f32']);
  checkDType(k, 'k', ['f32']);
  checkDType(v, 'v', ['f32']);
  checkRank(q, 'q', rank, rank, expected);
  checkRank(k, 'k', rank, rank, expected.replace('H', 'Hkv'));
  checkRank(v, 'v', rank, rank, expected.replace('H', 'Hkv'));
  if (formatShape(v.shape) !== formatShape(k.shape)) {
    throw new ShapeError('v', `the shape of k ${formatShape(k.shape)}`, v.shape);
  }
  const d = q.shape[rank - 1]!;
  if (k.shape[rank - 1] !== d) throw new ShapeError('k', `head dim ${d} (last axis of q)`, k.shape);
  if (d > MAX_HEAD_DIM) throw new DeviceLimitError('q head dim', 'max head dim', d, MAX_HEAD_DIM);
  if (d < MIN_HEAD_DIM) {
    throw new ShapeError('q', `a head dim (last axis) in ${MIN_HEAD_DIM}..${MAX_HEAD_DIM}`, q.shape);
  }
}

function checkHeads(heads: number, kvHeads: number, q: Tensor): void {
  if (kvHeads === 0 || heads % kvHeads !== 0) {
    throw new ShapeError('q', `a head count that is a multiple of k's ${kvHeads} heads`, q.shape);
  }
}

function checkWindow(window: unknown): void {
  if (window === undefined) return;
  const ok =
    Array.isArray(window) &&
    window.length === 2 &&
    window.every(
      (w) => typeof w === 'number' && w >= 0 && (Number.isInteger(w) || w === Number.POSITIVE_INFINITY),
    );
  if (!ok) {
    throw new ArgumentError('options.window', '[left, right], each an integer >= 0 or Infinity', window);
  }
}

function parseMask(options: AttentionMaskOptions, d: number, heads: number): MaskParams {
  if (options.causal !== undefined && typeof options.causal !== 'boolean')
    throw new ArgumentError('options.causal', 'a boolean', options.causal);
  checkWindow(options.window);
  if (
    options.softcap !== undefined &&
    (typeof options.softcap !== 'number' || !Number.isFinite(options.softcap) || options.softcap < 0)
  ) {
    throw new ArgumentError('options.softcap', 'a finite number >= 0 (0 = off)', options.softcap);
  }
  if (options.scale !== undefined && (typeof options.scale !== 'number' || !Number.isFinite(options.scale))) {
    throw new ArgumentError('options.scale', 'a finite number', options.scale);
  }
  const slopes = options.alibiSlopes;
  if (slopes !== undefined) {
    let ok = slopes !== null && typeof slopes === 'object' && slopes.length === heads;
    for (let h = 0; ok && h < heads; h++) ok = Number.isFinite(slopes[h]);
    if (!ok)
      throw new ArgumentError('options.alibiSlopes', `${heads} finite numbers (one per query head)`, slopes);
  }
  return maskParams(options, d);
}

function checkLengths(lengths: unknown, name: string, count: number, max: number): void {
  if (lengths === undefined) return;
  let ok = lengths !== null && typeof lengths === 'object' && (lengths as ArrayLike<number>).length === count;
  const list = lengths as ArrayLike<number>;
  for (let i = 0; ok && i < count; i++) {
    const x = list[i]!;
    ok = Number.isInteger(x) && x >= 0 && x <= max;
  }
  if (!ok) throw new ArgumentError(name, `${count} integers in 0..${max} (one per sequence)`, lengths);
}

function checkCuSeqlens(cu: unknown, name: string, total: number): void {
  let ok = cu !== null && typeof cu === 'object' && (cu as ArrayLike<number>).length >= 1;
  const list = cu as ArrayLike<number>;
  ok = ok && list[0] === 0 && list[list.length - 1] === total;
  for (let i = 1; ok && i < list.length; i++) ok = Number.isInteger(list[i]) && list[i]! >= list[i - 1]!;
  if (!ok) {
    throw new ArgumentError(
      name,
      `non-decreasing integers starting at 0 and ending at the token count ${total}`,
      cu === null || typeof cu !== 'object' ? cu : Array.from(list),
    );
  }
}

function parseCommon(
  q: Tensor,
  layout: AttentionLayout,
  mask: MaskParams,
  options: AttentionCommonOptions,
): { attrs: FlashAttentionAttrs; algorithm: AttentionAlgorithm } {
  const algorithm = checkOneOf(options.algorithm ?? 'flash', 'options.algorithm', ALGORITHMS);
  const variant = checkOneOf(options.variant ?? 'auto', 'options.variant', VARIANTS);
  if (options.returnLse !== undefined && typeof options.returnLse !== 'boolean')
    throw new ArgumentError('options.returnLse', 'a boolean', options.returnLse);
  if (options.tile !== undefined) {
    if (options.tile === null || typeof options.tile !== 'object')
      throw new ArgumentError('options.tile', 'an object { br, bc, tr, tc }', options.tile);
    for (const key of ['br', 'bc', 'tr', 'tc'] as const) {
      const x = options.tile[key];
      if (x !== undefined && !(Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0))
        throw new ArgumentError(`options.tile.${key}`, 'a power of two >= 1', x);
    }
  }
  for (const [name, shape] of [
    ['q', layout.qShape],
    ['k', layout.kShape],
  ] as const) {
    checkBindingSize(
      q.backend,
      name,
      shape.reduce((a, x) => a * x, 1),
      shape,
    );
  }
  if (variant === 'subgroup-matrix' && !pickSubgroupMatrixConfig(q.backend)) {
    throw subgroupMatrixUnavailable(q.backend);
  }
  registerAttentionKernels();
  return {
    algorithm,
    attrs: {
      layout,
      scale: mask.scale,
      softcap: mask.softcap,
      windowLeft: mask.windowLeft,
      windowRight: mask.windowRight,
      alibiSlopes: mask.alibiSlopes ? Array.from(mask.alibiSlopes, Math.fround) : undefined,
      returnLse: options.returnLse === true,
      tile: options.tile,
      variant,
      subgroups: options.subgroups ?? true,
    },
  };
}

function parsePadded(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): { attrs: FlashAttentionAttrs; algorithm: AttentionAlgorithm; mask: MaskParams } {
  checkOptionsObject(options);
  checkQkv(q, k, v, 4, '[B, H, N, d]');
  const [batch, heads, nq, d] = q.shape as [number, number, number, number];
  const [kb, kvHeads, nk] = k.shape as [number, number, number, number];
  if (kb !== batch) throw new ShapeError('k', `batch ${batch} (q's first axis)`, k.shape);
  checkHeads(heads, kvHeads, q);
  checkLengths(options.seqlensQ, 'options.seqlensQ', batch, nq);
  checkLengths(options.seqlensK, 'options.seqlensK', batch, nk);
  const mask = parseMask(options, d, heads);
  const layout = paddedLayout(q.shape, k.shape, options.seqlensQ, options.seqlensK);
  return { ...parseCommon(q, layout, mask, options), mask };
}

function parsePacked(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionVarlenOptions,
): { attrs: FlashAttentionAttrs; algorithm: AttentionAlgorithm; mask: MaskParams } {
  checkOptionsObject(options);
  checkQkv(q, k, v, 3, '[totalTokens, H, d]');
  const [totalQ, heads, d] = q.shape as [number, number, number];
  const [totalK, kvHeads] = k.shape as [number, number, number];
  checkHeads(heads, kvHeads, q);
  checkCuSeqlens(options.cuSeqlensQ, 'options.cuSeqlensQ', totalQ);
  checkCuSeqlens(options.cuSeqlensK, 'options.cuSeqlensK', totalK);
  if (options.cuSeqlensK.length !== options.cuSeqlensQ.length) {
    throw new ArgumentError(
      'options.cuSeqlensK',
      `${options.cuSeqlensQ.length} offsets (as many as cuSeqlensQ)`,
      Array.from(options.cuSeqlensK),
    );
  }
  const mask = parseMask(options, d, heads);
  const layout = packedLayout(q.shape, k.shape, options.cuSeqlensQ, options.cuSeqlensK);
  for (const [name, limit, actual] of [
    ['options.maxSeqlenQ', options.maxSeqlenQ, layout.maxQLen],
    ['options.maxSeqlenK', options.maxSeqlenK, layout.maxKLen],
  ] as const) {
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= actual))
      throw new ArgumentError(name, `an integer >= the longest sequence (${actual})`, limit);
  }
  const parsed = parseCommon(q, layout, mask, options);
  if (parsed.algorithm === 'naive') {
    throw new ArgumentError(
      'options.algorithm',
      "'flash' for packed sequences (naive takes the padded form)",
      'naive',
    );
  }
  return { ...parsed, mask };
}

async function runFlash(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  attrs: FlashAttentionAttrs,
): Promise<AttentionResult> {
  const result = (await runKernel(FlashAttention, q.backend, [q, k, v], attrs)) as Tensor[];
  return { output: result[0]!, lse: result[1]! };
}

function finish(result: AttentionResult, returnLse: boolean): Tensor | AttentionResult {
  if (returnLse) return result;
  result.lse.dispose();
  return result.output;
}

/**
 * Attention over q [B, H, Nq, d] and k, v [B, Hkv, Nk, d] (H a multiple of Hkv). Returns
 * the output [B, H, Nq, d], or `{ output, lse }` with `returnLse: true` (lse [B, H, Nq]).
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions & { readonly returnLse: true },
): Promise<AttentionResult>;
export function attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<Tensor>;
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Promise<Tensor | AttentionResult> {
  const { attrs, algorithm, mask } = parsePadded(q, k, v, options);
  const result =
    algorithm === 'naive' ? await naiveAttention(q, k, v, attrs, mask) : await runFlash(q, k, v, attrs);
  return finish(result, attrs.returnLse);
}

/**
 * Attention over packed sequences, as flash_attn_varlen_func: q [totalQ, H, d], k, v
 * [totalK, Hkv, d], sequence s spanning cuSeqlensQ[s]..cuSeqlensQ[s+1] of q and
 * cuSeqlensK[s]..cuSeqlensK[s+1] of k and v. Output [totalQ, H, d]; lse [H, totalQ].
 */
export function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionVarlenOptions & { readonly returnLse: true },
): Promise<AttentionResult>;
export function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionVarlenOptions,
): Promise<Tensor>;
export async function attentionVarlen(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionVarlenOptions,
): Promise<Tensor | AttentionResult> {
  const { attrs } = parsePacked(q, k, v, options);
  return finish(await runFlash(q, k, v, attrs), attrs.returnLse);
}

function checkBackwardTensors(
  attrs: FlashAttentionAttrs,
  q: Tensor,
  out: Tensor,
  dOut: Tensor,
  lse: Tensor,
): void {
  const tensors = { out, dOut, lse };
  for (const [name, t] of Object.entries(tensors)) {
    checkTensor(t, name);
    checkDType(t, name, ['f32']);
  }
  checkSameBackend(q.backend, tensors);
  for (const [name, t] of Object.entries({ out, dOut })) {
    if (formatShape(t.shape) !== formatShape(attrs.layout.qShape))
      throw new ShapeError(name, `the shape of q ${formatShape(attrs.layout.qShape)}`, t.shape);
  }
  if (formatShape(lse.shape) !== formatShape(attrs.layout.lseShape))
    throw new ShapeError('lse', formatShape(attrs.layout.lseShape), lse.shape);
}

async function runBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  dOut: Tensor,
  lse: Tensor,
  attrs: FlashAttentionAttrs,
): Promise<AttentionGradients> {
  const [dq, dk, dv] = (await runKernel(
    FlashAttentionBackward,
    q.backend,
    [q, k, v, out, dOut, lse],
    attrs,
  )) as Tensor[];
  return { dq: dq!, dk: dk!, dv: dv! };
}

/**
 * Gradients of attention (padded form) given the forward's output and logsumexp (from
 * `attention(..., { returnLse: true })` with the same options) and the output gradient
 * dOut. The probabilities are recomputed from lse, never stored. Returns dq, dk, dv.
 */
export async function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  dOut: Tensor,
  lse: Tensor,
  options: AttentionOptions = {},
): Promise<AttentionGradients> {
  const { attrs } = parsePadded(q, k, v, options);
  checkBackwardTensors(attrs, q, out, dOut, lse);
  return runBackward(q, k, v, out, dOut, lse, attrs);
}

/** Gradients of attentionVarlen (packed form); lse is [H, totalQ]. */
export async function attentionVarlenBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  dOut: Tensor,
  lse: Tensor,
  options: AttentionVarlenOptions,
): Promise<AttentionGradients> {
  const { attrs } = parsePacked(q, k, v, options);
  checkBackwardTensors(attrs, q, out, dOut, lse);
  return runBackward(q, k, v, out, dOut, lse, attrs);
}

/**
 * The additive bias of naive attention, [B, Hkv, G * Nq, Nk] (query heads of a group
 * stacked along the rows): -Infinity where a key is not visible, -slope * |p - j| with
 * ALiBi, and whole rows of -Infinity past a sequence's query length. Undefined when no
 * position is masked or biased.
 */
export function naiveBias(layout: AttentionLayout, mask: MaskParams): Float32Array | undefined {
  const [batch, heads, nq] = layout.qShape as [number, number, number];
  const nk = layout.kShape[2]!;
  const full = layout.sequences.every((s) => s.qLen === nq && s.kLen === nk);
  const unbounded = mask.windowLeft >= nk + nq && mask.windowRight >= nk + nq;
  if (full && unbounded && !mask.alibiSlopes) return undefined;
  const bias = new Float32Array(batch * heads * nq * nk);
  for (let b = 0; b < batch; b++) {
    const { qLen, kLen } = layout.sequences[b]!;
    for (let h = 0; h < heads; h++) {
      const slope = mask.alibiSlopes ? mask.alibiSlopes[h]! : 0;
      for (let i = 0; i < nq; i++) {
        const row = ((b * heads + h) * nq + i) * nk;
        const p = i + kLen - qLen;
        for (let j = 0; j < nk; j++) {
          const visible = i < qLen && j < kLen && j >= p - mask.windowLeft && j <= p + mask.windowRight;
          bias[row + j] = visible ? -Math.fround(slope * Math.abs(p - j)) : Number.NEGATIVE_INFINITY;
        }
      }
    }
  }
  return bias;
}

/**
 * The bias naive attention hands the softmax: one [G * Nq, Nk] block broadcast over batch
 * and KV heads when every sequence has the full lengths and there is no ALiBi (so a causal
 * or windowed mask is the same for every head), else the whole naiveBias.
 */
function naiveMask(
  layout: AttentionLayout,
  mask: MaskParams,
): { data: Float32Array; shape: number[] } | undefined {
  const [batch, , nq] = layout.qShape as [number, number, number];
  const nk = layout.kShape[2]!;
  const rows = layout.group * nq;
  const uniform = layout.sequences.every((s) => s.qLen === nq && s.kLen === nk) && !mask.alibiSlopes;
  if (!uniform) {
    const bias = naiveBias(layout, mask);
    return bias && { data: bias, shape: [batch, layout.kvHeads, rows, nk] };
  }
  const one: AttentionLayout = {
    ...layout,
    qShape: [1, layout.group, nq, layout.qShape[3]!],
    sequences: layout.sequences.slice(0, 1),
  };
  const bias = naiveBias(one, mask);
  return bias && { data: bias, shape: [rows, nk] };
}

/** Naive attention from primitives: S = scale q k^T (softcapped), softmax with the bias, then P v. */
async function naiveAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  attrs: FlashAttentionAttrs,
  mask: MaskParams,
): Promise<AttentionResult> {
  const backend: Backend = q.backend;
  const { layout } = attrs;
  const [batch, heads, nq, d] = layout.qShape as [number, number, number, number];
  const nk = layout.kShape[2]!;
  const rows = layout.group * nq;
  checkBindingSize(backend, 'scores', batch * layout.kvHeads * rows * nk, [batch, layout.kvHeads, rows, nk]);
  const bias = naiveMask(layout, mask);
  return scope(async () => {
    const grouped = backend.reshape(q, [batch, layout.kvHeads, rows, d]);
    let s = await matmul(grouped, k, { transposeB: true });
    s = await mul(s, backend.tensor([mask.scale], [1]));
    if (mask.softcap > 0) {
      const cap = backend.tensor([mask.softcap], [1]);
      s = await mul(await tanh(await div(s, cap)), cap);
    }
    const options = bias ? { mask: backend.tensor(bias.data, bias.shape) } : {};
    const { output: p, lse } = await softmaxWithLse(s, options);
    const o = await matmul(p, v);
    return {
      output: keep(backend.reshape(o, [batch, heads, nq, d])),
      lse: keep(backend.reshape(lse, [batch, heads, nq])),
    };
  });
}
