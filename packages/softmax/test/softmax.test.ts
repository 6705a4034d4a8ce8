import {
  ArgumentError,
  DeviceLimitError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
  scope,
} from '@longseq/backend';
import {
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  randomInt,
  rng,
} from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  type SoftmaxAlgorithm,
  type SoftmaxVariant,
  logsumexp,
  maxFusedRowLength,
  softmax,
  softmaxRef,
  softmaxWithLse,
} from '../src';

const ALGORITHMS: SoftmaxAlgorithm[] = ['online', 'safe', 'naive'];

describe('softmaxRef', () => {
  it('online, safe and naive agree in float64 and rows sum to 1', () => {
    const random = rng(freshSeed());
    const x = { shape: [3, 17], data: randomFloats(51, random, -4, 4) };
    const safe = softmaxRef(x, { algorithm: 'safe' });
    for (const algorithm of ['online', 'naive'] as const) {
      const other = softmaxRef(x, { algorithm });
      for (let i = 0; i < 51; i++) expect(other.output.data[i]).toBeCloseTo(safe.output.data[i]!, 14);
    }
    for (let r = 0; r < 3; r++) {
      let s = 0;
      for (let j = 0; j < 17; j++) s += safe.output.data[r * 17 + j]!;
      expect(s).toBeCloseTo(1, 14);
    }
  });
});

describeEachBackend('softmax', (ctx) => {
  // Each case: [leading dims..., n]. Lengths straddle workgroup sizes, powers of two and one.
  const shapes: number[][] = [
    [1, 1],
    [4, 7],
    [3, 100],
    [2, 257],
    [5, 1000],
    [2, 3, 33],
  ];
  // WebGPU has two kernel shapes and two reduction styles (subgroups, workgroup-memory tree).
  const variants: [SoftmaxVariant, boolean][] =
    ctx.name === 'webgpu'
      ? [
          ['fused', true],
          ['fused', false],
          ['multipass', true],
          ['multipass', false],
        ]
      : [['auto', true]];

  for (const algorithm of ALGORITHMS) {
    for (const [variant, subgroups] of variants) {
      it(`${algorithm} (${variant}, subgroups ${subgroups}) matches the float64 reference on random shapes`, async () => {
        const seed = freshSeed();
        const random = rng(seed);
        for (const shape of shapes) {
          const size = shape.reduce((a, b) => a * b, 1);
          const data = randomFloats(size, random, -8, 8);
          const x = ctx.backend.tensor(data, shape);
          const { output, lse } = await softmaxWithLse(x, { algorithm, variant, subgroups });
          expect(output.shape).toEqual(shape);
          expect(lse.shape).toEqual(shape.slice(0, -1));
          const ref = softmaxRef({ shape, data }, { algorithm: 'safe' });
          const ref32 = softmaxRef({ shape, data }, { algorithm, precision: 'f32' });
          const label = `${algorithm}/${variant}/sg ${subgroups} ${JSON.stringify(shape)}`;
          expectClose(await output.read(), ref.output.data, ref32.output.data, { label, seed });
          expectClose(await lse.read(), ref.lse.data, ref32.lse.data, {
            label: `${label} lse`,
            seed,
            atol: 1e-5,
          });
          x.dispose();
          output.dispose();
          lse.dispose();
        }
      });
    }
  }

  it('handles a row split across several workgroups (multipass chunks) and the longest fused row', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const fusedMax = ctx.name === 'webgpu' ? maxFusedRowLength(ctx.backend) : 0;
    const lengths = ctx.name === 'webgpu' ? [fusedMax, fusedMax + 1, 3 * fusedMax + 5] : [5000];
    for (const n of lengths) {
      const data = randomFloats(2 * n, random, -10, 10);
      await scope(async () => {
        const x = ctx.backend.tensor(data, [2, n]);
        for (const algorithm of ['online', 'safe'] as const) {
          const { output, lse } = await softmaxWithLse(x, { algorithm });
          const ref = softmaxRef({ shape: [2, n], data });
          const ref32 = softmaxRef({ shape: [2, n], data }, { algorithm, precision: 'f32' });
          expectClose(await output.read(), ref.output.data, ref32.output.data, {
            label: `${algorithm} n=${n}`,
            seed,
          });
          expectClose(await lse.read(), ref.lse.data, ref32.lse.data, {
            label: `${algorithm} lse n=${n}`,
            seed,
            atol: 1e-5,
          });
        }
      });
    }
  });

  it('applies a mask (a suffix of the shape, -inf entries) and temperature; fully masked rows give 0 and lse -inf', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const [b, q, n] = [2, 5, randomInt(random, 9, 40)];
    const data = randomFloats(b * q * n, random, -3, 3);
    const maskData = new Float32Array(q * n);
    for (let i = 0; i < q; i++) {
      for (let j = 0; j < n; j++) {
        // Causal-like pattern plus random extra holes; row 2 entirely masked.
        const masked = i === 2 || j > i + n - q || random() < 0.2;
        maskData[i * n + j] = masked ? Number.NEGATIVE_INFINITY : 0;
      }
    }
    const temperature = 0.5 + random() * 2;
    for (const algorithm of ['online', 'safe'] as const) {
      await scope(async () => {
        const x = ctx.backend.tensor(data, [b, q, n]);
        const mask = ctx.backend.tensor(maskData, [q, n]);
        const { output, lse } = await softmaxWithLse(x, { algorithm, mask, temperature });
        const host = { shape: [b, q, n], data };
        const hostMask = { shape: [q, n], data: maskData };
        const ref = softmaxRef(host, { mask: hostMask, temperature });
        const ref32 = softmaxRef(host, { algorithm, mask: hostMask, temperature, precision: 'f32' });
        const out = await output.read();
        expectClose(out, ref.output.data, ref32.output.data, { label: `${algorithm} masked`, seed });
        const lseHost = await lse.read();
        expectClose(lseHost, ref.lse.data, ref32.lse.data, {
          label: `${algorithm} masked lse`,
          seed,
          atol: 1e-5,
        });
        for (let batch = 0; batch < b; batch++) {
          expect(lseHost[batch * q + 2]).toBe(Number.NEGATIVE_INFINITY);
          for (let j = 0; j < n; j++) expect(out[(batch * q + 2) * n + j]).toBe(0);
        }
      });
    }
  });

  it('online and safe survive large and tiny logits where naive overflows', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const n = 64;
    // Beyond e^709 even float64 overflows, so the naive form fails on every backend,
    // whatever precision it computes in (gpu.js cpu mode computes in float64).
    const big = randomFloats(2 * n, random, 720, 800);
    const tiny = randomFloats(2 * n, random, -800, -720);
    for (const data of [big, tiny]) {
      await scope(async () => {
        const x = ctx.backend.tensor(data, [2, n]);
        for (const algorithm of ['online', 'safe'] as const) {
          const y = await softmax(x, { algorithm });
          const ref = softmaxRef({ shape: [2, n], data });
          const ref32 = softmaxRef({ shape: [2, n], data }, { algorithm, precision: 'f32' });
          expectClose(await y.read(), ref.output.data, ref32.output.data, {
            label: `${algorithm} extreme`,
            seed,
          });
        }
      });
    }
    // exp(z) overflows: the naive form divides infinities and gets NaN.
    await scope(async () => {
      const y = await softmax(ctx.backend.tensor(big, [2, n]), { algorithm: 'naive' });
      const values = await y.read();
      expect(values.some((v) => !Number.isFinite(v))).toBe(true);
    });
  });

  it('logsumexp equals the lse of softmaxWithLse and softmax of one element is 1', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const data = randomFloats(6 * 31, random, -5, 5);
    await scope(async () => {
      const x = ctx.backend.tensor(data, [6, 31]);
      const lse = await logsumexp(x);
      const ref = softmaxRef({ shape: [6, 31], data });
      const ref32 = softmaxRef({ shape: [6, 31], data }, { algorithm: 'online', precision: 'f32' });
      expect(lse.shape).toEqual([6]);
      expectClose(await lse.read(), ref.lse.data, ref32.lse.data, { label: 'logsumexp', seed, atol: 1e-5 });
      const one = await softmax(ctx.backend.tensor([randomFloats(1, random, -5, 5)[0]!, 3], [2, 1]));
      expect(Array.from(await one.read())).toEqual([1, 1]);
    });
  });

  it('handles empty batches and empty rows', async () => {
    await scope(async () => {
      const empty = await softmax(ctx.backend.tensor([], [0, 5]));
      expect(empty.shape).toEqual([0, 5]);
      expect((await empty.read()).length).toBe(0);
      const { output, lse } = await softmaxWithLse(ctx.backend.tensor([], [3, 0]));
      expect(output.shape).toEqual([3, 0]);
      expect(Array.from(await lse.read())).toEqual([
        Number.NEGATIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
      ]);
    });
  });

  it('follows IEEE semantics: NaN or +inf in a row makes that row NaN, other rows are unaffected', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const n = 19;
    const data = randomFloats(3 * n, random, -2, 2);
    data[randomInt(random, 0, n - 1)] = Number.NaN;
    data[n + randomInt(random, 0, n - 1)] = Number.POSITIVE_INFINITY;
    for (const algorithm of ['online', 'safe'] as const) {
      await scope(async () => {
        const y = await softmax(ctx.backend.tensor(data, [3, n]), { algorithm });
        const out = await y.read();
        const ref = softmaxRef({ shape: [3, n], data });
        for (let j = 0; j < 2 * n; j++) expect(out[j], `${algorithm} index ${j}`).toBeNaN();
        const ref32 = softmaxRef({ shape: [3, n], data }, { algorithm, precision: 'f32' });
        expectClose(out.subarray(2 * n), ref.output.data.subarray(2 * n), ref32.output.data.subarray(2 * n), {
          seed,
        });
      });
    }
  });

  it('rejects bad input with typed errors before any GPU work, leaving nothing allocated', async () => {
    const random = rng(freshSeed());
    const x = ctx.backend.tensor(randomFloats(12, random), [3, 4]);
    const ids = ctx.backend.tensor([1, 2, 3], [3], 'i32');
    const badMask = ctx.backend.tensor(randomFloats(3, random), [3]);
    const scalar = ctx.backend.tensor([1], []);
    const fusedMax = ctx.name === 'webgpu' ? maxFusedRowLength(ctx.backend) : 0;
    const long = ctx.backend.tensor(randomFloats(fusedMax + 1, random), [1, fusedMax + 1]);
    const before = ctx.backend.memory();
    await expect(softmax(ids)).rejects.toBeInstanceOf(DTypeError);
    await expect(softmax(ids)).rejects.toThrow(/x: expected dtype f32, got i32/);
    await expect(softmax(x, { mask: badMask })).rejects.toBeInstanceOf(ShapeError);
    await expect(softmax(x, { mask: badMask })).rejects.toThrow(
      /options\.mask: expected shape a suffix of x's shape \[3, 4\]/,
    );
    await expect(softmax(x, { temperature: 0 })).rejects.toBeInstanceOf(ArgumentError);
    await expect(softmax(x, { temperature: Number.NaN })).rejects.toThrow(/options\.temperature/);
    await expect(softmax(x, { algorithm: 'fast' as never })).rejects.toThrow(
      /options\.algorithm: expected one of 'online', 'safe', 'naive'/,
    );
    await expect(softmax(x, { variant: 'tiled' as never })).rejects.toBeInstanceOf(ArgumentError);
    await expect(softmax({} as never)).rejects.toThrow(/x: expected a Tensor/);
    await expect(softmax(scalar)).rejects.toBeInstanceOf(ShapeError);
    if (ctx.name === 'webgpu') {
      await expect(softmax(long, { variant: 'fused' })).rejects.toBeInstanceOf(DeviceLimitError);
    }
    expect(ctx.backend.memory()).toMatchObject({ tensors: before.tensors, bytes: before.bytes });
    const disposed = ctx.backend.tensor(randomFloats(4, random), [4]);
    disposed.dispose();
    await expect(softmax(disposed)).rejects.toBeInstanceOf(DisposedTensorError);
    // The input is untouched and still usable after all those rejections.
    const y = await softmax(x);
    expect((await y.read()).length).toBe(12);
    for (const t of [x, ids, badMask, scalar, long, y]) t.dispose();
  });
});
