/**
 * Kernel contracts of @longseq/vision-mamba: names, parsed attributes and output
 * allocation, shared by the ops (./ops.ts) and both backends' programs (./webgpu, ./gpujs).
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';

/**
 * inputs `[x, index]`: x viewed as `[batch, inner]`, index i32 `[count]`;
 * `out[b, j] = x[b, index[j]]`, 0 where index[j] < 0. Out `outShape` (batch x count elements).
 * Patchify (im2col) and the scan directions' reordering are this gather with host-made indices.
 */
export const VimGather = 'VimGather';
export interface VimGatherAttrs {
  readonly batch: number;
  /** Elements of x per batch entry. */
  readonly inner: number;
  /** Elements of the output per batch entry (= index.size). */
  readonly count: number;
  readonly outShape: readonly number[];
}

/**
 * inputs `[patches [B, P, M], bias [M], cls [M], pos [L, M]]`: the token sequence
 * `out[b, l] = (l == clsIndex ? cls : patches[b, l - (l > clsIndex)] + bias) + pos[l]`.
 * Out `[B, L, M]`. Absent cls or pos stand in as `patches` (never read).
 */
export const VimTokens = 'VimTokens';
export interface VimTokensAttrs {
  readonly batch: number;
  readonly patches: number;
  readonly embed: number;
  /** Index of the class token in the sequence, -1 without one. */
  readonly clsIndex: number;
  readonly hasPos: boolean;
  /** Tokens L = patches (+ 1 with a class token). */
  readonly length: number;
}

/**
 * inputs `[y [B, K, D, L], inverse i32 [K, L]]`:
 * `out[b, c, l] = scale * sum_k y[b, k, c, inverse[k, l]]`. Out `[B, D, L]`, or with
 * `tokenMajor` `[B, L, D]` (the same values transposed, ready for out_proj as one GEMM).
 * Merges the scans of K directions back into token order.
 */
export const VimScanMerge = 'VimScanMerge';
export interface VimScanMergeAttrs {
  readonly batch: number;
  readonly directions: number;
  readonly channels: number;
  readonly length: number;
  readonly scale: number;
  readonly tokenMajor: boolean;
}

/** A kernel with one output of a fixed shape, from the function that writes it. */
export function singleOutputKernel<A>(
  kernelName: string,
  backendKind: BackendKind,
  shapeOf: (attrs: A) => readonly number[],
  write: (backend: Backend, inputs: readonly Tensor[], attrs: A, out: Tensor) => Promise<void>,
): KernelConfig<A> {
  return {
    kernelName,
    backendKind,
    async run(backend, inputs, attrs) {
      const out = backend.empty(shapeOf(attrs));
      await disposeOnError([out], async () => {
        if (out.size > 0) await write(backend, inputs, attrs, out);
      });
      return [out];
    },
  };
}

export const gatherShape = (a: VimGatherAttrs) => a.outShape;
export const tokensShape = (a: VimTokensAttrs) => [a.batch, a.length, a.embed];
export const mergeShape = (a: VimScanMergeAttrs) =>
  a.tokenMajor ? [a.batch, a.length, a.channels] : [a.batch, a.channels, a.length];
