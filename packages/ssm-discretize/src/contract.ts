/**
 * Kernel contracts of the GPU forms, shared by the ops (./ops.ts) and by both backends'
 * implementations (./webgpu, ./gpujs):
 *
 * - `SsmDiscretize`: per (channel, state), A-bar, B-bar, C and log A-bar from A, B, C and the
 *   channel's dt: params [H, N, 8] = (A-bar re, im, B-bar re, im, C re, im, log|A-bar|, arg A-bar).
 * - `SsmVandermonde`: K[h, l] = f Re(sum_n C_n B-bar_n exp(l log A-bar_n)) from params.
 * - `SsmScan`: the recurrence over u [H, L] from params: y [H, L].
 * - `CausalConv`: y = K * u per channel (FFT, or direct), y [H, L].
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';

export const SsmDiscretize = 'SsmDiscretize';
export const SsmVandermonde = 'SsmVandermonde';
export const SsmScan = 'SsmScan';
export const CausalConv = 'CausalConv';

/** Discretization on the GPU: 0 zoh, 1 mamba, 2 the gbt family with `alpha`. */
export type GpuMethodCode = 0 | 1 | 2;

export interface SsmDiscretizeAttrs {
  readonly H: number;
  readonly N: number;
  readonly complex: boolean;
  readonly methodCode: GpuMethodCode;
  readonly alpha: number;
}

export interface SsmVandermondeAttrs {
  readonly H: number;
  readonly N: number;
  readonly L: number;
  /** 2 for complex systems (conjugate pairs), 1 for real ones. */
  readonly factor: number;
}

export interface SsmScanAttrs {
  readonly H: number;
  readonly N: number;
  readonly L: number;
  readonly factor: number;
}

export type CausalConvAlgorithm = 'fft' | 'direct';

export interface CausalConvAttrs {
  readonly H: number;
  readonly L: number;
  /** FFT length: the power of two >= 2L (zero padding makes the circular convolution causal). */
  readonly M: number;
  readonly algorithm: CausalConvAlgorithm;
  /** WebGPU FFT passes: 'auto'/'workgroup' the fused four-step path in workgroup memory, 'global' one pass per stage. */
  readonly fft: FftVariant;
}

export type FftVariant = 'auto' | 'workgroup' | 'global';

/** A kernel with one output of `shape`, allocated alike on both kinds and disposed if writing fails. */
export function singleOutputKernel<Attrs>(
  kernelName: string,
  backendKind: BackendKind,
  shape: (attrs: Attrs) => number[],
  write: (backend: Backend, inputs: readonly Tensor[], attrs: Attrs, out: Tensor) => Promise<void>,
): KernelConfig<Attrs> {
  return {
    kernelName,
    backendKind,
    async run(backend, inputs, attrs) {
      const out = backend.empty(shape(attrs));
      await disposeOnError([out], () => write(backend, inputs, attrs, out));
      return [out];
    },
  };
}

export const discretizeShape = (a: SsmDiscretizeAttrs): number[] => [a.H, a.N, 8];
export const vandermondeShape = (a: SsmVandermondeAttrs): number[] => [a.H, a.L];
export const scanShape = (a: SsmScanAttrs): number[] => [a.H, a.L];
export const convShape = (a: CausalConvAttrs): number[] => [a.H, a.L];

/**
 * Twiddle factors e^{-2 pi i t / M} for t < M / 2, computed in float64 and rounded once to
 * float32 (interleaved re, im): more accurate than evaluating sin and cos of large angles in
 * float32 on the device.
 */
export function twiddles(M: number): Float32Array {
  const out = new Float32Array(Math.max(2, M));
  for (let t = 0; t < M / 2; t++) {
    const angle = (-2 * Math.PI * t) / M;
    out[2 * t] = Math.cos(angle);
    out[2 * t + 1] = Math.sin(angle);
  }
  return out;
}
