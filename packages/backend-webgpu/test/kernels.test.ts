import {
  BINARY_OPS,
  binary,
  binaryRef,
  compareToReference,
  gather,
  gatherRef,
  layerNorm,
  layerNormRef,
  matmul,
  matmulRef,
  REDUCE_OPS,
  type ReduceOp,
  reduce,
  reduceRef,
  reduceRefF32Worst,
  rmsNorm,
  rmsNormRef,
  UNARY_OPS,
  type UnaryOp,
  unary,
  unaryRef,
} from '@longseq/backend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebGpuBackend } from '../src/index';
import { expectClose, freshSeed, makeBackend, noLeaks, rng, uniform } from './helpers';

let backend: WebGpuBackend;
beforeAll(async () => {
  backend = await makeBackend();
});
afterAll(() => backend?.dispose());

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

describe('MatMul', () => {
  // 64 is the tile edge; these shapes straddle it, hit N = 1, M = 1, K = 1 and a ragged K.
  const cases: { name: string; a: number[]; b: number[]; tA?: boolean; tB?: boolean }[] = [
    { name: 'ragged 67x45 @ 45x70', a: [67, 45], b: [45, 70] },
    { name: 'N = 1 (matrix-vector)', a: [33, 130], b: [130, 1] },
    { name: 'M = 1', a: [1, 17], b: [17, 65] },
    { name: 'K = 1', a: [5, 1], b: [1, 9] },
    { name: 'transposeA', a: [40, 66], b: [40, 23], tA: true },
    { name: 'transposeB', a: [66, 40], b: [23, 40], tB: true },
    { name: 'both transposed', a: [19, 70], b: [65, 19], tA: true, tB: true },
    { name: 'batched 3x', a: [3, 21, 34], b: [3, 34, 15] },
    { name: 'batch broadcast of b (shared weight)', a: [2, 3, 20, 31], b: [31, 18] },
    { name: 'batch broadcast of a', a: [1, 9, 12], b: [4, 12, 70], tB: false },
    { name: 'batched + transposes', a: [2, 30, 11], b: [2, 13, 30], tA: true, tB: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const seed = freshSeed();
      const rand = rng(seed);
      await noLeaks(backend, async () => {
        const ha = { shape: c.a, data: uniform(rand, size(c.a)) };
        const hb = { shape: c.b, data: uniform(rand, size(c.b)) };
        const out = await matmul(backend.tensor(ha.data, ha.shape), backend.tensor(hb.data, hb.shape), {
          transposeA: c.tA ?? false,
          transposeB: c.tB ?? false,
        });
        const opts = { transposeA: c.tA ?? false, transposeB: c.tB ?? false };
        const ref64 = matmulRef(ha, hb, opts);
        const ref32 = matmulRef(ha, hb, { ...opts, precision: 'f32' });
        expect(out.shape).toEqual(ref64.shape);
        expectClose(compareToReference(await out.read(), ref64.data, ref32.data), c.name, seed);
      });
    });
  }

  it('K = 0 gives zeros, an empty M gives an empty result', async () => {
    await noLeaks(backend, async () => {
      const a = backend.tensor([], [3, 0]);
      const b = backend.tensor([], [0, 4]);
      expect(Array.from(await (await matmul(a, b)).read())).toEqual(new Array(12).fill(0));
      const e = await matmul(backend.tensor([], [0, 5]), backend.tensor(uniform(rng(1), 10), [5, 2]));
      expect(e.shape).toEqual([0, 2]);
      expect((await e.read()).length).toBe(0);
    });
  });
});

/** Inputs inside each op's domain, and wide enough to reach the interesting branches. */
const UNARY_RANGE: Partial<Record<UnaryOp, [number, number]>> = {
  log: [0.01, 10],
  sqrt: [0, 10],
  rsqrt: [0.05, 10],
  reciprocal: [0.1, 4],
  exp: [-4, 4],
  softplus: [-30, 30],
  tanh: [-12, 12],
  gelu: [-6, 6],
  sigmoid: [-20, 20],
  silu: [-20, 20],
};

describe('Unary', () => {
  for (const op of UNARY_OPS) {
    it(op, async () => {
      const seed = freshSeed();
      const rand = rng(seed);
      const [lo, hi] = UNARY_RANGE[op] ?? [-3, 3];
      await noLeaks(backend, async () => {
        const shape = [7, 151];
        const hx = { shape, data: uniform(rand, size(shape), lo, hi) };
        const out = await unary(backend.tensor(hx.data, shape), op);
        const ref64 = unaryRef(hx, op);
        const ref32 = unaryRef(hx, op, { precision: 'f32' });
        expectClose(compareToReference(await out.read(), ref64.data, ref32.data), op, seed);
      });
    });
  }

  it('softplus keeps tiny values (log1p) and large ones (no overflow)', async () => {
    await noLeaks(backend, async () => {
      const data = new Float32Array([-80, -30, -17, -1e-3, 0, 1e-3, 17, 30, 80]);
      const out = await unary(backend.tensor(data, [data.length]), 'softplus');
      const hx = { shape: [data.length], data };
      const ref64 = unaryRef(hx, 'softplus');
      const got = await out.read();
      // Relative error: the small outputs are ~1e-35, far below any absolute floor.
      for (let i = 0; i < data.length; i++) {
        const r = ref64.data[i]!;
        expect(Math.abs(got[i]! - r) / Math.max(Math.abs(r), 1e-38), `softplus(${data[i]})`).toBeLessThan(
          1e-5,
        );
      }
    });
  });

  it('softplus and tanh stay relatively accurate where log near 1 is not (no WGSL log in them)', async () => {
    await noLeaks(backend, async () => {
      // softplus(x) for x in [-16, -1] is log1p of a small e^x; tanh(x) near 0 is expm1 / (expm1 + 2).
      // Both used WGSL's `log` once, whose error near 1 is bounded only absolutely (2^-21).
      const seed = freshSeed();
      const rand = rng(seed);
      const n = 512;
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = Math.fround(-16 + 15 * rand());
      const tiny = new Float32Array(n);
      for (let i = 0; i < n; i++) tiny[i] = Math.fround((rand() - 0.5) * 10 ** (-1 - 5 * rand()));
      for (const [op, x] of [
        ['softplus', data],
        ['tanh', tiny],
      ] as const) {
        const got = await (await unary(backend.tensor(x, [n]), op)).read();
        const ref64 = unaryRef({ shape: [n], data: x }, op);
        let worst = 0;
        for (let i = 0; i < n; i++) {
          const r = ref64.data[i]!;
          worst = Math.max(worst, Math.abs(got[i]! - r) / Math.abs(r));
        }
        // A few float32 ulp (2^-23 = 1.2e-7); with `log` (Goldberg's form) softplus was 0.33 off on SwiftShader.
        expect(worst, `${op}, seed ${seed}`).toBeLessThan(6e-7);
      }
    });
  });

  it('NaN propagates (relu gives 0), domain errors give NaN or infinity', async () => {
    await noLeaks(backend, async () => {
      const x = backend.tensor([Number.NaN, -1, 0], [3]);
      const check = async (op: UnaryOp, expected: number[]) => {
        const got = Array.from(await (await unary(x, op)).read());
        expected.forEach((e, i) => {
          if (Number.isFinite(e)) expect(got[i]!, `${op} #${i}`).toBeCloseTo(e, 6);
          else expect(got[i], `${op} #${i}`).toBe(e);
        });
      };
      await check('exp', [Number.NaN, Math.fround(Math.exp(-1)), 1]);
      await check('relu', [0, 0, 0]);
      await check('log', [Number.NaN, Number.NaN, Number.NEGATIVE_INFINITY]);
      await check('sqrt', [Number.NaN, Number.NaN, 0]);
      await check('rsqrt', [Number.NaN, Number.NaN, Number.POSITIVE_INFINITY]);
      await check('tanh', [Number.NaN, Math.fround(Math.tanh(-1)), 0]);
    });
  });
});

describe('Binary', () => {
  const shapes: { name: string; a: number[]; b: number[] }[] = [
    { name: 'same shape', a: [5, 67], b: [5, 67] },
    { name: 'row broadcast', a: [9, 33], b: [33] },
    { name: 'column broadcast', a: [9, 1], b: [9, 35] },
    { name: 'both sides broadcast', a: [4, 1, 6], b: [1, 5, 1] },
    { name: 'scalar', a: [3, 50], b: [] },
    { name: 'rank 6', a: [2, 1, 3, 1, 2, 5], b: [1, 2, 1, 4, 2, 1] },
  ];
  for (const op of BINARY_OPS) {
    for (const s of shapes) {
      it(`${op}: ${s.name}`, async () => {
        const seed = freshSeed();
        const rand = rng(seed);
        // pow: positive bases keep the reference real; other ops see both signs.
        const [lo, hi] = op === 'pow' ? [0.25, 2] : [-2, 2];
        await noLeaks(backend, async () => {
          const ha = { shape: s.a, data: uniform(rand, size(s.a), lo, hi) };
          const hb = { shape: s.b, data: uniform(rand, size(s.b), op === 'div' ? 0.5 : lo, hi) };
          const out = await binary(backend.tensor(ha.data, ha.shape), backend.tensor(hb.data, hb.shape), op);
          const ref64 = binaryRef(ha, hb, op);
          const ref32 = binaryRef(ha, hb, op, { precision: 'f32' });
          expect(out.shape).toEqual(ref64.shape);
          expectClose(compareToReference(await out.read(), ref64.data, ref32.data), `${op} ${s.name}`, seed);
        });
      });
    }
  }

  it('max/min propagate NaN; pow of negative bases follows JavaScript', async () => {
    await noLeaks(backend, async () => {
      const a = backend.tensor([Number.NaN, 1, 2, -2, -2, -8, 0, 0], [8]);
      const b = backend.tensor([1, Number.NaN, 3, 3, 2, 1 / 3, -1, 0], [8]);
      const max = Array.from(await (await binary(a, b, 'max')).read());
      const min = Array.from(await (await binary(a, b, 'min')).read());
      expect(max.slice(0, 3)).toEqual([Number.NaN, Number.NaN, 3]);
      expect(min.slice(0, 3)).toEqual([Number.NaN, Number.NaN, 2]);
      const pow = Array.from(await (await binary(a, b, 'pow')).read());
      const expected = [Number.NaN, Number.NaN, 8, -8, 4, Number.NaN, Number.POSITIVE_INFINITY, 1];
      for (let i = 0; i < expected.length; i++) {
        const e = expected[i]!;
        if (Number.isNaN(e) || !Number.isFinite(e)) expect(pow[i], `pow #${i}`).toBe(e);
        else expect(pow[i]!, `pow #${i}`).toBeCloseTo(e, 4);
      }
    });
  });
});

describe('Reduce', () => {
  // Long rows (whole workgroup per output), short rows (shared workgroups), inner > 1, first axis.
  const cases: { name: string; shape: number[]; axis: number }[] = [
    { name: 'last axis, long', shape: [5, 1000], axis: -1 },
    { name: 'last axis, medium', shape: [37, 45], axis: -1 },
    { name: 'last axis, short', shape: [300, 5], axis: -1 },
    { name: 'middle axis', shape: [3, 77, 40], axis: 1 },
    { name: 'first axis', shape: [129, 6], axis: 0 },
    { name: 'length 1', shape: [7, 1], axis: -1 },
  ];
  for (const op of REDUCE_OPS) {
    for (const c of cases) {
      it(`${op}: ${c.name}`, async () => {
        const seed = freshSeed();
        const rand = rng(seed);
        // prod of many factors must stay finite: keep them near 1.
        const [lo, hi] = op === 'prod' ? [0.9, 1.1] : [-2, 2];
        await noLeaks(backend, async () => {
          const hx = { shape: c.shape, data: uniform(rand, size(c.shape), lo, hi) };
          const out = await reduce(backend.tensor(hx.data, hx.shape), op as ReduceOp, { axis: c.axis });
          const ref64 = reduceRef(hx, op, { axis: c.axis });
          // The kernel reduces in a tree: its rounding is one sample; the baseline is the worst of several orders.
          const ref32 = reduceRefF32Worst(hx, op, { axis: c.axis });
          expect(out.shape).toEqual(ref64.shape);
          expectClose(compareToReference(await out.read(), ref64.data, ref32.data), `${op} ${c.name}`, seed);
        });
      });
    }
  }

  it('max/min propagate NaN; an empty axis gives the identity (mean: NaN)', async () => {
    await noLeaks(backend, async () => {
      const x = backend.tensor([1, Number.NaN, 3, 4, 5, 6], [2, 3]);
      expect(Array.from(await (await reduce(x, 'max')).read())).toEqual([Number.NaN, 6]);
      expect(Array.from(await (await reduce(x, 'min')).read())).toEqual([Number.NaN, 4]);
      const empty = backend.tensor([], [2, 0]);
      expect(Array.from(await (await reduce(empty, 'sum')).read())).toEqual([0, 0]);
      expect(Array.from(await (await reduce(empty, 'max')).read())).toEqual([-Infinity, -Infinity]);
      expect(Array.from(await (await reduce(empty, 'mean')).read())).toEqual([Number.NaN, Number.NaN]);
    });
  });
});

describe('Gather', () => {
  for (const dtype of ['i32', 'u32'] as const) {
    it(`${dtype} ids, with out-of-range ids giving zero rows`, async () => {
      const seed = freshSeed();
      const rand = rng(seed);
      await noLeaks(backend, async () => {
        const rows = 50;
        const rowSize = 37;
        const table = { shape: [rows, rowSize], data: uniform(rand, rows * rowSize) };
        const ids = Array.from({ length: 24 }, () => Math.floor(rand() * rows));
        ids[3] = rows; // one past the end
        ids[7] = rows + 1000;
        if (dtype === 'i32') ids[11] = -1;
        const idShape = [4, 6];
        const out = await gather(
          backend.tensor(table.data, table.shape),
          backend.tensor(ids, idShape, dtype),
        );
        const ref = gatherRef(table, { shape: idShape, data: ids });
        expect(out.shape).toEqual([4, 6, rowSize]);
        expect(
          compareToReference(await out.read(), ref.data, undefined, { atol: 0 }).pass,
          `seed ${seed}`,
        ).toBe(true);
      });
    });
  }
});

describe('RmsNorm and LayerNorm', () => {
  const shapes = [
    [6, 300],
    [3, 5, 40],
    [4, 1],
    [2, 1031],
  ];
  for (const shape of shapes) {
    it(`rmsNorm [${shape}]`, async () => {
      const seed = freshSeed();
      const rand = rng(seed);
      await noLeaks(backend, async () => {
        const cols = shape[shape.length - 1]!;
        const hx = { shape, data: uniform(rand, size(shape), -3, 3) };
        const hw = { shape: [cols], data: uniform(rand, cols, 0.5, 1.5) };
        const out = await rmsNorm(backend.tensor(hx.data, shape), backend.tensor(hw.data, [cols]), {
          eps: 1e-5,
        });
        const ref64 = rmsNormRef(hx, hw, 1e-5);
        const ref32 = rmsNormRef(hx, hw, 1e-5, { precision: 'f32' });
        expectClose(compareToReference(await out.read(), ref64.data, ref32.data), 'rmsNorm', seed);
      });
    });
    it(`layerNorm [${shape}]`, async () => {
      const seed = freshSeed();
      const rand = rng(seed);
      await noLeaks(backend, async () => {
        const cols = shape[shape.length - 1]!;
        // An offset mean makes the one-pass variance formula fail; the kernel must not use it.
        const hx = { shape, data: uniform(rand, size(shape), 4, 6) };
        const hw = { shape: [cols], data: uniform(rand, cols, 0.5, 1.5) };
        const hb = { shape: [cols], data: uniform(rand, cols) };
        const out = await layerNorm(
          backend.tensor(hx.data, shape),
          backend.tensor(hw.data, [cols]),
          backend.tensor(hb.data, [cols]),
          { eps: 1e-5 },
        );
        const ref64 = layerNormRef(hx, hw, hb, 1e-5);
        const ref32 = layerNormRef(hx, hw, hb, 1e-5, { precision: 'f32' });
        expectClose(compareToReference(await out.read(), ref64.data, ref32.data), 'layerNorm', seed);
      });
    });
  }
});
