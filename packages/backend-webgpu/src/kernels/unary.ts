import {
  type KernelConfig,
  Unary,
  type UnaryAttrs,
  type UnaryOp,
  WGSL_EXPM1_SMALL,
  WGSL_SOFTPLUS_ACC,
} from '@longseq/backend';
import {
  grid1d,
  LINEAR_WORKGROUP,
  MAIN_PARAMS,
  runInto,
  WGSL_EXP,
  WGSL_F32_SPECIALS,
  workgroupSize,
} from './common';

/**
 * Each op's body, following `unaryScalar` in the reference. Domain errors are spelled out
 * (log of a negative is NaN, of zero -inf) because WGSL leaves them unspecified.
 */
const OPS: Record<UnaryOp, string> = {
  neg: 'return -x;',
  abs: 'return abs(x);',
  exp: 'return exp_acc(x);',
  log: 'if (x < 0.0) { return nan_f32(); } if (x == 0.0) { return -inf_f32(); } return log(x);',
  sqrt: 'if (x < 0.0) { return nan_f32(); } return sqrt(x);',
  rsqrt: 'if (x < 0.0) { return nan_f32(); } if (x == 0.0) { return inf_f32(); } return 1.0 / sqrt(x);',
  square: 'return x * x;',
  reciprocal: 'return 1.0 / x;',
  relu: 'return select(0.0, x, x > 0.0);',
  sigmoid: 'return 1.0 / (1.0 + exp_acc(-x));',
  silu: 'return x * (1.0 / (1.0 + exp_acc(-x)));',
  softplus: 'return softplus_acc(x);',
  tanh: 'return tanh_(x);',
  gelu: 'return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x)));',
};

const HELPERS = `${WGSL_SOFTPLUS_ACC}${WGSL_EXPM1_SMALL}
// tanh that cannot overflow to inf/inf: past |x| = 10, tanh rounds to +-1 in f32 anyway.
fn tanh_(x: f32) -> f32 {
  let c = clamp(x, -10.0, 10.0);
  if (abs(c) < 0.5) {
    // Near zero, e^2x - 1 cancels; tanh(c) = e2m1 / (e2m1 + 2) keeps the relative precision.
    let e2m1 = expm1_small(2.0 * c);
    return e2m1 / (e2m1 + 2.0);
  }
  let e = exp_acc(2.0 * c);
  return (e - 1.0) / (e + 1.0);
}
`;

function source(op: UnaryOp, wg: number): string {
  // NaN in gives NaN out for every op but relu, whose reference (x > 0 ? x : 0) gives 0.
  const nanOut = op === 'relu' ? '0.0' : 'x';
  return `${WGSL_F32_SPECIALS}${WGSL_EXP}${HELPERS}
fn op(x: f32) -> f32 {
  if (is_nan(x)) { return ${nanOut}; }
  ${OPS[op]}
}
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let i = group * ${wg}u + lid;
  if (i >= u.size) { return; }
  y[i] = op(x[i]);
}`;
}

/** Elementwise unary op: one thread per element. */
export const unaryConfig: KernelConfig<UnaryAttrs> = {
  kernelName: Unary,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const x = inputs[0]!;
    const y = backend.empty(x.shape);
    const wg = workgroupSize(backend, 256);
    return runInto(backend, y, {
      kind: 'webgpu',
      name: `unary_${attrs.op}`,
      cacheKey: `wg${wg}`,
      inputs: [{ name: 'x', tensor: x }],
      outputs: [{ name: 'y', tensor: y }],
      uniforms: [{ name: 'size', type: 'u32', value: x.size }],
      source: source(attrs.op, wg),
      dispatch: grid1d(backend, Math.ceil(x.size / wg)),
    });
  },
};
