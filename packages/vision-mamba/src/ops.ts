/**
 * The Vim kernels as ops: validate (typed errors before any GPU work), parse attributes, run
 * the kernel registered for the tensors' backend kind. ./reference.ts holds their float64
 * semantics.
 */
import {
  ArgumentError,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkRank,
  checkSameBackend,
  checkTensor,
  registerKernelsOnce,
  runKernel,
} from '@longseq/backend';
import {
  VimGather,
  type VimGatherAttrs,
  VimScanMerge,
  type VimScanMergeAttrs,
  VimTokens,
  type VimTokensAttrs,
} from './contract';
import { vimGatherGpuJsKernel, vimScanMergeGpuJsKernel, vimTokensGpuJsKernel } from './gpujs/kernels';
import { vimGatherWebGpuKernel, vimScanMergeWebGpuKernel, vimTokensWebGpuKernel } from './webgpu/kernels';

let registered = false;
/** Registers the Vim kernels for both backend kinds (done on first use). */
export function registerVimKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    vimGatherWebGpuKernel,
    vimGatherGpuJsKernel,
    vimTokensWebGpuKernel,
    vimTokensGpuJsKernel,
    vimScanMergeWebGpuKernel,
    vimScanMergeGpuJsKernel,
  ] as never[]);
  registered = true;
}

async function first(p: Promise<Tensor | Tensor[]>): Promise<Tensor> {
  const r = await p;
  return Array.isArray(r) ? r[0]! : r;
}

/**
 * Batched gather: x `[batch, ...]` (viewed as `[batch, inner]`), index i32 of any shape with
 * entries in [-1, inner); returns `[batch, ...index.shape]` with `out[b, j] = x[b, index[j]]`
 * (0 where index[j] = -1). Indices live on the device: the caller makes them (scanOrder,
 * patchIndex) and they are not checked again here.
 */
export async function vimGather(x: Tensor, index: Tensor): Promise<Tensor> {
  checkTensor(x, 'x');
  checkTensor(index, 'index');
  checkDType(x, 'x', ['f32']);
  checkDType(index, 'index', ['i32']);
  checkRank(x, 'x', 1, 8, '[batch, ...]');
  checkSameBackend(x.backend, { index });
  const batch = x.shape[0]!;
  const inner = batch === 0 ? 0 : x.size / batch;
  const outShape = [batch, ...index.shape];
  checkBindingSize(x.backend, 'x', x.size, x.shape);
  checkBindingSize(x.backend, 'output', batch * index.size, outShape);
  registerVimKernels();
  const attrs: VimGatherAttrs = { batch, inner, count: index.size, outShape };
  return first(runKernel(VimGather, x.backend, [x, index], attrs));
}

export interface VimTokensOptions {
  /** The class token `[M]` (or `[1, 1, M]`), inserted at `clsIndex`. */
  readonly cls?: Tensor;
  readonly clsIndex?: number;
  /** Absolute position embedding `[L, M]` (or `[1, L, M]`), added to every token. */
  readonly pos?: Tensor;
}

/**
 * The token sequence: patch embeddings `[B, P, M]` plus the patch bias `[M]`, the class
 * token inserted at `clsIndex`, plus the position embedding. Returns `[B, L, M]`,
 * L = P + 1 with a class token, else P.
 */
export async function vimTokens(
  patches: Tensor,
  bias: Tensor,
  options: VimTokensOptions = {},
): Promise<Tensor> {
  checkTensor(patches, 'patches');
  checkDType(patches, 'patches', ['f32']);
  checkRank(patches, 'patches', 3, 3, '[B, P, M]');
  const [batch, numPatches, embed] = patches.shape as [number, number, number];
  const vector = (t: Tensor, name: string) => {
    checkTensor(t, name);
    checkDType(t, name, ['f32']);
    if (t.size !== embed || t.shape[t.rank - 1] !== embed) throw new ShapeError(name, `[${embed}]`, t.shape);
  };
  vector(bias, 'bias');
  const hasCls = options.cls !== undefined;
  if (options.cls) vector(options.cls, 'options.cls');
  const length = numPatches + (hasCls ? 1 : 0);
  const clsIndex = hasCls ? (options.clsIndex ?? 0) : -1;
  if (hasCls && (!Number.isInteger(clsIndex) || clsIndex < 0 || clsIndex > numPatches)) {
    throw new ArgumentError('options.clsIndex', `an integer in [0, ${numPatches}]`, options.clsIndex);
  }
  if (options.pos) {
    checkTensor(options.pos, 'options.pos');
    checkDType(options.pos, 'options.pos', ['f32']);
    if (options.pos.size !== length * embed || options.pos.shape[options.pos.rank - 1] !== embed)
      throw new ShapeError(
        'options.pos',
        `[${length}, ${embed}] (or [1, ${length}, ${embed}])`,
        options.pos.shape,
      );
  }
  checkSameBackend(patches.backend, {
    bias,
    ...(options.cls ? { 'options.cls': options.cls } : {}),
    ...(options.pos ? { 'options.pos': options.pos } : {}),
  });
  checkBindingSize(patches.backend, 'output', batch * length * embed, [batch, length, embed]);
  registerVimKernels();
  const attrs: VimTokensAttrs = {
    batch,
    patches: numPatches,
    embed,
    clsIndex,
    hasPos: options.pos !== undefined,
    length,
  };
  return first(
    runKernel(
      VimTokens,
      patches.backend,
      [patches, bias, options.cls ?? patches, options.pos ?? patches],
      attrs,
    ),
  );
}

/**
 * Merges the scans of K directions: y `[B, K, D, L]`, inverse i32 `[K, L]` (the step at which
 * direction k read each token, `inverseOrder`); returns `[B, D, L]` with
 * `out[b, c, l] = scale * sum_k y[b, k, c, inverse[k, l]]`, or with `tokenMajor` the same
 * values as `[B, L, D]`.
 */
export async function vimScanMerge(
  y: Tensor,
  inverse: Tensor,
  scale = 1,
  options: { readonly tokenMajor?: boolean } = {},
): Promise<Tensor> {
  checkTensor(y, 'y');
  checkTensor(inverse, 'inverse');
  checkDType(y, 'y', ['f32']);
  checkDType(inverse, 'inverse', ['i32']);
  checkRank(y, 'y', 4, 4, '[B, K, D, L]');
  const [batch, directions, channels, length] = y.shape as [number, number, number, number];
  if (inverse.rank !== 2 || inverse.shape[0] !== directions || inverse.shape[1] !== length)
    throw new ShapeError('inverse', `[${directions}, ${length}] ([K, L] of y)`, inverse.shape);
  if (!Number.isFinite(scale)) throw new ArgumentError('scale', 'a finite number', scale);
  checkSameBackend(y.backend, { inverse });
  checkBindingSize(y.backend, 'y', y.size, y.shape);
  registerVimKernels();
  const attrs: VimScanMergeAttrs = {
    batch,
    directions,
    channels,
    length,
    scale,
    tokenMajor: options.tokenMajor === true,
  };
  return first(runKernel(VimScanMerge, y.backend, [y, inverse], attrs));
}
