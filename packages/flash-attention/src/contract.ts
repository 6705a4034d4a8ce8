/**
 * The FlashAttention kernel contracts (forward and backward): names, parsed attributes and
 * output allocation, shared by the op and both backends' implementations.
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';
import type { AttentionLayout } from './layout';

export const FlashAttention = 'FlashAttention';
export const FlashAttentionBackward = 'FlashAttentionBackward';

/**
 * WebGPU forward tile shape. A workgroup owns `br` query rows and streams keys `bc` at a
 * time; each thread owns a `tr` x `tc` micro-tile of the score block, so a workgroup has
 * (br / tr) * (bc / tc) threads. Every field must be a power of two.
 */
export interface FlashTile {
  readonly br: number;
  readonly bc: number;
  readonly tr: number;
  readonly tc: number;
}

/**
 * Which WebGPU forward kernel runs: 'tiled' (query tile per workgroup), 'split' (decode:
 * few query rows, keys split across workgroups and merged by the online rule), 'auto'
 * (split when every sequence has at most 4 query rows and the keys are long), or the opt-in
 * 'subgroup-matrix' (S = Q K^T and P V on the GPU's matrix units through Dawn's
 * chromium-experimental-subgroup-matrix; f16 inputs where the device offers no f32
 * configuration, so about 1e-3 relative error; forward only; a typed error on devices
 * without the feature).
 */
export type FlashVariant = 'auto' | 'tiled' | 'split' | 'subgroup-matrix';

export interface FlashAttentionAttrs {
  readonly layout: AttentionLayout;
  readonly scale: number;
  readonly softcap: number;
  /** Infinity = unbounded; causal is already folded into windowRight (<= 0). */
  readonly windowLeft: number;
  readonly windowRight: number;
  /** ALiBi slopes, one per query head (the kernels carry them in their per-sequence table). */
  readonly alibiSlopes?: readonly number[];
  readonly returnLse: boolean;
  readonly tile?: Partial<FlashTile>;
  readonly variant: FlashVariant;
  readonly subgroups: boolean;
}

export interface FlashAttentionOutputs {
  readonly out: Tensor;
  readonly lse: Tensor;
  readonly results: Tensor[];
}

export function flashAttentionKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: FlashAttentionAttrs,
    outputs: FlashAttentionOutputs,
  ) => Promise<void>,
): KernelConfig<FlashAttentionAttrs> {
  return {
    kernelName: FlashAttention,
    backendKind,
    async run(backend, inputs, attrs) {
      // lse is always written: the kernels need it per row anyway, and backward needs it saved.
      const out = backend.empty(attrs.layout.qShape);
      const lse = backend.empty(attrs.layout.lseShape);
      const results = [out, lse];
      await disposeOnError(results, () => write(backend, inputs, attrs, { out, lse, results }));
      return results;
    },
  };
}

export interface FlashAttentionGradOutputs {
  readonly dq: Tensor;
  readonly dk: Tensor;
  readonly dv: Tensor;
  readonly results: Tensor[];
}

/** Backward inputs, in order: q, k, v, out, dOut, lse. */
export function flashAttentionBackwardKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: FlashAttentionAttrs,
    outputs: FlashAttentionGradOutputs,
  ) => Promise<void>,
): KernelConfig<FlashAttentionAttrs> {
  return {
    kernelName: FlashAttentionBackward,
    backendKind,
    async run(backend, inputs, attrs) {
      const dq = backend.empty(attrs.layout.qShape);
      const dk = backend.empty(attrs.layout.kShape);
      const dv = backend.empty(attrs.layout.kShape);
      const results = [dq, dk, dv];
      await disposeOnError(results, () => write(backend, inputs, attrs, { dq, dk, dv, results }));
      return results;
    },
  };
}

/** Large stand-in for an unbounded window side, in the kernels' integer arithmetic. */
export const UNBOUNDED = 1 << 30;

export function windowInt(w: number): number {
  return Number.isFinite(w) ? w : UNBOUNDED;
}
