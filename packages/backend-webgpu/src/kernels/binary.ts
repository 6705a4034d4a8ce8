import {
  Binary,
  type BinaryAttrs,
  type BinaryOp,
  type KernelConfig,
  MAX_BROADCAST_RANK,
  sizeOf,
  stridesOf,
  type WgslUniform,
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

/** Each op, following `binaryScalar` in the reference. */
const OPS: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  max: 'max_nan(a, b)',
  min: 'min_nan(a, b)',
  pow: 'pow_js(a, b)',
};

/**
 * a ** b as JavaScript defines it: WGSL's pow is undefined for a < 0, but the reference
 * (and PyTorch) give real answers for integer exponents of negative bases.
 */
const POW = `
fn pow_js(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (is_nan(a) || is_nan(b)) { return nan_f32(); }
  if (a == 0.0) { return select(0.0, inf_f32(), b < 0.0); }
  if (a < 0.0) {
    if (b != floor(b)) { return nan_f32(); }
    let m = pow_pos(-a, b);
    // Integers past 2^24 are all even in f32.
    let odd = abs(b) < 16777216.0 && fract(b * 0.5) != 0.0;
    return select(m, -m, odd);
  }
  return pow_pos(a, b);
}
// a > 0: exp(b log a) through the accurate exp; the builtin pow (exp2(b log2 a) in most
// drivers) was several times less accurate than float32 arithmetic allows on SwiftShader.
fn pow_pos(a: f32, b: f32) -> f32 {
  return exp_acc(b * log(a));
}
`;

const R = MAX_BROADCAST_RANK;
const dims = Array.from({ length: R }, (_, d) => d);

function generalSource(op: BinaryOp, wg: number): string {
  // Peel coordinates from the innermost dim out; broadcast dims carry stride 0.
  const peel = dims
    .slice()
    .reverse()
    .map(
      (d) => `  { let c = rest % u.d${d}; rest = rest / u.d${d}; ia += c * u.as${d}; ib += c * u.bs${d}; }`,
    )
    .join('\n');
  return `${WGSL_F32_SPECIALS}${WGSL_EXP}${POW}
fn op(a: f32, b: f32) -> f32 { return ${OPS[op]}; }
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let i = group * ${wg}u + lid;
  if (i >= u.size) { return; }
  var rest = i;
  var ia = 0u;
  var ib = 0u;
${peel}
  out[i] = op(a[ia], b[ib]);
}`;
}

function sameShapeSource(op: BinaryOp, wg: number): string {
  return `${WGSL_F32_SPECIALS}${WGSL_EXP}${POW}
fn op(a: f32, b: f32) -> f32 { return ${OPS[op]}; }
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let i = group * ${wg}u + lid;
  if (i >= u.size) { return; }
  out[i] = op(a[i], b[i]);
}`;
}

/** Elementwise binary op with broadcasting: one thread per output element. */
export const binaryConfig: KernelConfig<BinaryAttrs> = {
  kernelName: Binary,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [a, b] = [inputs[0]!, inputs[1]!];
    const out = backend.empty(attrs.outShape);
    const size = sizeOf(attrs.outShape);
    const wg = workgroupSize(backend, 256);
    const contiguous = stridesOf(attrs.outShape);
    // Same shapes (no broadcasting) skip the index arithmetic entirely.
    const same =
      attrs.aStrides.every((s, i) => s === contiguous[i]) &&
      attrs.bStrides.every((s, i) => s === contiguous[i]);
    const uniforms: WgslUniform[] = [{ name: 'size', type: 'u32', value: size }];
    if (!same) {
      // Pad to rank R at the front with dims of 1, so one shader serves every rank.
      const pad = R - attrs.outShape.length;
      const at = (arr: readonly number[], d: number, fill: number) => (d < pad ? fill : arr[d - pad]!);
      for (const d of dims) uniforms.push({ name: `d${d}`, type: 'u32', value: at(attrs.outShape, d, 1) });
      for (const d of dims) uniforms.push({ name: `as${d}`, type: 'u32', value: at(attrs.aStrides, d, 0) });
      for (const d of dims) uniforms.push({ name: `bs${d}`, type: 'u32', value: at(attrs.bStrides, d, 0) });
    }
    return runInto(backend, out, {
      kind: 'webgpu',
      name: `binary_${attrs.op}`,
      cacheKey: `${same ? 'same' : 'broadcast'};wg${wg}`,
      inputs: [
        { name: 'a', tensor: a },
        { name: 'b', tensor: b },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms,
      source: same ? sameShapeSource(attrs.op, wg) : generalSource(attrs.op, wg),
      dispatch: grid1d(backend, Math.ceil(size / wg)),
    });
  },
};
