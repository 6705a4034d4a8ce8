/**
 * gpu.js programs for the causal depthwise conv1d: one thread per output element (gpu.js
 * kernels have one output value per thread), so the decode step is two kernels, the output
 * and the shifted state. Index math is float32 in gpu.js' GL modes: exact below 2^24 elements.
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import {
  type CausalConv1dAttrs,
  type CausalConv1dStepAttrs,
  causalConv1dKernel,
  causalConv1dStepKernel,
} from '../contract';

/** Kernel widths are small; GL needs a static loop bound. */
const LOOP_MAX = 1024;

// Scalars: seqLen (L), chans (C), past (K - 1). Not `xSize`-style names: gpu.js' GL
// backends declare <array>Size uniforms of their own.
const conv = /* js */ `function causalConv1d(x, weight, bias, state, seqLen, chans, past) {
  const i = this.thread.x;
  const bc = Math.floor(i / seqLen);
  const t = i - bc * seqLen;
  const c = bc - Math.floor(bc / chans) * chans;
  let acc = 0;
  if (this.constants.hasBias > 0) {
    acc = bias[c];
  }
  for (let j = 0; j <= past; j++) {
    const p = t + j;
    let v = 0;
    if (p >= past) {
      v = x[bc * seqLen + p - past];
    } else {
      if (this.constants.hasState > 0) {
        v = state[bc * past + p];
      }
    }
    acc = acc + weight[c * (past + 1) + j] * v;
  }
  return acc;
}`;

const finalState = /* js */ `function causalConv1dFinalState(x, state, seqLen, past) {
  const i = this.thread.x;
  const bc = Math.floor(i / past);
  const p = seqLen + i - bc * past;
  if (p >= past) {
    return x[bc * seqLen + p - past];
  }
  if (this.constants.hasState > 0) {
    return state[bc * past + p];
  }
  return 0;
}`;

const stepOutput = /* js */ `function causalConv1dStep(x, state, weight, bias, chans, past) {
  const bc = this.thread.x;
  const c = bc - Math.floor(bc / chans) * chans;
  let acc = 0;
  if (this.constants.hasBias > 0) {
    acc = bias[c];
  }
  for (let j = 0; j < past; j++) {
    acc = acc + weight[c * (past + 1) + j] * state[bc * past + j];
  }
  return acc + weight[c * (past + 1) + past] * x[bc];
}`;

const stepState = /* js */ `function causalConv1dShiftState(x, state, past) {
  const i = this.thread.x;
  const bc = Math.floor(i / past);
  const j = i - bc * past;
  if (j + 1 < past) {
    return state[i + 1];
  }
  return x[bc];
}`;

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  scalars: number[],
  output: Tensor,
  constants: Record<string, number>,
): GpuJsProgram {
  const cacheKey = Object.entries(constants)
    .map(([k, v]) => `${k}${v}`)
    .join(',');
  return {
    kind: 'gpujs',
    name,
    cacheKey,
    kernel,
    inputs,
    scalars,
    output,
    constants,
    loopMaxIterations: LOOP_MAX,
  };
}

async function writeConv(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConv1dAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [x, weight, bias, state] = inputs as [Tensor, Tensor, Tensor, Tensor];
  const past = attrs.kernelSize - 1;
  const hasState = attrs.hasState ? 1 : 0;
  const out = outputs[0]!;
  if (out.size > 0) {
    await backend.run(
      program('causal_conv1d', conv, [x, weight, bias, state], [attrs.length, attrs.channels, past], out, {
        hasBias: attrs.hasBias ? 1 : 0,
        hasState,
      }),
    );
  }
  const final = outputs[1];
  if (final && final.size > 0) {
    await backend.run(
      program('causal_conv1d_final_state', finalState, [x, state], [attrs.length, past], final, { hasState }),
    );
  }
}

async function writeStep(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConv1dStepAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [x, state, weight, bias] = inputs as [Tensor, Tensor, Tensor, Tensor];
  const [out, newState] = outputs as [Tensor, Tensor];
  if (out.size === 0) return;
  const past = attrs.kernelSize - 1;
  await backend.run(
    program('causal_conv1d_step', stepOutput, [x, state, weight, bias], [attrs.channels, past], out, {
      hasBias: attrs.hasBias ? 1 : 0,
    }),
  );
  await backend.run(program('causal_conv1d_shift_state', stepState, [x, state], [past], newState, {}));
}

export const causalConv1dGpuJsKernel = causalConv1dKernel('gpujs', writeConv);
export const causalConv1dStepGpuJsKernel = causalConv1dStepKernel('gpujs', writeStep);
