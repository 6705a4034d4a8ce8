import { Gather, type GatherAttrs, type GpuJsProgram, type KernelConfig } from '@longseq/backend';
import { runToNew } from './common';

/** out[j, c] = table[ids[j], c], or 0 when ids[j] is outside [0, rows). Ids are stored as f32 (exact to 2^24). */
export const gatherKernel = /* js */ `function gatherKernel(table, ids, rows, rowSize) {
  const j = Math.floor(this.thread.x / rowSize);
  const c = this.thread.x - j * rowSize;
  const id = ids[j];
  if (id < 0 || id >= rows) return 0;
  return table[id * rowSize + c];
}`;

export const gatherConfig: KernelConfig<GatherAttrs> = {
  kernelName: Gather,
  backendKind: 'gpujs',
  run: (backend, inputs, attrs) => {
    const [table, ids] = inputs;
    return runToNew(
      backend,
      attrs.outShape,
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: Gather,
        cacheKey: '',
        kernel: gatherKernel,
        inputs: [table!, ids!],
        scalars: [attrs.rows, attrs.rowSize],
        output,
      }),
    );
  },
};
