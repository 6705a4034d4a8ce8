/**
 * gpu.js programs of the causal convolution (the twins of ../webgpu/conv.ts): the same FFT
 * pipeline (pack channel pairs of u and of K, radix-2 Stockham stages, split-and-multiply, the same FFT again,
 * unpack), with one thread per output value per stage, since gpu.js has no workgroup memory
 * or barriers: each stage is one kernel over the [H, M, 2] buffer, every thread computing
 * its butterfly and returning its own real or imaginary part. 'direct' is one thread per
 * output summing its terms. Indices are float32 in gpu.js' GL modes, so H * M * 2 must stay
 * under 2^24 (the op checks it).
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import { CausalConv, type CausalConvAttrs, convShape, singleOutputKernel, twiddles } from '../contract';

const LOOP_MAX = 1 << 24;

const PACK = `function fftPack(x, m, len, channels) {
  const e = this.thread.x;
  const i = Math.floor(e / 2);
  const comp = e - i * 2;
  const c = Math.floor(i / m);
  const t = i - c * m;
  const h = 2 * c + comp;
  if (t < len) {
    if (h < channels) {
      return x[h * len + t];
    }
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

const MULTIPLY = `function fftMultiply(fu, fk, m) {
  const x = this.thread.x;
  const e = Math.floor(x / 2);
  const comp = x - e * 2;
  const base = Math.floor(e / m) * m;
  const k = e - base;
  let r = m - k;
  if (k === 0) {
    r = 0;
  }
  const ar = fu[2 * e];
  const ai = fu[2 * e + 1];
  const br = fu[2 * (base + r)];
  const bi = 0.0 - fu[2 * (base + r) + 1];
  const u0r = 0.5 * (ar + br);
  const u0i = 0.5 * (ai + bi);
  const u1r = 0.5 * (ai - bi);
  const u1i = -0.5 * (ar - br);
  const cr = fk[2 * e];
  const ci = fk[2 * e + 1];
  const dr = fk[2 * (base + r)];
  const di = 0.0 - fk[2 * (base + r) + 1];
  const k0r = 0.5 * (cr + dr);
  const k0i = 0.5 * (ci + di);
  const k1r = 0.5 * (ci - di);
  const k1i = -0.5 * (cr - dr);
  const y0r = u0r * k0r - u0i * k0i;
  const y0i = u0r * k0i + u0i * k0r;
  const y1r = u1r * k1r - u1i * k1i;
  const y1i = u1r * k1i + u1i * k1r;
  if (comp < 0.5) {
    return y0r - y1i;
  }
  return 0.0 - (y0i + y1r);
}`;

const UNPACK = `function fftUnpack(src, m, len, invM) {
  const x = this.thread.x;
  const h = Math.floor(x / len);
  const t = x - h * len;
  const c = Math.floor(h / 2);
  if (h - c * 2 > 0.5) {
    return 0.0 - src[2 * (c * m + t) + 1] * invM;
  }
  return src[2 * (c * m + t)] * invM;
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
  // Channels go in pairs: row c of each buffer holds channels 2c and 2c + 1 (see ../webgpu/conv.ts).
  const rows = Math.ceil(H / 2);
  const tw = backend.tensor(twiddles(M), [Math.max(1, M / 2), 2]);
  const buffers = [0, 1, 2, 3].map(() => backend.empty([rows, M, 2]));
  const [a, b, c, d] = buffers as [Tensor, Tensor, Tensor, Tensor];
  try {
    await backend.run(program('ssm_fft_pack', PACK, [u], [M, L, H], a));
    await backend.run(program('ssm_fft_pack', PACK, [K], [M, L, H], b));
    await fft(backend, M, tw, a, c, d);
    await fft(backend, M, tw, b, a, d);
    await backend.run(program('ssm_fft_multiply', MULTIPLY, [c, a], [M], b));
    await fft(backend, M, tw, b, c, d);
    await backend.run(program('ssm_fft_unpack', UNPACK, [c], [M, L, 1 / M], y));
  } finally {
    tw.dispose();
    for (const t of buffers) t.dispose();
  }
}

export const causalConvGpuJsKernel = singleOutputKernel<CausalConvAttrs>(
  CausalConv,
  'gpujs',
  convShape,
  writeConv,
);
