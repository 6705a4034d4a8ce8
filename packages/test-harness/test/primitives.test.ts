/**
 * Conformance of the primitive ops declared in @longseq/backend, on every backend: each op
 * against its float64 reference on fresh random data, odd shapes, N = 1 and empty tensors.
 */
import {
  BINARY_OPS,
  DTypeError,
  ShapeError,
  UNARY_OPS,
  binary,
  binaryRef,
  gather,
  gatherRef,
  layerNorm,
  layerNormRef,
  matmul,
  matmulRef,
  REDUCE_OPS,
  reduce,
  reduceRef,
  reduceRefF32Worst,
  rmsNorm,
  rmsNormRef,
  scope,
  unary,
  unaryRef,
} from '@longseq/backend';
import { expect, it } from 'vitest';
import {
  describeEachBackend,
  expectClose,
  expectCloseRelative,
  freshSeed,
  randomFloats,
  randomInt,
  randomInts,
  rng,
} from '../src';

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

describeEachBackend('primitives', (ctx) => {
  it('matmul: batches, broadcast weights, transposes, shapes off the tile grid', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const cases: [number[], number[], boolean, boolean][] = [
      [[1, 1], [1, 1], false, false],
      [[17, 33], [33, 9], false, false],
      [[3, 5, 19], [3, 19, 7], false, false],
      [[2, 3, 13, 6], [6, 11], false, false],
      [[4, 21, 10], [4, 15, 21], true, true],
      [[2, 8, 5], [2, 8, 3], true, false],
      [[65, 31], [40, 31], false, true],
    ];
    for (const [sa, sb, transposeA, transposeB] of cases) {
      await scope(async () => {
        const a = { shape: sa, data: randomFloats(size(sa), random) };
        const b = { shape: sb, data: randomFloats(size(sb), random) };
        const y = await matmul(ctx.backend.tensor(a.data, sa), ctx.backend.tensor(b.data, sb), {
          transposeA,
          transposeB,
        });
        const ref = matmulRef(a, b, { transposeA, transposeB });
        expect(y.shape).toEqual(ref.shape);
        const ref32 = matmulRef(a, b, { transposeA, transposeB, precision: 'f32' });
        expectClose(await y.read(), ref.data, ref32.data, {
          label: `matmul ${sa} x ${sb}`,
          seed,
          atol: 1e-5,
        });
      });
    }
  });

  it('matmul: empty batch and shape errors', async () => {
    await scope(async () => {
      const y = await matmul(
        ctx.backend.tensor([], [0, 4, 3]),
        ctx.backend.tensor(randomFloats(6, rng(freshSeed())), [3, 2]),
      );
      expect(y.shape).toEqual([0, 4, 2]);
      const a = ctx.backend.tensor(randomFloats(6, rng(freshSeed())), [2, 3]);
      await expect(matmul(a, a)).rejects.toBeInstanceOf(ShapeError);
      await expect(matmul(a, a)).rejects.toThrow(/^b: expected shape/);
    });
  });

  it('unary ops match their scalar definitions', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const shape = [3, randomInt(random, 5, 70)];
    for (const op of UNARY_OPS) {
      const positive = op === 'log' || op === 'sqrt' || op === 'rsqrt';
      const data = randomFloats(size(shape), random, positive ? 0.05 : -6, 6);
      await scope(async () => {
        const y = await unary(ctx.backend.tensor(data, shape), op);
        const ref = unaryRef({ shape, data }, op);
        const ref32 = unaryRef({ shape, data }, op, { precision: 'f32' });
        expectClose(await y.read(), ref.data, ref32.data, { label: `unary ${op}`, seed, atol: 2e-6 * 6 });
      });
    }
  });

  it('softplus is relatively accurate for x in [-16, -1] and near 0 (log1p without the shader log near 1)', async () => {
    // softplus(x) = max(x, 0) + log1p(e^-|x|): for x in [-16, -1] it is log1p of e^x in
    // [1e-7, 0.37], where the shader `log` (WGSL, GLSL) is only absolutely accurate near 1;
    // Goldberg's form log(1 + y) * (y / ((1 + y) - 1)) was 0.33 off relatively on gpujs-webgpu.
    const seed = freshSeed();
    const random = rng(seed);
    const n = 300;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = random();
      if (i % 3 === 0) data[i] = (u - 0.5) * 2e-3;
      else if (i % 3 === 1) data[i] = -16 + 15 * u;
      else data[i] = -1 + 17 * u;
    }
    await scope(async () => {
      const y = await unary(ctx.backend.tensor(data, [n]), 'softplus');
      const ref = unaryRef({ shape: [n], data }, 'softplus');
      const ref32 = unaryRef({ shape: [n], data }, 'softplus', { precision: 'f32' });
      expectCloseRelative(await y.read(), ref.data, ref32.data, { label: 'softplus', seed });
    });
  });

  it('binary ops broadcast like NumPy', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const pairs: [number[], number[]][] = [
      [[7], [7]],
      [[4, 9], [9]],
      [
        [3, 1, 5],
        [1, 6, 5],
      ],
      [
        [2, 3, 4, 5],
        [3, 1, 1],
      ],
      [[1], [2, 2, 2, 2, 2, 3]],
    ];
    for (const op of BINARY_OPS) {
      for (const [sa, sb] of pairs) {
        // pow: positive bases, |b ln a| <= 2.8; a float32 pow's error grows with |b ln a|, and
        // WGSL's log promises only about 3 ulp, so wider ranges measure log, not the kernel.
        const a = {
          shape: sa,
          data: randomFloats(size(sa), random, op === 'pow' ? 0.25 : -3, op === 'pow' ? 4 : 3),
        };
        const b = {
          shape: sb,
          data: randomFloats(
            size(sb),
            random,
            op === 'div' ? 0.5 : op === 'pow' ? -2 : -3,
            op === 'pow' ? 2 : 3,
          ),
        };
        await scope(async () => {
          const y = await binary(ctx.backend.tensor(a.data, sa), ctx.backend.tensor(b.data, sb), op);
          const ref = binaryRef(a, b, op);
          expect(y.shape).toEqual(ref.shape);
          const ref32 = binaryRef(a, b, op, { precision: 'f32' });
          expectClose(await y.read(), ref.data, ref32.data, {
            label: `binary ${op} ${sa} ${sb}`,
            seed,
            atol: 1e-5,
          });
        });
      }
    }
    const a = ctx.backend.tensor(randomFloats(6, random), [2, 3]);
    const b = ctx.backend.tensor(randomFloats(4, random), [4]);
    await expect(binary(a, b, 'add')).rejects.toBeInstanceOf(ShapeError);
    a.dispose();
    b.dispose();
  });

  it('reductions over any axis', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const shape = [3, randomInt(random, 2, 40), 5];
    const data = randomFloats(size(shape), random, -2, 2);
    for (const op of REDUCE_OPS) {
      for (const axis of [0, 1, 2, -1]) {
        await scope(async () => {
          const y = await reduce(
            ctx.backend.tensor(op === 'prod' ? data.map((v) => 0.5 + v / 4) : data, shape),
            op,
            {
              axis,
              keepDims: axis === 1,
            },
          );
          const host = { shape, data: op === 'prod' ? data.map((v) => 0.5 + v / 4) : data };
          const ref = reduceRef(host, op, { axis, keepDims: axis === 1 });
          expect(y.shape).toEqual(ref.shape);
          // Kernels reduce in their own order: the baseline is the worst of several float32 orders.
          const ref32 = reduceRefF32Worst(host, op, { axis });
          expectClose(await y.read(), ref.data, ref32.data, {
            label: `reduce ${op} axis ${axis}`,
            seed,
            atol: 1e-5,
          });
        });
      }
    }
  });

  it('gather (embedding) with out-of-range ids giving zero rows', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const [rows, rowSize] = [randomInt(random, 3, 50), randomInt(random, 1, 33)];
    const table = { shape: [rows, rowSize], data: randomFloats(rows * rowSize, random) };
    const ids = randomInts(12, random, 0, rows);
    ids[5] = rows + 3;
    ids[7] = -1;
    await scope(async () => {
      const y = await gather(
        ctx.backend.tensor(table.data, table.shape),
        ctx.backend.tensor(ids, [3, 4], 'i32'),
      );
      const ref = gatherRef(table, { shape: [3, 4], data: ids });
      expect(y.shape).toEqual([3, 4, rowSize]);
      expect(Array.from(await y.read())).toEqual(Array.from(ref.data, Math.fround));
      await expect(
        gather(ctx.backend.tensor(table.data, table.shape), ctx.backend.tensor(ids, [12])),
      ).rejects.toBeInstanceOf(DTypeError);
    });
  });

  it('RMSNorm and LayerNorm over the last axis', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    for (const shape of [
      [1, 1],
      [4, 33],
      [2, 3, 300],
    ]) {
      const cols = shape[shape.length - 1]!;
      const x = { shape, data: randomFloats(size(shape), random, -3, 3) };
      const w = { shape: [cols], data: randomFloats(cols, random, 0.5, 1.5) };
      const bias = { shape: [cols], data: randomFloats(cols, random, -1, 1) };
      await scope(async () => {
        const xt = ctx.backend.tensor(x.data, shape);
        const wt = ctx.backend.tensor(w.data, [cols]);
        const bt = ctx.backend.tensor(bias.data, [cols]);
        const rms = await rmsNorm(xt, wt, { eps: 1e-6 });
        expectClose(
          await rms.read(),
          rmsNormRef(x, w, 1e-6).data,
          rmsNormRef(x, w, 1e-6, { precision: 'f32' }).data,
          {
            label: `rmsNorm ${shape}`,
            seed,
            atol: 1e-5,
          },
        );
        const ln = await layerNorm(xt, wt, bt);
        expectClose(
          await ln.read(),
          layerNormRef(x, w, bias).data,
          layerNormRef(x, w, bias, 1e-5, { precision: 'f32' }).data,
          {
            label: `layerNorm ${shape}`,
            seed,
            atol: 1e-5,
          },
        );
        const wrong = ctx.backend.tensor(randomFloats(cols + 1, random), [cols + 1]);
        await expect(rmsNorm(xt, wrong)).rejects.toThrow(/^weight: expected shape \[\d+\]/);
      });
    }
  });
});

it('the WebGPU adapter is present (the suite fails, never skips, without it)', async () => {
  const { getBackend } = await import('../src');
  const backend = await getBackend('webgpu');
  expect(backend.kind).toBe('webgpu');
});
