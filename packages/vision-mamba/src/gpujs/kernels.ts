/**
 * gpu.js programs of the Vim kernels: one output element per thread (sources as strings, see
 * ARCHITECTURE.md). Index math is float32 in gpu.js' GL modes: exact below 2^24 elements;
 * i32 indices arrive as floats.
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import {
  VimGather,
  type VimGatherAttrs,
  VimScanMerge,
  type VimScanMergeAttrs,
  VimTokens,
  type VimTokensAttrs,
  gatherShape,
  mergeShape,
  singleOutputKernel,
  tokensShape,
} from '../contract';

const gather = /* js */ `function vimGather(x, index, count, inner) {
  const i = this.thread.x;
  const b = Math.floor(i / count);
  const src = index[i - b * count];
  if (src < 0) {
    return 0;
  }
  return x[b * inner + src];
}`;

const tokens = /* js */ `function vimTokens(patches, bias, cls, pos, embed, seqLen, numPatches, clsIndex) {
  const i = this.thread.x;
  const bl = Math.floor(i / embed);
  const m = i - bl * embed;
  const b = Math.floor(bl / seqLen);
  const l = bl - b * seqLen;
  let v = 0;
  if (l === clsIndex) {
    v = cls[m];
  } else {
    let p = l;
    if (clsIndex >= 0 && l > clsIndex) {
      p = l - 1;
    }
    v = patches[(b * numPatches + p) * embed + m] + bias[m];
  }
  if (this.constants.hasPos > 0) {
    v = v + pos[l * embed + m];
  }
  return v;
}`;

const merge = /* js */ `function vimScanMerge(y, inverse, seqLen, chans, dirs, scale) {
  const i = this.thread.x;
  let l = 0;
  let c = 0;
  let b = 0;
  if (this.constants.tokenMajor > 0) {
    const bl = Math.floor(i / chans);
    c = i - bl * chans;
    b = Math.floor(bl / seqLen);
    l = bl - b * seqLen;
  } else {
    const bc = Math.floor(i / seqLen);
    l = i - bc * seqLen;
    b = Math.floor(bc / chans);
    c = bc - b * chans;
  }
  let acc = 0;
  for (let k = 0; k < dirs; k++) {
    const t = inverse[k * seqLen + l];
    acc = acc + y[((b * dirs + k) * chans + c) * seqLen + t];
  }
  return acc * scale;
}`;

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  scalars: number[],
  output: Tensor,
  constants: Record<string, number> = {},
): GpuJsProgram {
  const cacheKey = Object.entries(constants)
    .map(([k, v]) => `${k}${v}`)
    .join(',');
  return { kind: 'gpujs', name, cacheKey, kernel, inputs, scalars, output, constants, loopMaxIterations: 16 };
}

async function writeGather(backend: Backend, inputs: readonly Tensor[], a: VimGatherAttrs, out: Tensor) {
  const [x, index] = inputs as [Tensor, Tensor];
  await backend.run(program('vim_gather', gather, [x, index], [a.count, a.inner], out));
}

async function writeTokens(backend: Backend, inputs: readonly Tensor[], a: VimTokensAttrs, out: Tensor) {
  const [patches, bias, cls, pos] = inputs as [Tensor, Tensor, Tensor, Tensor];
  await backend.run(
    program(
      'vim_tokens',
      tokens,
      [patches, bias, cls, pos],
      [a.embed, a.length, a.patches, a.clsIndex],
      out,
      { hasPos: a.hasPos ? 1 : 0 },
    ),
  );
}

async function writeMerge(backend: Backend, inputs: readonly Tensor[], a: VimScanMergeAttrs, out: Tensor) {
  const [y, inverse] = inputs as [Tensor, Tensor];
  await backend.run(
    program('vim_scan_merge', merge, [y, inverse], [a.length, a.channels, a.directions, a.scale], out, {
      tokenMajor: a.tokenMajor ? 1 : 0,
    }),
  );
}

export const vimGatherGpuJsKernel = singleOutputKernel(VimGather, 'gpujs', gatherShape, writeGather);
export const vimTokensGpuJsKernel = singleOutputKernel(VimTokens, 'gpujs', tokensShape, writeTokens);
export const vimScanMergeGpuJsKernel = singleOutputKernel(VimScanMerge, 'gpujs', mergeShape, writeMerge);
