/**
 * Every primitive against its float64 reference on every mode Node has, with the test rule
 * of DESIGN.md (max error <= 2x a plain float32 computation + 1e-6). Fresh random data per
 * run; odd shapes, N = 1, zero-size, broadcasting, transposes, loops longer than gpu.js'
 * default loopMaxIterations (1000); every test ends with memory() back where it started.
 */
import {
  BINARY_OPS,
  type HostTensor,
  REDUCE_OPS,
  type RefResult,
  type Tensor,
  UNARY_OPS,
  type UnaryOp,
  binary,
  binaryRef,
  gather,
  gatherRef,
  layerNorm,
  layerNormRef,
  matmul,
  matmulRef,
  reduce,
  reduceRef,
  rmsNorm,
  rmsNormRef,
  scope,
  unary,
  unaryRef,
} from '@longseq/backend';
import { afterAll, describe, expect, it } from 'vitest';
import type { GpuJsBackend } from '../src';
import { log1pAcc } from '../src/kernels/math';
import { NODE_MODES, backendFor, disposeAll, expectClose, random, randomInts } from './helpers';

afterAll(disposeAll);

function host(data: ArrayLike<number>, shape: readonly number[]): HostTensor {
  return { data, shape };
}

/** Runs `fn` in a scope and checks nothing it made outlives it. */
async function leakFree(backend: GpuJsBackend, fn: () => Promise<void>): Promise<void> {
  const before = backend.memory();
  await scope(fn);
  const after = backend.memory();
  expect({ tensors: after.tensors, bytes: after.bytes }).toEqual({
    tensors: before.tensors,
    bytes: before.bytes,
  });
}

async function check(
  what: string,
  t: Tensor,
  ref64: RefResult,
  ref32: RefResult,
  options?: { factor?: number; atol?: number },
): Promise<void> {
  expect(t.shape).toEqual(ref64.shape);
  expectClose(what, await t.read(), ref64.data, ref32.data, options);
}

/**
 * The one exception to the plain rule: pow on webgpu. WGSL defines pow(x, y) as
 * exp2(y * log2(x)), whose error grows with |y * log2(x)| (exp2 is specified to 3 + 2|x|
 * ulp), and Dawn on SwiftShader lands 2-4 ulp off where JS's ** is correctly rounded.
 * Matching it would need a double-f32 log in the kernel. So on webgpu the absolute floor
 * is 8 ulp of the largest result; every other mode keeps the plain rule.
 */
function powTolerance(mode: string, ref: RefResult): { atol: number } {
  let maxAbs = 0;
  for (const v of ref.data) if (Number.isFinite(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
  return { atol: 1e-6 + (mode === 'webgpu' ? 8 * maxAbs * 2 ** -23 : 0) };
}

/** Inputs each unary op is defined on, wide enough to reach its awkward regions. */
function unaryInput(op: UnaryOp, n: number): Float32Array {
  if (op === 'log' || op === 'sqrt' || op === 'rsqrt' || op === 'reciprocal') return random(n, 0.05, 4);
  if (op === 'exp') return random(n, -4, 4);
  if (op === 'softplus' || op === 'sigmoid' || op === 'silu' || op === 'tanh' || op === 'gelu') {
    const x = random(n, -12, 12);
    // tiny magnitudes, where log1p and tanh lose digits when written naively
    for (let i = 0; i < n; i += 5) x[i] = x[i]! * 1e-6;
    return x;
  }
  return random(n);
}

describe.each(NODE_MODES)('primitives on gpujs-%s', (mode) => {
  describe('matmul', () => {
    const cases: { name: string; a: number[]; b: number[]; tA?: boolean; tB?: boolean }[] = [
      { name: 'odd batched', a: [3, 5, 7], b: [3, 7, 4] },
      { name: 'N = 1', a: [1, 1], b: [1, 1] },
      { name: 'transposeA', a: [2, 7, 5], b: [2, 7, 3], tA: true },
      { name: 'transposeB', a: [2, 5, 7], b: [2, 3, 7], tB: true },
      { name: 'both transposed', a: [7, 5], b: [3, 7], tA: true, tB: true },
      { name: 'shared weight (broadcast batch)', a: [2, 3, 4, 5], b: [5, 6] },
      { name: 'broadcast a', a: [1, 4, 3], b: [3, 3, 2] },
      { name: 'K longer than 1000', a: [2, 1203], b: [1203, 3] },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const ha = host(random(c.a.reduce((x, y) => x * y, 1)), c.a);
          const hb = host(random(c.b.reduce((x, y) => x * y, 1)), c.b);
          const opts = { transposeA: c.tA ?? false, transposeB: c.tB ?? false };
          const out = await matmul(be.tensor(ha.data, c.a), be.tensor(hb.data, c.b), opts);
          await check(
            `matmul ${c.name}`,
            out,
            matmulRef(ha, hb, opts),
            matmulRef(ha, hb, { ...opts, precision: 'f32' }),
          );
        });
      });
    }
    it('zero-size: M = 0 gives an empty output, K = 0 gives zeros', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const empty = await matmul(be.tensor([], [0, 4]), be.tensor(random(12), [4, 3]));
        expect(empty.shape).toEqual([0, 3]);
        expect((await empty.read()).length).toBe(0);
        const zeros = await matmul(be.tensor([], [2, 0]), be.tensor([], [0, 3]));
        expect(Array.from(await zeros.read())).toEqual([0, 0, 0, 0, 0, 0]);
      });
    });
  });

  describe('unary', () => {
    for (const op of UNARY_OPS) {
      it(op, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const shape = [3, 37];
          const hx = host(unaryInput(op, 111), shape);
          const out = await unary(be.tensor(hx.data, shape), op);
          await check(`unary ${op}`, out, unaryRef(hx, op), unaryRef(hx, op, { precision: 'f32' }));
        });
      });
    }
    it('N = 1 and zero-size', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const hx = host(random(1), [1]);
        await check(
          'unary N=1',
          await unary(be.tensor(hx.data, [1]), 'gelu'),
          unaryRef(hx, 'gelu'),
          unaryRef(hx, 'gelu', { precision: 'f32' }),
        );
        const empty = await unary(be.tensor([], [0, 5]), 'exp');
        expect(empty.shape).toEqual([0, 5]);
        expect((await empty.read()).length).toBe(0);
      });
    });
  });

  describe('binary', () => {
    for (const op of BINARY_OPS) {
      it(`${op} with broadcasting`, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const sa = [4, 1, 5];
          const sb = [3, 1];
          const ha = host(op === 'pow' ? random(20, 0.1, 3) : random(20), sa);
          const hb = host(op === 'div' ? random(3, 0.5, 2) : random(3), sb);
          const out = await binary(be.tensor(ha.data, sa), be.tensor(hb.data, sb), op);
          const ref64 = binaryRef(ha, hb, op);
          const tol = op === 'pow' ? powTolerance(mode, ref64) : undefined;
          await check(`binary ${op}`, out, ref64, binaryRef(ha, hb, op, { precision: 'f32' }), tol);
        });
      });
    }
    it('rank-6 broadcast both ways', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const sa = [2, 1, 3, 1, 2, 3];
        const sb = [1, 2, 1, 2, 2, 1];
        const ha = host(random(36), sa);
        const hb = host(random(8), sb);
        const out = await binary(be.tensor(ha.data, sa), be.tensor(hb.data, sb), 'sub');
        await check(
          'binary rank 6',
          out,
          binaryRef(ha, hb, 'sub'),
          binaryRef(ha, hb, 'sub', { precision: 'f32' }),
        );
      });
    });
    it('pow of a negative base follows JS (** with integer exponents, NaN otherwise)', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const a = random(8, -3, -0.2);
        const ha = host(a, [8]);
        const hb = host([2, 3, -1, 0, 5, 0.5, -2, 1.5], [8]);
        const out = await binary(be.tensor(ha.data, [8]), be.tensor(hb.data, [8]), 'pow');
        const ref64 = binaryRef(ha, hb, 'pow');
        const ref32 = binaryRef(ha, hb, 'pow', { precision: 'f32' });
        await check('pow negative base', out, ref64, ref32, powTolerance(mode, ref64));
      });
    });
    it('max and min propagate NaN', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const a = random(6);
        a[1] = Number.NaN;
        const b = random(6);
        b[4] = Number.NaN;
        for (const op of ['max', 'min'] as const) {
          const out = await binary(be.tensor(a, [6]), be.tensor(b, [6]), op);
          const got = await out.read();
          const ref = binaryRef(host(a, [6]), host(b, [6]), op);
          expect(Number.isNaN(got[1]!) && Number.isNaN(got[4]!)).toBe(true);
          await check(
            `binary ${op} NaN`,
            out,
            ref,
            binaryRef(host(a, [6]), host(b, [6]), op, { precision: 'f32' }),
          );
        }
      });
    });
    it('N = 1 and zero-size', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const ha = host(random(1), [1]);
        const hb = host(random(1), [1]);
        const one = await binary(be.tensor(ha.data, [1]), be.tensor(hb.data, [1]), 'mul');
        await check(
          'binary N=1',
          one,
          binaryRef(ha, hb, 'mul'),
          binaryRef(ha, hb, 'mul', { precision: 'f32' }),
        );
        const empty = await binary(be.tensor([], [0, 3]), be.tensor(random(3), [3]), 'add');
        expect(empty.shape).toEqual([0, 3]);
        expect((await empty.read()).length).toBe(0);
      });
    });
  });

  describe('reduce', () => {
    for (const op of REDUCE_OPS) {
      it(`${op} over each axis of an odd shape`, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const shape = [3, 4, 5];
          // prod stays near 1 so it neither underflows nor overflows
          const hx = host(op === 'prod' ? random(60, 0.6, 1.5) : random(60), shape);
          const x = be.tensor(hx.data, shape);
          for (const axis of [0, 1, 2]) {
            for (const keepDims of [false, true]) {
              const out = await reduce(x, op, { axis, keepDims });
              const o = { axis, keepDims };
              await check(
                `reduce ${op} axis ${axis}`,
                out,
                reduceRef(hx, op, o),
                reduceRef(hx, op, { ...o, precision: 'f32' }),
              );
            }
          }
        });
      });
    }
    it('a reduction longer than 1000', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const hx = host(random(2 * 1500), [2, 1500]);
        const out = await reduce(be.tensor(hx.data, [2, 1500]), 'sum');
        await check('reduce sum 1500', out, reduceRef(hx, 'sum'), reduceRef(hx, 'sum', { precision: 'f32' }));
      });
    });
    it('max and min propagate NaN', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const data = random(12);
        data[5] = Number.NaN;
        const x = be.tensor(data, [3, 4]);
        for (const op of ['max', 'min'] as const) {
          const got = Array.from(await (await reduce(x, op)).read());
          expect(Number.isNaN(got[1]!)).toBe(true);
          expect(got.filter(Number.isNaN).length).toBe(1);
        }
      });
    });
    it('an empty axis gives each op its identity (mean: NaN)', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const x = be.tensor([], [2, 0, 3]);
        for (const op of REDUCE_OPS) {
          const out = await reduce(x, op, { axis: 1 });
          const ref = reduceRef(host([], [2, 0, 3]), op, { axis: 1 });
          await check(`reduce ${op} empty axis`, out, ref, ref);
        }
      });
    });
  });

  describe('gather', () => {
    for (const dtype of ['i32', 'u32'] as const) {
      it(`${dtype} ids of shape [2, 4], some out of range`, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const table = host(random(7 * 5), [7, 5]);
          const ids = [...randomInts(5, 0, 7), 7, 100, dtype === 'i32' ? -1 : 2 ** 24];
          const out = await gather(be.tensor(table.data, [7, 5]), be.tensor(ids, [2, 4], dtype));
          const ref = gatherRef(table, host(ids, [2, 4]));
          await check(`gather ${dtype}`, out, ref, ref);
        });
      });
    }
    it('an empty table gives zero rows; no ids give an empty output', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const zeros = await gather(be.tensor([], [0, 3]), be.tensor([0, 1], [2], 'i32'));
        expect(Array.from(await zeros.read())).toEqual([0, 0, 0, 0, 0, 0]);
        const empty = await gather(be.tensor(random(6), [2, 3]), be.tensor([], [0], 'i32'));
        expect(empty.shape).toEqual([0, 3]);
      });
    });
  });

  describe('norms', () => {
    const shapes = [
      [5, 33],
      [1, 1],
      [2, 3, 7],
      [2, 1203],
    ];
    for (const shape of shapes) {
      it(`rmsNorm and layerNorm on [${shape.join(', ')}]`, async () => {
        const be = await backendFor(mode);
        await leakFree(be, async () => {
          const cols = shape[shape.length - 1]!;
          const hx = host(random(shape.reduce((a, b) => a * b, 1)), shape);
          const hw = host(random(cols), [cols]);
          const hb = host(random(cols), [cols]);
          const x = be.tensor(hx.data, shape);
          const w = be.tensor(hw.data, [cols]);
          const b = be.tensor(hb.data, [cols]);
          const eps = 1e-5;
          await check(
            'rmsNorm',
            await rmsNorm(x, w, { eps }),
            rmsNormRef(hx, hw, eps),
            rmsNormRef(hx, hw, eps, { precision: 'f32' }),
          );
          await check(
            'layerNorm',
            await layerNorm(x, w, b, { eps }),
            layerNormRef(hx, hw, hb, eps),
            layerNormRef(hx, hw, hb, eps, { precision: 'f32' }),
          );
        });
      });
    }
    it('zero rows', async () => {
      const be = await backendFor(mode);
      await leakFree(be, async () => {
        const w = be.tensor(random(8), [8]);
        const x = be.tensor([], [0, 8]);
        expect((await rmsNorm(x, w)).shape).toEqual([0, 8]);
        expect((await layerNorm(x, w, w)).shape).toEqual([0, 8]);
      });
    });
  });
});

describe.each(NODE_MODES)('math helpers on gpujs-%s', (mode) => {
  it('log1pAcc: relatively accurate on both branches (atanh series, plain log) for y > -1; NaN stays NaN', async () => {
    const be = await backendFor(mode);
    await leakFree(be, async () => {
      // the series covers y in [-1/2, 1] (small y is where the shader log near 1 fails);
      // outside it the plain log. y <= -1 is left out: it gets the shader's log of 0 or of a
      // negative number, which WGSL leaves to the implementation (SwiftShader: -88, log |x|)
      const n = 200;
      const y = new Float32Array(n);
      const u = random(n, 0, 1);
      for (let i = 0; i < n; i++) {
        const r = u[i]!;
        if (i % 4 === 0) y[i] = (r - 0.5) * 10 ** (-1 - 6 * random(1, 0, 1)[0]!);
        else if (i % 4 === 1) y[i] = -0.5 + 1.5 * r;
        else if (i % 4 === 2) y[i] = -0.999 + 0.499 * r;
        else y[i] = 1 + 1000 * r;
      }
      y[n - 1] = Number.NaN;
      const x = be.tensor(y, [n]);
      const out = be.empty([n]);
      await be.run({
        kind: 'gpujs',
        name: 'Log1pAccTest',
        cacheKey: '',
        kernel: /* js */ `function log1pAccTest(x) {
  return log1pAcc(x[this.thread.x]);
}`,
        inputs: [x],
        output: out,
        functions: [log1pAcc],
      });
      const got = await out.read();
      const ref64 = Array.from(y, (v) => Math.log1p(v));
      const ref32 = ref64.map((v) => Math.fround(v));
      // relative to |ref64|, one float32 ulp of floor: tiny y must keep its digits
      const scale = ref64.map((v) => (Number.isFinite(v) && v !== 0 ? Math.abs(v) : 1));
      const rel = (a: ArrayLike<number>) => Array.from(a, (v, i) => v / scale[i]!);
      expectClose('log1pAcc (relative)', rel(got), rel(ref64), rel(ref32), { atol: 2 ** -23 });
      x.dispose();
      out.dispose();
    });
  });
});
