/**
 * gpu.js programs of the causal convolution (the twins of ../webgpu/conv.ts): the same FFT
 * pipeline (pack u + iK, radix-2 Stockham stages, split-and-multiply, the same FFT again,
 * unpack), with one thread per output value per stage, since gpu.js has no workgroup memory
 * or barriers: each stage is one kernel over the [H, M, 2] buffer, every thread computing
 * its butterfly and returning its own real or imaginary part. 'direct' is one thread per
 * output summing its terms. Indices are float32 in gpu.js' GL modes, so H * M * 2 must stay
 * under 2^24 (the op checks it).
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import { CausalConv, type CausalConvAttrs, convShape, singleOutputKernel, twiddles } from '../contract';

const LOOP_MAX = 1 << 24;

const PACK = `function fftPack(uIn, K, m, len) {
  const x = this.thread.x;
  const i = Math.floor(x / 2);
  const comp = x - i * 2;
  const h = Math.floor(i / m);
  const t = i - h * m;
  if (t < len) {
    if (comp < 0.5) {
      return uIn[h * len + t];
    }
    return K[h * len + t];
  }
  return 0.0;
}`;

const STAGE = `function fftStage(src, tw, m, ns) {
  const x = this.thread.x;
  const e = Math.floor(x / 2);
  const comp = x - e * 2;
  const base = Math.floor(e / m) * m;
  const o = e - base;
  const group = Math.floor(o / (2 * ns));
  const within = o - group * 2 * ns;
  let k = within;
  let sign = 1.0;
  if (within >= ns) {
    k = within - ns;
    sign = -1.0;
  }
  const j = base + group * ns + k;
  const halfM = m / 2;
  const t = k * (halfM / ns);
  const wr = tw[2 * t];
  const wi = tw[2 * t + 1];
  const br = src[2 * (j + halfM)];
  const bi = src[2 * (j + halfM) + 1];
  if (comp < 0.5) {
    return src[2 * j] + sign * (br * wr - bi * wi);
  }
  return src[2 * j + 1] + sign * (br * wi + bi * wr);
}`;

const MULTIPLY = `function fftMultiply(src, m) {
  const x = this.thread.x;
  const e = Math.floor(x / 2);
  const comp = x - e * 2;
  const base = Math.floor(e / m) * m;
  const k = e - base;
  let r = m - k;
  if (k === 0) {
    r = 0;
  }
  const zr = src[2 * e];
  const zi = src[2 * e + 1];
  const yr = src[2 * (base + r)];
  const yi = 0.0 - src[2 * (base + r) + 1];
  const ur = 0.5 * (zr + yr);
  const ui = 0.5 * (zi + yi);
  const kr = 0.5 * (zi - yi);
  const ki = -0.5 * (zr - yr);
  if (comp < 0.5) {
    return ur * kr - ui * ki;
  }
  return 0.0 - (ur * ki + ui * kr);
}`;

const UNPACK = `function fftUnpack(src, m, len, invM) {
  const x = this.thread.x;
  const h = Math.floor(x / len);
  const t = x - h * len;
  return src[2 * (h * m + t)] * invM;
}`;

const DIRECT = `function convDirect(uIn, K, len) {
  const x = this.thread.x;
  const h = Math.floor(x / len);
  const k = x - h * len;
  let acc = 0.0;
  for (let j = 0; j <= k; j++) {
    acc = acc + K[h * len + j] * uIn[h * len + k - j];
  }
  return acc;
}`;

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  scalars: number[],
  output: Tensor,
): GpuJsProgram {
  return { kind: 'gpujs', name, cacheKey: '', kernel, inputs, scalars, output, loopMaxIterations: LOOP_MAX };
}

async function fft(
  backend: Backend,
  M: number,
  tw: Tensor,
  src: Tensor,
  dst: Tensor,
  scratch: Tensor,
): Promise<void> {
  const stages = Math.log2(M);
  let from = src;
  for (let s = 0; s < stages; s++) {
    const to = (stages - 1 - s) % 2 === 0 ? dst : scratch;
    await backend.run(program('ssm_fft_stage', STAGE, [from, tw], [M, 2 ** s], to));
    from = to;
  }
}

async function writeConv(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConvAttrs,
  y: Tensor,
): Promise<void> {
  const [u, K] = inputs as [Tensor, Tensor];
  const { H, L, M } = attrs;
  if (H * L === 0) return;
  if (attrs.algorithm === 'direct') {
    await backend.run(program('ssm_conv_direct', DIRECT, [u, K], [L], y));
    return;
  }
  const tw = backend.tensor(twiddles(M), [Math.max(1, M / 2), 2]);
  const a = backend.empty([H, M, 2]);
  const b = backend.empty([H, M, 2]);
  const c = backend.empty([H, M, 2]);
  try {
    await backend.run(program('ssm_fft_pack', PACK, [u, K], [M, L], a));
    await fft(backend, M, tw, a, b, c);
    await backend.run(program('ssm_fft_multiply', MULTIPLY, [b], [M], a));
    await fft(backend, M, tw, a, b, c);
    await backend.run(program('ssm_fft_unpack', UNPACK, [b], [M, L, 1 / M], y));
  } finally {
    tw.dispose();
    a.dispose();
    b.dispose();
    c.dispose();
  }
}

export const causalConvGpuJsKernel = singleOutputKernel<CausalConvAttrs>(
  CausalConv,
  'gpujs',
  convShape,
  writeConv,
);
