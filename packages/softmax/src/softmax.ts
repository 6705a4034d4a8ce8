/**
 * softmax, softmaxWithLse and logsumexp over the last axis. Each op validates its inputs,
 * parses attributes, and runs the `Softmax` kernel registered for the tensor's backend kind
 * (programs for WebGPU in ./webgpu, for gpu.js in ./gpujs). See ./reference.ts for the exact
 * semantics, including masks, temperature and fully masked rows.
 */
import {
  ArgumentError,
  type Backend,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkOneOf,
  checkPositiveNumber,
  checkRank,
  checkSameBackend,
  checkTensor,
  formatShape,
  registerKernelsOnce,
  runKernel,
  sizeOf,
} from '@longseq/backend';
import { softmaxGpuJsKernel } from './gpujs/softmax';
import { Softmax, type SoftmaxAttrs, type SoftmaxVariant } from './contract';
import type { SoftmaxAlgorithm } from './reference';
import { softmaxWebGpuKernel } from './webgpu/softmax';

export interface SoftmaxOptions {
  /**
   * - 'online' (default): max and denominator in one pass with rescaling, then normalize.
   * - 'safe': three passes: max, denominator, normalize.
   * - 'naive': exp, sum, normalize without subtracting the max (overflows past ~88; for teaching).
   */
  readonly algorithm?: SoftmaxAlgorithm;
  /**
   * Additive mask (f32) whose shape is a suffix of x's shape: `[N]`, `[Q, N]`, ... It is
   * added after the temperature; -Infinity entries mask positions out.
   */
  readonly mask?: Tensor;
  /** Logits are divided by it; must be > 0. Default 1. */
  readonly temperature?: number;
  /**
   * WebGPU kernel shape. 'fused': one workgroup per row holding the row in registers (one
   * read, one write; rows up to `maxFusedRowLength`). 'multipass': streaming passes over
   * global memory, rows split across workgroups, any length. 'auto' (default) picks fused
   * when the row fits. gpu.js always runs the multipass form.
   */
  readonly variant?: SoftmaxVariant;
  /**
   * WebGPU: use subgroup operations (subgroupMax / subgroupAdd) in the reductions when the
   * device offers the `subgroups` feature. Default true; false forces the workgroup-memory
   * tree (for comparison). Ignored by gpu.js.
   */
  readonly subgroups?: boolean;
}

function single(result: Tensor | Tensor[]): Tensor {
  return Array.isArray(result) ? result[0]! : result;
}

const ALGORITHMS: readonly SoftmaxAlgorithm[] = ['online', 'safe', 'naive'];
const VARIANTS: readonly SoftmaxVariant[] = ['auto', 'fused', 'multipass'];

let registered = false;
/** Registers the Softmax kernels for both backend kinds (done on first use). */
export function registerSoftmaxKernels(): void {
  if (registered) return;
  registerKernelsOnce([softmaxWebGpuKernel, softmaxGpuJsKernel] as never[]);
  registered = true;
}

function parse(
  x: Tensor,
  options: SoftmaxOptions,
  returnOutput: boolean,
  returnLse: boolean,
): { backend: Backend; attrs: SoftmaxAttrs; inputs: Tensor[] } {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkRank(x, 'x', 1, 16, 'of rank >= 1 ([..., N])');
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const algorithm = checkOneOf(options.algorithm ?? 'online', 'options.algorithm', ALGORITHMS);
  const variant = checkOneOf(options.variant ?? 'auto', 'options.variant', VARIANTS);
  const temperature =
    options.temperature === undefined ? 1 : checkPositiveNumber(options.temperature, 'options.temperature');
  const n = x.shape[x.rank - 1]!;
  const rows = sizeOf(x.shape.slice(0, -1));
  const inputs = [x];
  let maskSize = 0;
  if (options.mask !== undefined) {
    const mask = checkTensor(options.mask, 'options.mask');
    checkDType(mask, 'options.mask', ['f32']);
    checkSameBackend(x.backend, { 'options.mask': mask });
    const suffix = x.shape.slice(x.rank - mask.rank);
    if (mask.rank === 0 || mask.rank > x.rank || formatShape(suffix) !== formatShape(mask.shape)) {
      throw new ShapeError(
        'options.mask',
        `a suffix of x's shape ${formatShape(x.shape)}, e.g. [${n}]`,
        mask.shape,
      );
    }
    maskSize = mask.size;
    inputs.push(mask);
  }
  checkBindingSize(x.backend, 'x', x.size, x.shape);
  registerSoftmaxKernels();
  return {
    backend: x.backend,
    inputs,
    attrs: {
      algorithm,
      rows,
      n,
      maskSize,
      invTemperature: 1 / temperature,
      variant,
      subgroups: options.subgroups ?? true,
      returnOutput,
      returnLse,
      outShape: x.shape,
      lseShape: x.shape.slice(0, -1),
    },
  };
}

/** Softmax over the last axis of `x` (any rank). */
export async function softmax(x: Tensor, options: SoftmaxOptions = {}): Promise<Tensor> {
  const { backend, attrs, inputs } = parse(x, options, true, false);
  return single(await runKernel(Softmax, backend, inputs, attrs));
}

/** Softmax and the logsumexp of each row (shape `x.shape[:-1]`), computed together. */
export async function softmaxWithLse(
  x: Tensor,
  options: SoftmaxOptions = {},
): Promise<{ output: Tensor; lse: Tensor }> {
  const { backend, attrs, inputs } = parse(x, options, true, true);
  const result = await runKernel(Softmax, backend, inputs, attrs);
  if (!Array.isArray(result) || result.length !== 2)
    throw new Error('Softmax kernel must return [output, lse]');
  return { output: result[0]!, lse: result[1]! };
}

/** logsumexp over the last axis: `log(sum(exp(x / temperature + mask)))`, computed stably. */
export async function logsumexp(x: Tensor, options: SoftmaxOptions = {}): Promise<Tensor> {
  const { backend, attrs, inputs } = parse(x, options, false, true);
  return single(await runKernel(Softmax, backend, inputs, attrs));
}
