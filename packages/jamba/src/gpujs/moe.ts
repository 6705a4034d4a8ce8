/**
 * gpu.js programs of the mixture of experts: the combine and the copy of one expert's weights
 * out of the stacked ones, one thread per output element.
 */
import type { Backend, Tensor } from '@longseq/backend';
import { type JambaMoeAccumulateAttrs, expertCopyKernel, moeAccumulateKernel } from '../contract';

const kernel = /* js */ `function jambaMoeAccumulate(acc, y, rowOf, weight, width, hasAcc) {
  const i = this.thread.x;
  const t = Math.floor(i / width);
  const m = i - t * width;
  let v = 0;
  if (hasAcc > 0) {
    v = acc[i];
  }
  const r = rowOf[t];
  if (r >= 0) {
    v = v + weight[t] * y[r * width + m];
  }
  return v;
}`;

async function write(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: JambaMoeAccumulateAttrs,
  output: Tensor,
): Promise<void> {
  const [acc, y, rowOf, weight] = inputs as Tensor[];
  if (attrs.tokens * attrs.width === 0) return;
  await backend.run({
    kind: 'gpujs',
    name: 'jamba_moe_accumulate',
    cacheKey: '',
    kernel,
    // without an accumulator, y stands in for it (never read)
    inputs: [attrs.hasAcc ? acc! : y!, y!, rowOf!, weight!],
    scalars: [attrs.width, attrs.hasAcc ? 1 : 0],
    output,
  });
}

export const moeAccumulateGpuJsKernel = moeAccumulateKernel('gpujs', write);

const copyKernel = /* js */ `function jambaExpertCopy(stacked, offset) {
  return stacked[offset + this.thread.x];
}`;

/** Inputs [stacked [E * R, C], out [R, C]] (written in place); see JambaExpertCopy. */
export const expertCopyGpuJsKernel = expertCopyKernel('gpujs', (backend, stacked, out, attrs) =>
  backend.run({
    kind: 'gpujs',
    name: 'jamba_expert_copy',
    cacheKey: '',
    kernel: copyKernel,
    inputs: [stacked],
    scalars: [attrs.expert * attrs.size],
    output: out,
  }),
);
