/** gpu.js program of the mixture-of-experts combine: one thread per output element. */
import type { Backend, Tensor } from '@longseq/backend';
import { type JambaMoeAccumulateAttrs, moeAccumulateKernel } from '../contract';

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
