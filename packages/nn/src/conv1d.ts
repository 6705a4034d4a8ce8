/**
 * Causal depthwise conv1d (Mamba's short convolution) and its one-token decode step. Each op
 * validates its inputs, parses attributes and runs the kernel registered for the tensor's
 * backend kind (./webgpu, ./gpujs); ./reference.ts holds the float64 semantics.
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
  CausalConv1d,
  type CausalConv1dAttrs,
  CausalConv1dStep,
  type CausalConv1dStepAttrs,
} from './contract';
import { causalConv1dGpuJsKernel, causalConv1dStepGpuJsKernel } from './gpujs/causal-conv1d';
import { causalConv1dStepWebGpuKernel, causalConv1dWebGpuKernel } from './webgpu/causal-conv1d';

let registered = false;
/** Registers the conv kernels for both backend kinds (done on first use). */
export function registerNnKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    causalConv1dWebGpuKernel,
    causalConv1dGpuJsKernel,
    causalConv1dStepWebGpuKernel,
    causalConv1dStepGpuJsKernel,
  ] as never[]);
  registered = true;
}

export interface CausalConv1dOptions {
  /** `[C]`, added to every output (PyTorch's conv bias). */
  readonly bias?: Tensor;
  /** `[B, C, K - 1]`: the inputs before x, oldest first (zeros when absent). */
  readonly initialState?: Tensor;
  /** Also return the last K - 1 inputs, the state `causalConv1dStep` continues from. */
  readonly returnFinalState?: boolean;
}

/** Accepts `[C, K]` or PyTorch's depthwise layout `[C, 1, K]`; returns `[C, K]` (a view when reshaped). */
function checkWeight(
  weight: Tensor,
  channels: number,
): { weight: Tensor; kernelSize: number; view: boolean } {
  checkTensor(weight, 'weight');
  checkDType(weight, 'weight', ['f32']);
  const ok =
    (weight.rank === 2 && weight.shape[0] === channels) ||
    (weight.rank === 3 && weight.shape[0] === channels && weight.shape[1] === 1);
  if (!ok || weight.shape[weight.rank - 1]! < 1) {
    throw new ShapeError('weight', `[${channels}, K] or [${channels}, 1, K] with K >= 1`, weight.shape);
  }
  const kernelSize = weight.shape[weight.rank - 1]!;
  if (weight.rank === 3) return { weight: weight.reshape([channels, kernelSize]), kernelSize, view: true };
  return { weight, kernelSize, view: false };
}

function checkBias(bias: Tensor | undefined, channels: number): void {
  if (bias === undefined) return;
  checkTensor(bias, 'options.bias');
  checkDType(bias, 'options.bias', ['f32']);
  if (bias.rank !== 1 || bias.shape[0] !== channels)
    throw new ShapeError('options.bias', `[${channels}]`, bias.shape);
}

/**
 * Causal depthwise conv1d: x `[B, C, L]`, weight `[C, K]` (or `[C, 1, K]`);
 * `out[b, c, t] = bias[c] + sum_j weight[c, j] * x[b, c, t - (K - 1) + j]`. Returns the output
 * `[B, C, L]`, and with `returnFinalState` the state `[B, C, K - 1]` to decode from.
 */
export async function causalConv1d(
  x: Tensor,
  weight: Tensor,
  options: CausalConv1dOptions = {},
): Promise<{ output: Tensor; finalState?: Tensor }> {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkRank(x, 'x', 3, 3, '[B, C, L]');
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const [batch, channels, length] = x.shape as [number, number, number];
  checkBias(options.bias, channels);
  const w = checkWeight(weight, channels);
  const past = w.kernelSize - 1;
  const state = options.initialState;
  if (state !== undefined) {
    checkTensor(state, 'options.initialState');
    checkDType(state, 'options.initialState', ['f32']);
    if (
      state.rank !== 3 ||
      state.shape[0] !== batch ||
      state.shape[1] !== channels ||
      state.shape[2] !== past
    ) {
      if (w.view) w.weight.dispose();
      throw new ShapeError(
        'options.initialState',
        `[${batch}, ${channels}, ${past}] ([B, C, K - 1])`,
        state.shape,
      );
    }
  }
  try {
    checkSameBackend(x.backend, {
      weight,
      ...(options.bias ? { 'options.bias': options.bias } : {}),
      ...(state ? { 'options.initialState': state } : {}),
    });
    checkBindingSize(x.backend, 'x', x.size, x.shape);
    registerNnKernels();
    const attrs: CausalConv1dAttrs = {
      batch,
      channels,
      length,
      kernelSize: w.kernelSize,
      hasBias: options.bias !== undefined,
      hasState: state !== undefined && state.size > 0,
      returnFinalState: options.returnFinalState === true,
    };
    // Absent inputs are stood in by x so every program keeps one signature.
    const inputs = [x, w.weight, options.bias ?? x, state && state.size > 0 ? state : x];
    const result = (await runKernel(CausalConv1d, x.backend, inputs, attrs)) as Tensor[];
    return attrs.returnFinalState ? { output: result[0]!, finalState: result[1]! } : { output: result[0]! };
  } finally {
    if (w.view) w.weight.dispose();
  }
}

/**
 * One decode step of the causal conv: x `[B, C]` is the new input, state `[B, C, K - 1]` the
 * K - 1 inputs before it. Returns the output `[B, C]` and the new state (the old one shifted
 * by one, x last); the old state is left as it was (dispose it when done). K >= 2.
 */
export async function causalConv1dStep(
  x: Tensor,
  state: Tensor,
  weight: Tensor,
  options: { readonly bias?: Tensor } = {},
): Promise<{ output: Tensor; state: Tensor }> {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkRank(x, 'x', 2, 2, '[B, C]');
  const [batch, channels] = x.shape as [number, number];
  checkTensor(state, 'state');
  checkDType(state, 'state', ['f32']);
  const w = checkWeight(weight, channels);
  const past = w.kernelSize - 1;
  try {
    if (past < 1)
      throw new ShapeError(
        'weight',
        `[${channels}, K] with K >= 2 (a K = 1 conv has no state)`,
        weight.shape,
      );
    if (
      state.rank !== 3 ||
      state.shape[0] !== batch ||
      state.shape[1] !== channels ||
      state.shape[2] !== past
    ) {
      throw new ShapeError('state', `[${batch}, ${channels}, ${past}] ([B, C, K - 1])`, state.shape);
    }
    checkBias(options.bias, channels);
    checkSameBackend(x.backend, { state, weight, ...(options.bias ? { 'options.bias': options.bias } : {}) });
    registerNnKernels();
    const attrs: CausalConv1dStepAttrs = {
      batch,
      channels,
      kernelSize: w.kernelSize,
      hasBias: options.bias !== undefined,
    };
    const result = (await runKernel(
      CausalConv1dStep,
      x.backend,
      [x, state, w.weight, options.bias ?? x],
      attrs,
    )) as Tensor[];
    return { output: result[0]!, state: result[1]! };
  } finally {
    if (w.view) w.weight.dispose();
  }
}
