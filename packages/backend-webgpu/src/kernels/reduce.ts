import { type KernelConfig, Reduce, type ReduceAttrs, type ReduceOp } from '@longseq/backend';
import { grid1d, LINEAR_WORKGROUP, MAIN_PARAMS, runInto, WGSL_F32_SPECIALS, workgroupSize } from './common';

/** Identity and combine of each op; max/min propagate NaN like the reference. */
const OPS: Record<ReduceOp, { init: string; combine: string }> = {
  sum: { init: '0.0', combine: 'a + b' },
  mean: { init: '0.0', combine: 'a + b' },
  prod: { init: '1.0', combine: 'a * b' },
  max: { init: '-inf_f32()', combine: 'max_nan(a, b)' },
  min: { init: 'inf_f32()', combine: 'min_nan(a, b)' },
};

/**
 * How a workgroup of `wg` threads splits into TX outputs x TY threads per output. Long
 * reductions get the whole workgroup per output; short ones share a workgroup among
 * several outputs; with inner > 1, TX runs along the contiguous inner axis so reads coalesce.
 */
function layout(reduceSize: number, inner: number, wg: number): [tx: number, ty: number] {
  if (inner > 1) {
    const tx = Math.min(32, wg);
    return [tx, wg / tx];
  }
  if (reduceSize > 64) return [1, wg];
  const ty = reduceSize > 8 ? Math.min(16, wg) : Math.min(4, wg);
  return [wg / ty, ty];
}

function source(op: ReduceOp, tx: number, ty: number): string {
  const { init, combine } = OPS[op];
  const finish = op === 'mean' ? 'select(total / f32(u.reduceSize), nan_f32(), u.reduceSize == 0u)' : 'total';
  return `${WGSL_F32_SPECIALS}
fn combine(a: f32, b: f32) -> f32 { return ${combine}; }
var<workgroup> partial: array<f32, ${tx * ty}>;
@compute @workgroup_size(${tx * ty})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  let id = group * ${tx}u + tx;
  // Threads past the last output still join every barrier below; they just add nothing.
  let valid = id < u.count;
  let o = id / u.inner;
  let i = id - o * u.inner;
  var acc = ${init};
  if (valid) {
    for (var r = ty; r < u.reduceSize; r += ${ty}u) {
      acc = combine(acc, x[(o * u.reduceSize + r) * u.inner + i]);
    }
  }
  partial[ty * ${tx}u + tx] = acc;
  workgroupBarrier();
  for (var s = ${ty / 2}u; s > 0u; s = s >> 1u) {
    if (ty < s) {
      partial[ty * ${tx}u + tx] = combine(partial[ty * ${tx}u + tx], partial[(ty + s) * ${tx}u + tx]);
    }
    workgroupBarrier();
  }
  if (ty == 0u && valid) {
    let total = partial[tx];
    out[id] = ${finish};
  }
}`;
}

/** Reduces the middle axis of x viewed as [outer, reduceSize, inner], with a tree in workgroup memory. */
export const reduceConfig: KernelConfig<ReduceAttrs> = {
  kernelName: Reduce,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const x = inputs[0]!;
    const out = backend.empty(attrs.outShape);
    const count = attrs.outer * attrs.inner;
    const wg = workgroupSize(backend, 256);
    const [tx, ty] = layout(attrs.reduceSize, attrs.inner, wg);
    return runInto(backend, out, {
      kind: 'webgpu',
      name: `reduce_${attrs.op}`,
      cacheKey: `tx${tx};ty${ty}`,
      inputs: [{ name: 'x', tensor: x }],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: [
        { name: 'count', type: 'u32', value: count },
        { name: 'reduceSize', type: 'u32', value: attrs.reduceSize },
        { name: 'inner', type: 'u32', value: attrs.inner },
      ],
      source: source(attrs.op, tx, ty),
      dispatch: grid1d(backend, Math.ceil(count / tx)),
    });
  },
};
