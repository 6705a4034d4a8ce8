/**
 * gpu.js programs of the one-token SSM update. One output value per thread, so two
 * kernels: the new state (one thread per (batch, channel, state)), then y (one thread per
 * (batch, channel), reading the new state).
 */
import { type Backend, GPUJS_LOG1P_ACC, type GpuJsProgram, type Tensor } from '@longseq/backend';
import { type MambaSsmStepAttrs, mambaSsmStepKernel } from '../contract';

/**
 * e^x to about an ulp: gpu.js' WebGPU mode compiles Math.exp to WGSL's exp, which Dawn on
 * SwiftShader computes ~3 ulp off. Cody-Waite reduction and a degree-7 polynomial; 2^k
 * applied in two halves so it never overflows on its own.
 */
const expAccurate = /* js */ `function expAccurate(x) {
  if (x > 88.72284) return Math.exp(x);
  if (x < -103.97208) return 0;
  const k = Math.round(x * 1.4426950408889634);
  const r = (x - k * 0.693145751953125) - k * 1.428606765330187e-6;
  let q = 1 / 5040;
  q = q * r + 1 / 720;
  q = q * r + 1 / 120;
  q = q * r + 1 / 24;
  q = q * r + 1 / 6;
  q = q * r + 0.5;
  q = q * r + 1;
  const p = q * r + 1;
  const k1 = Math.floor(k / 2);
  return p * Math.pow(2, k1) * Math.pow(2, k - k1);
}`;

/**
 * softplus with PyTorch's threshold (x itself above 20), in the overflow-free form
 * max(x, 0) + log1p(e^-|x|); log1p by the backend's atanh series (`GPUJS_LOG1P_ACC`), since
 * the shader `log` near 1 is only absolutely accurate: the small dt of a very negative x
 * came out up to 0.33 off relatively with Goldberg's form on gpu.js' WebGPU mode.
 */
const softplusTorch = /* js */ `function softplusTorch(x) {
  if (x > 20) return x;
  return Math.max(x, 0) + log1pAcc(expAccurate(-Math.abs(x)));
}`;

const newState = /* js */ `function mambaSsmNewState(u, dt, a, b, c, state, dtBias, chans, states) {
  const i = this.thread.x;
  const bc = Math.floor(i / states);
  const j = i - bc * states;
  const batchIndex = Math.floor(bc / chans);
  const ch = bc - batchIndex * chans;
  const delta = softplusTorch(dt[bc] + dtBias[ch]);
  return expAccurate(delta * a[ch * states + j]) * state[i] + delta * u[bc] * b[batchIndex * states + j];
}`;

const output = /* js */ `function mambaSsmOutput(u, c, d, z, h, chans, states) {
  const bc = this.thread.x;
  const batchIndex = Math.floor(bc / chans);
  const ch = bc - batchIndex * chans;
  let acc = 0;
  for (let j = 0; j < states; j++) {
    acc = acc + c[batchIndex * states + j] * h[bc * states + j];
  }
  const gate = z[bc] / (1 + expAccurate(-z[bc]));
  return (acc + d[ch] * u[bc]) * gate;
}`;

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  scalars: number[],
  out: Tensor,
): GpuJsProgram {
  return {
    kind: 'gpujs',
    name,
    cacheKey: '',
    kernel,
    inputs,
    scalars,
    output: out,
    loopMaxIterations: 1024,
    functions: [expAccurate, GPUJS_LOG1P_ACC, softplusTorch],
  };
}

async function writeStep(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: MambaSsmStepAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [u, dt, A, B, C, D, z, dtBias, state] = inputs as Tensor[];
  const [y, h] = outputs as [Tensor, Tensor];
  if (y.size === 0) return;
  await backend.run(
    program(
      'mamba_ssm_new_state',
      newState,
      [u!, dt!, A!, B!, C!, state!, dtBias!],
      [attrs.channels, attrs.states],
      h,
    ),
  );
  await backend.run(
    program('mamba_ssm_output', output, [u!, C!, D!, z!, h], [attrs.channels, attrs.states], y),
  );
}

export const mambaSsmStepGpuJsKernel = mambaSsmStepKernel('gpujs', writeStep);
