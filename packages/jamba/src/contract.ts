/**
 * The kernel contracts of the mixture of experts (the combine, and the copy of one expert's
 * weights out of the stacked ones), shared by the ops and both backends' implementations.
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';

/**
 * Inputs `[acc, y, rowOf, weight]`, output `out`, all rows of width M:
 *   out[t, m] = acc[t, m] + (rowOf[t] >= 0 ? weight[t] * y[rowOf[t], m] : 0)
 * acc `[T, M]` (absent when `hasAcc` is false: then taken as 0), y `[n, M]` one expert's
 * outputs for the n tokens routed to it, rowOf `[T]` i32 (the row of y holding token t, or -1),
 * weight `[T]` f32 (token t's routing weight for this expert). The scatter-add of one expert's
 * rows back into the tokens' outputs, written as a gather so each thread owns one output
 * element (no atomics; gpu.js has none).
 */
export const JambaMoeAccumulate = 'JambaMoeAccumulate';

export interface JambaMoeAccumulateAttrs {
  /** Tokens, T. */
  readonly tokens: number;
  /** Row width, M. */
  readonly width: number;
  /** Rows of y (tokens routed to the expert), n >= 1. */
  readonly rows: number;
  readonly hasAcc: boolean;
}

export function moeAccumulateKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: JambaMoeAccumulateAttrs,
    output: Tensor,
  ) => Promise<void>,
): KernelConfig<JambaMoeAccumulateAttrs> {
  return {
    kernelName: JambaMoeAccumulate,
    backendKind,
    async run(backend, inputs, attrs) {
      const output = backend.empty([attrs.tokens, attrs.width]);
      await disposeOnError([output], () => write(backend, inputs, attrs, output));
      return [output];
    },
  };
}

/**
 * Inputs `[stacked, out]`: copies expert `expert`'s block of a stacked expert weight
 * `[E * R, C]` (its rows expert * R .. expert * R + R - 1, `size` = R * C elements) into `out`
 * `[R, C]`, written in place: out[i] = stacked[expert * size + i]. Returns nothing. Prefill runs
 * each expert's SwiGLU with the generic matmul on such a copy, reused expert after expert, so
 * a model holds its experts once (stacked, as the GPU-routed decode reads them).
 */
export const JambaExpertCopy = 'JambaExpertCopy';

export interface JambaExpertCopyAttrs {
  /** The expert, in [0, E). */
  readonly expert: number;
  /** Elements of one expert's block, R * C >= 1. */
  readonly size: number;
}

/** A backend kind's JambaExpertCopy: `copy` runs its program on the checked inputs. */
export function expertCopyKernel(
  backendKind: BackendKind,
  copy: (backend: Backend, stacked: Tensor, out: Tensor, attrs: JambaExpertCopyAttrs) => Promise<void>,
): KernelConfig<JambaExpertCopyAttrs> {
  return {
    kernelName: JambaExpertCopy,
    backendKind,
    async run(backend, inputs, attrs) {
      await copy(backend, inputs[0]!, inputs[1]!, attrs);
      return [];
    },
  };
}
