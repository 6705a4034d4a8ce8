import { Gather, type GatherAttrs, type KernelConfig } from '@longseq/backend';
import { grid1d, LINEAR_WORKGROUP, MAIN_PARAMS, runInto, workgroupSize } from './common';

function source(wg: number): string {
  return `
@compute @workgroup_size(${wg})
fn main(${MAIN_PARAMS}) {
  ${LINEAR_WORKGROUP}
  let i = group * ${wg}u + lid;
  if (i >= u.total) { return; }
  let j = i / u.rowSize;
  let c = i - j * u.rowSize;
  // Read ids as i32 whatever their dtype: a u32 id past 2^31 turns negative and is out of range either way.
  let id = i32(ids[j]);
  if (id < 0 || u32(id) >= u.rows) {
    out[i] = 0.0;
  } else {
    out[i] = table[u32(id) * u.rowSize + c];
  }
}`;
}

/** Embedding lookup: one thread per output element; ids outside [0, rows) give zeros. */
export const gatherConfig: KernelConfig<GatherAttrs> = {
  kernelName: Gather,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [table, indices] = [inputs[0]!, inputs[1]!];
    const out = backend.empty(attrs.outShape);
    const total = attrs.count * attrs.rowSize;
    const wg = workgroupSize(backend, 256);
    return runInto(backend, out, {
      kind: 'webgpu',
      name: 'gather',
      cacheKey: `wg${wg}`,
      inputs: [
        { name: 'table', tensor: table },
        { name: 'ids', tensor: indices },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: [
        { name: 'total', type: 'u32', value: total },
        { name: 'rows', type: 'u32', value: attrs.rows },
        { name: 'rowSize', type: 'u32', value: attrs.rowSize },
      ],
      source: source(wg),
      dispatch: grid1d(backend, Math.ceil(total / wg)),
    });
  },
};
