import { type KernelConfig, LayerNorm, type LayerNormAttrs } from '@longseq/backend';
import { grid1d, LINEAR_WORKGROUP, MAIN_PARAMS, runInto } from './common';
import { normWorkgroupSize, workgroupSum } from './norm-common';

function source(wg: number): string {
  return `${workgroupSum(wg)}
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let row = group;
  if (row >= u.rows) { return; }
  let base = row * u.cols;
  let n = f32(u.cols);
  var s = 0.0;
  for (var c = lid; c < u.cols; c += ${wg}u) { s += x[base + c]; }
  let mean = workgroup_sum(s, lid) / n;
  // Two passes (mean, then squared deviations) as in the reference: E[x^2] - E[x]^2 cancels badly.
  var sq = 0.0;
  for (var c = lid; c < u.cols; c += ${wg}u) {
    let d = x[base + c] - mean;
    sq += d * d;
  }
  let inv = 1.0 / sqrt(workgroup_sum(sq, lid) / n + u.eps);
  for (var c = lid; c < u.cols; c += ${wg}u) {
    out[base + c] = (x[base + c] - mean) * inv * weight[c] + bias[c];
  }
}`;
}

/** LayerNorm over the last axis (biased variance): one workgroup per row. */
export const layerNormConfig: KernelConfig<LayerNormAttrs> = {
  kernelName: LayerNorm,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [x, weight, bias] = [inputs[0]!, inputs[1]!, inputs[2]!];
    const out = backend.empty(x.shape);
    const wg = normWorkgroupSize(backend, attrs.cols);
    return runInto(backend, out, {
      kind: 'webgpu',
      name: 'layer_norm',
      cacheKey: `wg${wg}`,
      inputs: [
        { name: 'x', tensor: x },
        { name: 'weight', tensor: weight },
        { name: 'bias', tensor: bias },
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
