/**
 * The Softmax kernel contract: its name, its parsed attributes and its outputs, shared by
 * the op and by both backends' implementations (which import nothing else from the op).
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';
import type { SoftmaxAlgorithm } from './reference';

/** The kernel contract shared by both backends' implementations. */
export const Softmax = 'Softmax';

export type SoftmaxVariant = 'auto' | 'fused' | 'multipass';

export interface SoftmaxAttrs {
  readonly algorithm: SoftmaxAlgorithm;
  /** Rows (product of leading dims) and row length. */
  readonly rows: number;
  readonly n: number;
  /** Elements of the mask (a suffix of x's shape), 0 without a mask. */
  readonly maskSize: number;
  readonly invTemperature: number;
  readonly variant: SoftmaxVariant;
  /** WebGPU: reduce with subgroup operations when the device has them. */
  readonly subgroups: boolean;
  /** Which outputs the kernel writes and returns, in this order: [output?, lse?]. */
  readonly returnOutput: boolean;
  readonly returnLse: boolean;
  readonly outShape: readonly number[];
  readonly lseShape: readonly number[];
}

/** The outputs a Softmax kernel writes, allocated by both backends' kernels alike. */
export interface SoftmaxOutputs {
  readonly out?: Tensor;
  readonly lse?: Tensor;
  /** In kernel-result order: [out?, lse?]. */
  readonly results: Tensor[];
}

export function allocateSoftmaxOutputs(backend: Backend, attrs: SoftmaxAttrs): SoftmaxOutputs {
  const out = attrs.returnOutput ? backend.empty(attrs.outShape) : undefined;
  const lse = attrs.returnLse ? backend.empty(attrs.lseShape) : undefined;
  return { out, lse, results: [out, lse].filter((t): t is Tensor => t !== undefined) };
}

/**
 * A Softmax kernel for one backend kind from the function that writes its outputs: both
 * kinds allocate the outputs the same way, and dispose them if writing fails, so a failed
 * call leaks nothing.
 */
export function softmaxKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: SoftmaxAttrs,
    outputs: SoftmaxOutputs,
  ) => Promise<void>,
): KernelConfig<SoftmaxAttrs> {
  return {
    kernelName: Softmax,
    backendKind,
    async run(backend, inputs, attrs) {
      const outputs = allocateSoftmaxOutputs(backend, attrs);
      await disposeOnError(outputs.results, () => write(backend, inputs, attrs, outputs));
      return outputs.results;
    },
  };
}
