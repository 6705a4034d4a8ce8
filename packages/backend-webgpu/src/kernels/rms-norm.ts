import { type KernelConfig, RmsNorm, type RmsNormAttrs } from '@longseq/backend';
import { grid1d, LINEAR_WORKGROUP, MAIN_PARAMS, runInto } from './common';
import { normWorkgroupSize, workgroupSum } from './norm-common';

function source(wg: number): string {
  return `${workgroupSum(wg)}
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let row = group;
  // The whole workgroup leaves together, so the barriers below stay in uniform control flow.
  if (row >= u.rows) { return; }
  let base = row * u.cols;
  var sq = 0.0;
  for (var c = lid; c < u.cols; c += ${wg}u) {
    let v = x[base + c];
    sq += v * v;
  }
  let total = workgroup_sum(sq, lid);
  let inv = 1.0 / sqrt(total / f32(u.cols) + u.eps);
  for (var c = lid; c < u.cols; c += ${wg}u) {
    out[base + c] = x[base + c] * inv * weight[c];
  }
}`;
}

/** RMSNorm over the last axis: one workgroup per row. */
export const rmsNormConfig: KernelConfig<RmsNormAttrs> = {
  kernelName: RmsNorm,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [x, weight] = [inputs[0]!, inputs[1]!];
    const out = backend.empty(x.shape);
    const wg = normWorkgroupSize(backend, attrs.cols);
    return runInto(backend, out, {
      kind: 'webgpu',
      name: 'rms_norm',
      cacheKey: `wg${wg}`,
      inputs: [
        { name: 'x', tensor: x },
        { name: 'weight', tensor: weight },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: [
        { name: 'rows', type: 'u32', value: attrs.rows },
        { name: 'cols', type: 'u32', value: attrs.cols },
        { name: 'eps', type: 'f32', value: attrs.eps },
      ],
      source: source(wg),
      dispatch: grid1d(backend, attrs.cols === 0 ? 0 : attrs.rows),
    });
  },
};
