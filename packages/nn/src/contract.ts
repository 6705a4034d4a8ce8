/**
 * The causal conv1d kernel contracts: names, parsed attributes and output allocation, shared
 * by the ops and by both backends' implementations.
 */
import {
  type Backend,
  type BackendKind,
  type KernelConfig,
  type Tensor,
  disposeOnError,
} from '@longseq/backend';

/** Sequence form: inputs `[x, weight, bias, state]` (absent ones stand in as x); outputs `[output, finalState?]`. */
export const CausalConv1d = 'CausalConv1d';
/** Decode form: inputs `[x, state, weight, bias]` (bias stands in as x when absent); outputs `[output, newState]`. */
export const CausalConv1dStep = 'CausalConv1dStep';

export interface CausalConv1dAttrs {
  readonly batch: number;
  readonly channels: number;
  readonly length: number;
  readonly kernelSize: number;
  readonly hasBias: boolean;
  readonly hasState: boolean;
  readonly returnFinalState: boolean;
}

export interface CausalConv1dStepAttrs {
  readonly batch: number;
  readonly channels: number;
  readonly kernelSize: number;
  readonly hasBias: boolean;
}

/** A kernel for one backend kind from the function that writes its (already allocated) outputs. */
export function causalConv1dKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: CausalConv1dAttrs,
    outputs: Tensor[],
  ) => Promise<void>,
): KernelConfig<CausalConv1dAttrs> {
  return {
    kernelName: CausalConv1d,
    backendKind,
    async run(backend, inputs, attrs) {
      const { batch, channels, length, kernelSize } = attrs;
      const outputs = [backend.empty([batch, channels, length])];
      if (attrs.returnFinalState) outputs.push(backend.empty([batch, channels, kernelSize - 1]));
      await disposeOnError(outputs, () => write(backend, inputs, attrs, outputs));
      return outputs;
    },
  };
}

export function causalConv1dStepKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: readonly Tensor[],
    attrs: CausalConv1dStepAttrs,
    outputs: Tensor[],
  ) => Promise<void>,
): KernelConfig<CausalConv1dStepAttrs> {
  return {
    kernelName: CausalConv1dStep,
    backendKind,
    async run(backend, inputs, attrs) {
      const { batch, channels, kernelSize } = attrs;
      const outputs = [backend.empty([batch, channels]), backend.empty([batch, channels, kernelSize - 1])];
      await disposeOnError(outputs, () => write(backend, inputs, attrs, outputs));
      return outputs;
    },
  };
}
