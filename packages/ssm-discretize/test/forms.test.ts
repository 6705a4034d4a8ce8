import { ArgumentError, DeviceLimitError, ShapeError } from '@longseq/backend';
import { describeEachBackend, expectClose, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  type CausalConvAlgorithm,
  type DiagonalSsmHost,
  type FftVariant,
  type DiscretizationMethod,
  causalConv,
  causalConvFftRef,
  causalConvRef,
  denseKernelRef,
  denseScan,
  diagonalKernelRef,
  diagonalScan,
  diagonalScanRef,
  discretize,
  ssmKernel,
} from '../src';

type Rng = () => number;

/** A random stable diagonal batch in S4D's range: Re a in [-1, -0.1], Im a up to 4, dt in [1e-3, 0.1]. */
function randomSsm(
  H: number,
  N: number,
  complex: boolean,
  method: DiscretizationMethod,
  random: Rng,
): DiagonalSsmHost {
  const width = complex ? 2 : 1;
  const A = new Float32Array(H * N * width);
  for (let i = 0; i < H * N; i++) {
    A[i * width] = -0.1 - 0.9 * random();
    if (complex) A[i * width + 1] = 4 * (random() * 2 - 1);
  }
  const dt = Float32Array.from({ length: H }, () => Math.exp(Math.log(1e-3) + random() * Math.log(100)));
  return {
    H,
    N,
    complex,
    A,
    B: randomFloats(H * N * width, random),
    C: randomFloats(H * N * width, random),
    dt,
    method,
    alpha: { zoh: 0, mamba: 0, bilinear: 0.5, gbt: 0.25, euler: 0, backward_diff: 1 }[method],
  };
}

describe('float64 forms', () => {
  it('dense: the recurrence equals the convolution with K_l = C A^l B', () => {
    const random = rng(freshSeed());
    const n = 4;
    const A = Array.from({ length: n }, (_, i) =>
      Array.from({ length: n }, (_, j) => (i === j ? -1 : 0.3 * (random() - 0.5))),
    );
    const sys = discretize({ A, B: [[1], [0.5], [-1], [2]], C: [[1, -1, 0.5, 2]], D: [[0]] }, 0.1, {
      method: 'zoh',
    });
    const L = 40;
    const u = Array.from({ length: L }, () => random() * 2 - 1);
    const yScan = denseScan(sys, u, L);
    const yConv = causalConvRef(u, denseKernelRef(sys, L), 1, L);
    for (let k = 0; k < L; k++) expect(Math.abs(yScan[k]! - yConv[k]!)).toBeLessThan(1e-13);
  });

  it('diagonal: Vandermonde K equals dense repeated powers, and scan equals convolution, for every method', () => {
    const random = rng(freshSeed());
    for (const method of ['zoh', 'mamba', 'bilinear', 'euler', 'backward_diff'] as const) {
      const ssm = randomSsm(1, 3, false, method, random);
      const L = 30;
      const a = Array.from(ssm.A);
      const diag = a.map((v, i) => a.map((_, j) => (i === j ? v : 0)));
      const sys = discretize(
        { A: diag, B: Array.from(ssm.B, (v) => [v]), C: [Array.from(ssm.C)], D: [[0]] },
        ssm.dt[0]!,
        { method },
      );
      // SciPy's gbt C-bar differs from C; the S4 convention keeps C, so compare with C.
      const dense = denseKernelRef({ ...sys, C: { rows: 1, cols: 3, data: Float64Array.from(ssm.C) } }, L);
      const K = diagonalKernelRef(ssm, L);
      for (let l = 0; l < L; l++) expect(Math.abs(K[l]! - dense[l]!)).toBeLessThan(1e-12);
      const u = randomFloats(L, random);
      const yScan = diagonalScanRef(ssm, u, L);
      const yConv = causalConvRef(u, K, 1, L);
      for (let k = 0; k < L; k++) expect(Math.abs(yScan[k]! - yConv[k]!)).toBeLessThan(1e-12);
    }
  });

  it('the float64 FFT convolution equals the direct one (L = 1, 5, 100)', () => {
    const random = rng(freshSeed());
    for (const L of [1, 5, 100]) {
      const u = randomFloats(2 * L, random);
      const K = randomFloats(2 * L, random);
      const a = causalConvRef(u, K, 2, L);
      const b = causalConvFftRef(u, K, 2, L);
      for (let i = 0; i < 2 * L; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-12);
    }
  });
});

describeEachBackend('ssm forms', (ctx) => {
  const upload = (ssm: DiagonalSsmHost) => {
    const shape = ssm.complex ? [ssm.H, ssm.N, 2] : [ssm.H, ssm.N];
    return {
      A: ctx.backend.tensor(ssm.A, shape),
      B: ctx.backend.tensor(ssm.B, shape),
      C: ctx.backend.tensor(ssm.C, shape),
      dt: Array.from(ssm.dt),
    };
  };
  const dispose = (t: { A: { dispose(): void }; B: { dispose(): void }; C: { dispose(): void } }) => {
    t.A.dispose();
    t.B.dispose();
    t.C.dispose();
  };

  for (const complex of [true, false]) {
    it(`ssmKernel (Vandermonde, ${complex ? 'complex' : 'real'}) matches the float64 reference for every method`, async () => {
      const seed = freshSeed();
      const random = rng(seed);
      const cases: [number, number, number, DiscretizationMethod][] = [
        [1, 1, 1, 'zoh'],
        [3, 5, 37, 'zoh'],
        [2, 16, 100, 'mamba'],
        [2, 4, 65, 'bilinear'],
        [1, 3, 20, 'backward_diff'],
        [2, 3, 20, 'gbt'],
      ];
      for (const [H, N, L, method] of cases) {
        const host = randomSsm(H, N, complex, method, random);
        const dev = upload(host);
        const K = await ssmKernel(dev, L, method === 'gbt' ? { method, alpha: 0.25 } : { method });
        expect(K.shape).toEqual([H, L]);
        const got = await K.read();
        K.dispose();
        dispose(dev);
        expectClose(got, diagonalKernelRef(host, L), diagonalKernelRef(host, L, { precision: 'f32' }), {
          label: `K ${method} H${H} N${N} L${L}`,
          seed,
        });
      }
    });
  }

  it('causalConv (FFT) matches the float64 convolution on random sizes, L = 1 and L not a power of two', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    for (const [H, L] of [
      [1, 1],
      [2, 2],
      [3, 7],
      [3, 40],
      [2, 100],
      [1, 300],
      [1, 1500],
    ] as const) {
      const u = randomFloats(H * L, random);
      const Kh = randomFloats(H * L, random);
      const ut = ctx.backend.tensor(u, [H, L]);
      const Kt = ctx.backend.tensor(Kh, [H, L]);
      const variants: [CausalConvAlgorithm, FftVariant][] = [
        ['fft', 'global'],
        ['direct', 'auto'],
      ];
      // The fused workgroup-memory path (slow to compile and run on SwiftShader, so a few
      // sizes): M <= localFftCapacity (1024 here) in one transform per workgroup (M = 2: one
      // radix-2 stage; L = 40, M = 128: radix 2 then radix 4; odd H: a channel pair of one),
      // the four-step split beyond (L = 1500: M = 4096 = 64 x 64).
      if (ctx.name === 'webgpu' && (L <= 100 || L === 1500)) variants.push(['fft', 'workgroup']);
      for (const [algorithm, fft] of variants) {
        if (algorithm === 'direct' && L > 300) continue;
        const y = await causalConv(ut, Kt, { algorithm, fft });
        const got = await y.read();
        y.dispose();
        // The float32 baseline: the worse of a float32 direct sum and a float32 FFT.
        const ref64 = causalConvRef(u, Kh, H, L);
        const direct32 = causalConvRef(u, Kh, H, L, { precision: 'f32' });
        const fft32 = causalConvFftRef(u, Kh, H, L, { precision: 'f32' });
        const worse = worst(ref64, direct32, fft32);
        expectClose(got, ref64, worse, { label: `conv ${algorithm} ${fft} H${H} L${L}`, seed });
      }
      ut.dispose();
      Kt.dispose();
    }
  });

  it('recurrence (diagonalScan) and convolution (ssmKernel + causalConv) give the same output', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    for (const [H, N, L, complex] of [
      [2, 4, 50, true],
      [3, 2, 33, false],
      [1, 8, 130, true],
    ] as const) {
      const host = randomSsm(H, N, complex, 'zoh', random);
      const dev = upload(host);
      const u = randomFloats(H * L, random);
      const ut = ctx.backend.tensor(u, [H, L]);
      const yScan = await diagonalScan(dev, ut);
      const K = await ssmKernel(dev, L);
      const yConv = await causalConv(ut, K, { fft: 'global' });
      const scan = await yScan.read();
      const conv = await yConv.read();
      for (const t of [yScan, K, yConv, ut]) t.dispose();
      dispose(dev);
      const ref64 = diagonalScanRef(host, u, L);
      const K64 = diagonalKernelRef(host, L);
      const conv64 = causalConvRef(u, K64, H, L);
      // Both float64 forms agree with each other to rounding.
      for (let i = 0; i < H * L; i++) expect(Math.abs(ref64[i]! - conv64[i]!)).toBeLessThan(1e-10);
      const scan32 = diagonalScanRef(host, u, L, { precision: 'f32' });
      const conv32 = causalConvFftRef(u, diagonalKernelRef(host, L, { precision: 'f32' }), H, L, {
        precision: 'f32',
      });
      const baseline = worst(ref64, scan32, conv32);
      expectClose(scan, ref64, baseline, { label: `scan H${H} N${N} L${L}`, seed });
      expectClose(conv, ref64, baseline, { label: `conv H${H} N${N} L${L}`, seed });
    }
  });

  if (ctx.name === 'webgpu' || ctx.name === 'gpujs-webgpu') {
    it('causalConv (FFT) at L = 65536, two channels, against the float64 FFT reference', async () => {
      const seed = freshSeed();
      const random = rng(seed);
      const L = 65536;
      const u = randomFloats(L, random);
      const Kh = randomFloats(L, random);
      const ut = ctx.backend.tensor(u, [1, L]);
      const Kt = ctx.backend.tensor(Kh, [1, L]);
      const y = await causalConv(ut, Kt);
      const got = await y.read();
      for (const t of [y, ut, Kt]) t.dispose();
      const ref64 = causalConvFftRef(u, Kh, 1, L);
      expectClose(got, ref64, causalConvFftRef(u, Kh, 1, L, { precision: 'f32' }), {
        label: 'conv L 65536',
        seed,
      });
    }, 120_000);
  }

  it('bad input: typed errors naming the argument, before any GPU work', async () => {
    const b = ctx.backend;
    const A = b.tensor([-1, -2], [1, 2]);
    const B = b.tensor([1, 1], [1, 2]);
    const C3 = b.tensor([1, 1, 1], [1, 3]);
    const u = b.tensor([1, 2, 3], [1, 3]);
    const K2 = b.tensor([1, 2], [1, 2]);
    const uWrongH = K2.reshape([2, 1]);
    const before = b.memory();
    await expect(ssmKernel({ A, B, C: C3, dt: [0.1] }, 4)).rejects.toThrow(ShapeError);
    await expect(ssmKernel({ A, B, C: B, dt: [0] }, 4)).rejects.toThrow(
      /^dt\[0\]: expected a finite number > 0/,
    );
    await expect(ssmKernel({ A, B, C: B, dt: [Number.NaN] }, 4)).rejects.toThrow(ArgumentError);
    await expect(ssmKernel({ A, B, C: B, dt: [0.1, 0.2] }, 4)).rejects.toThrow(/^dt:/);
    await expect(ssmKernel({ A, B, C: B, dt: [0.1] }, 0)).rejects.toThrow(/^L:/);
    await expect(ssmKernel({ A, B, C: B, dt: [0.1] }, 4, { method: 'gbt' })).rejects.toThrow(
      /^options.alpha/,
    );
    await expect(causalConv(u, K2)).rejects.toThrow(/^K:/);
    await expect(causalConv(u, u, { algorithm: 'fast' as 'fft' })).rejects.toThrow(/^options.algorithm/);
    await expect(causalConv(u, u, { fft: 'radix8' as 'global' })).rejects.toThrow(/^options.fft/);
    await expect(diagonalScan({ A, B, C: B, dt: [0.1] }, uWrongH)).rejects.toThrow(/^u:/);
    if (b.kind === 'gpujs') {
      // [1024, 8192] pads to FFT buffers of 512 channel pairs * 16384 * 2 = 2^24 values.
      const big = b.tensor(new Float32Array(1024 * 8192), [1024, 8192]);
      await expect(causalConv(big, big)).rejects.toThrow(DeviceLimitError);
      big.dispose();
    }
    expect(b.memory().tensors).toBe(before.tensors);
    for (const t of [A, B, C3, u, K2, uWrongH]) t.dispose();
  });
});

function worst(ref: Float64Array, a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(ref, (r, i) => (Math.abs(a[i]! - r) > Math.abs(b[i]! - r) ? a[i]! : b[i]!));
}
