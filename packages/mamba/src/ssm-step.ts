/**
 * mambaSsmStep: the selective SSM advanced by one token, O(N) per channel, for decoding.
 * Validates, parses attributes, runs the `MambaSsmStep` kernel of the tensors' backend kind.
 */
import {
  ShapeError,
  type Tensor,
  checkDType,
  checkSameBackend,
  checkTensor,
  formatShape,
  registerKernelsOnce,
  runKernel,
} from '@longseq/backend';
import { MambaSsmStep, type MambaSsmStepAttrs } from './contract';
import { mambaSsmStepGpuJsKernel } from './gpujs/ssm-step';
import {
  mambaArgmaxWebGpuKernel,
  mambaFusedDecodeWebGpuKernel,
  mambaNormMatvecWebGpuKernel,
} from './webgpu/fused-decode';
import { mambaSsmStepWebGpuKernel } from './webgpu/ssm-step';

let registered = false;
/**
 * Registers the Mamba kernels (done on first use): the SSM step for both backend kinds, and
 * WebGPU's fused decode layer and LM head (gpu.js decodes through the composed ops).
 */
export function registerMambaKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    mambaSsmStepWebGpuKernel,
    mambaSsmStepGpuJsKernel,
    mambaFusedDecodeWebGpuKernel,
    mambaNormMatvecWebGpuKernel,
    mambaArgmaxWebGpuKernel,
  ] as never[]);
  registered = true;
}

export interface SsmStepInputs {
  /** [B, D]: the conv output after SiLU. */
  readonly u: Tensor;
  /** [B, D]: dt_proj's output, before its bias and the softplus. */
  readonly dt: Tensor;
  /** [D, N]: -exp(A_log). */
  readonly A: Tensor;
  /** [B, N]. */
  readonly B: Tensor;
  /** [B, N]. */
  readonly C: Tensor;
  /** [D]. */
  readonly D: Tensor;
  /** [B, D]: the gate. */
  readonly z: Tensor;
  /** [D]. */
  readonly dtBias: Tensor;
  /** [B, D, N]: the state before this token (left unchanged). */
  readonly state: Tensor;
}

/** One token of the SSM (see `ssmStepRef`): returns y `[B, D]` and the new state `[B, D, N]`. */
export async function mambaSsmStep(inputs: SsmStepInputs): Promise<{ y: Tensor; state: Tensor }> {
  const names = ['u', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'state'] as const;
  for (const name of names) {
    checkTensor(inputs[name], name);
    checkDType(inputs[name], name, ['f32']);
  }
  const { u } = inputs;
  if (u.rank !== 2) throw new ShapeError('u', '[B, D]', u.shape);
  const [batch, channels] = u.shape as [number, number];
  if (inputs.A.rank !== 2 || inputs.A.shape[0] !== channels)
    throw new ShapeError('A', `[${channels}, N]`, inputs.A.shape);
  const states = inputs.A.shape[1]!;
  const expected: Record<(typeof names)[number], number[]> = {
    u: [batch, channels],
    dt: [batch, channels],
    A: [channels, states],
    B: [batch, states],
    C: [batch, states],
    D: [channels],
    z: [batch, channels],
    dtBias: [channels],
    state: [batch, channels, states],
  };
  for (const name of names) {
    if (formatShape(inputs[name].shape) !== formatShape(expected[name])) {
      throw new ShapeError(name, formatShape(expected[name]), inputs[name].shape);
    }
  }
  checkSameBackend(u.backend, Object.fromEntries(names.map((n) => [n, inputs[n]])));
  registerMambaKernels();
  const attrs: MambaSsmStepAttrs = { batch, channels, states };
  const result = (await runKernel(
    MambaSsmStep,
    u.backend,
    names.map((n) => inputs[n]),
    attrs,
  )) as Tensor[];
  return { y: result[0]!, state: result[1]! };
}
