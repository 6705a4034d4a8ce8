/**
 * The kernel contract of Mamba's one-token SSM update (decoding), shared by the op and both
 * backends' implementations.
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';

/**
 * Inputs `[u, dt, A, B, C, D, z, dtBias, state]`, outputs `[y, newState]`:
 *   dt' = softplus(dt + dtBias)                       (PyTorch's threshold: past 20, dt' = dt)
 *   newState[b, c, j] = exp(dt' A[c, j]) state[b, c, j] + dt' B[b, j] u[b, c]
 *   y[b, c] = (sum_j C[b, j] newState[b, c, j] + D[c] u[b, c]) * silu(z[b, c])
 */
export const MambaSsmStep = 'MambaSsmStep';

export interface MambaSsmStepAttrs {
  readonly batch: number;
  /** Channels (d_inner). */
  readonly channels: number;
  /** State size per channel. */
  readonly states: number;
}

export function mambaSsmStepKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: MambaSsmStepAttrs,
    outputs: Tensor[],
  ) => Promise<void>,
): KernelConfig<MambaSsmStepAttrs> {
  return {
    kernelName: MambaSsmStep,
    backendKind,
    async run(backend, inputs, attrs) {
      const outputs = [
        backend.empty([attrs.batch, attrs.channels]),
        backend.empty([attrs.batch, attrs.channels, attrs.states]),
      ];
      await disposeOnError(outputs, () => write(backend, inputs, attrs, outputs));
      return outputs;
    },
  };
}
