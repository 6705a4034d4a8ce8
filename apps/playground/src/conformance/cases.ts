/**
 * The browser conformance cases: the primitive ops and softmax against their float64
 * references by the test rule, mirroring packages/test-harness/test/primitives.test.ts and
 * packages/softmax/test/softmax.test.ts (shapes, input ranges, tolerances). Vitest does not
 * run in the page, so each case is a plain async function that either returns its
 * comparisons or throws; the runner (runner.ts) turns both into a result row.
 */
import {
  BINARY_OPS,
  type Backend,
  type Comparison,
  REDUCE_OPS,
  type Tensor,
  UNARY_OPS,
  binary,
  binaryRef,
  compareToReference,
  gather,
  gatherRef,
  layerNorm,
  layerNormRef,
  matmul,
  matmulRef,
  reduce,
  reduceRef,
  reduceRefF32Worst,
  rmsNorm,
  rmsNormRef,
  unary,
  unaryRef,
} from '@longseq/backend';
import { type SoftmaxAlgorithm, softmax, softmaxRef, softmaxWithLse } from '@longseq/softmax';
import { type Rng, randomFloats, randomInt, randomInts } from '@longseq/test-harness/random';

/** One comparison inside a case, labelled (a case may check an output and its lse). */
export interface Check extends Comparison {
  readonly label: string;
}

export interface ConformanceCase {
  readonly name: string;
  /**
   * Runs inside a scope (tensors it creates are disposed after it). Returns its comparisons;
   * a broken expectation that is not a tolerance (a shape, an exact value) throws.
   */
  run(backend: Backend, random: Rng): Promise<Check[]>;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const fmtShape = (shape: readonly number[]) => `[${shape.join(',')}]`;

/** Throws unless the condition holds; the message becomes the case's reason. */
function expectThat(cond: boolean, message: string): void {
  if (!cond) throw new Error(message);
}

function expectShape(t: Tensor, shape: readonly number[], what = 'output'): void {
  expectThat(
    fmtShape(t.shape) === fmtShape(shape),
    `${what} shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`,
  );
}

function check(
  label: string,
  actual: ArrayLike<number>,
  ref64: ArrayLike<number>,
  ref32: ArrayLike<number>,
  atol?: number,
): Check {
  const c = compareToReference(actual, ref64, ref32, atol === undefined ? {} : { atol });
  const where =
    !c.pass && c.worstIndex >= 0 ? ` (actual ${actual[c.worstIndex]}, expected ${ref64[c.worstIndex]})` : '';
  return { ...c, label, ...(c.reason ? { reason: `${c.reason}${where}` } : {}) };
}

/** Exact equality (gather copies values; nothing to round). */
function exact(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>): Check {
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      return {
        label,
        pass: false,
        maxError: Math.abs(actual[i]! - expected[i]!),
        baselineError: 0,
        allowed: 0,
        worstIndex: i,
        reason: `index ${i}: got ${actual[i]}, expected exactly ${expected[i]}`,
      };
    }
  }
  const pass = actual.length === expected.length;
  return {
    label,
    pass,
    maxError: pass ? 0 : Number.POSITIVE_INFINITY,
    baselineError: 0,
    allowed: 0,
    worstIndex: -1,
    ...(pass ? {} : { reason: `length ${actual.length} != ${expected.length}` }),
  };
}

function matmulCases(): ConformanceCase[] {
  const shapes: [number[], number[], boolean, boolean][] = [
    [[1, 1], [1, 1], false, false],
    [[17, 33], [33, 9], false, false],
    [[3, 5, 19], [3, 19, 7], false, false],
    [[2, 3, 13, 6], [6, 11], false, false],
    [[4, 21, 10], [4, 15, 21], true, true],
    [[2, 8, 5], [2, 8, 3], true, false],
    [[65, 31], [40, 31], false, true],
  ];
  const cases: ConformanceCase[] = shapes.map(([sa, sb, transposeA, transposeB]) => ({
    name: `matmul ${fmtShape(sa)}${transposeA ? 'ᵀ' : ''} x ${fmtShape(sb)}${transposeB ? 'ᵀ' : ''}`,
    async run(backend, random) {
      const a = { shape: sa, data: randomFloats(size(sa), random) };
      const b = { shape: sb, data: randomFloats(size(sb), random) };
      const y = await matmul(backend.tensor(a.data, sa), backend.tensor(b.data, sb), {
        transposeA,
        transposeB,
      });
      const ref = matmulRef(a, b, { transposeA, transposeB });
      expectShape(y, ref.shape);
      const ref32 = matmulRef(a, b, { transposeA, transposeB, precision: 'f32' });
      return [check('matmul', await y.read(), ref.data, ref32.data, 1e-5)];
    },
  }));
  cases.push({
    name: 'matmul empty batch [0,4,3] x [3,2]',
    async run(backend, random) {
      const y = await matmul(backend.tensor([], [0, 4, 3]), backend.tensor(randomFloats(6, random), [3, 2]));
      expectShape(y, [0, 4, 2]);
      return [exact('empty', await y.read(), [])];
    },
  });
  return cases;
}

function unaryCases(): ConformanceCase[] {
  return UNARY_OPS.map((op) => ({
    name: `unary ${op}`,
    async run(backend, random) {
      const shape = [3, randomInt(random, 5, 70)];
      const positive = op === 'log' || op === 'sqrt' || op === 'rsqrt';
      const data = randomFloats(size(shape), random, positive ? 0.05 : -6, 6);
      const y = await unary(backend.tensor(data, shape), op);
      expectShape(y, shape);
      const ref = unaryRef({ shape, data }, op);
      const ref32 = unaryRef({ shape, data }, op, { precision: 'f32' });
      return [check(`unary ${op} ${fmtShape(shape)}`, await y.read(), ref.data, ref32.data, 2e-6 * 6)];
    },
  }));
}

function binaryCases(): ConformanceCase[] {
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
  const cases: ConformanceCase[] = [];
  for (const op of BINARY_OPS) {
    for (const [sa, sb] of pairs) {
      cases.push({
        name: `binary ${op} ${fmtShape(sa)} ${fmtShape(sb)}`,
        async run(backend, random) {
          // pow: positive bases in [0.25, 4], exponents in [-2, 2] (|b ln a| <= 2.8), as in Node.
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
          const y = await binary(backend.tensor(a.data, sa), backend.tensor(b.data, sb), op);
          const ref = binaryRef(a, b, op);
          expectShape(y, ref.shape);
          const ref32 = binaryRef(a, b, op, { precision: 'f32' });
          return [check(`binary ${op}`, await y.read(), ref.data, ref32.data, 1e-5)];
        },
      });
    }
  }
  return cases;
}

function reduceCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const op of REDUCE_OPS) {
    for (const axis of [0, 1, 2, -1]) {
      cases.push({
        name: `reduce ${op} axis ${axis}`,
        async run(backend, random) {
          const shape = [3, randomInt(random, 2, 40), 5];
          const raw = randomFloats(size(shape), random, -2, 2);
          const data = op === 'prod' ? raw.map((v) => 0.5 + v / 4) : raw;
          const keepDims = axis === 1;
          const y = await reduce(backend.tensor(data, shape), op, { axis, keepDims });
          const host = { shape, data };
          const ref = reduceRef(host, op, { axis, keepDims });
          expectShape(y, ref.shape);
          const ref32 = reduceRefF32Worst(host, op, { axis });
          return [
            check(`reduce ${op} ${fmtShape(shape)} axis ${axis}`, await y.read(), ref.data, ref32.data, 1e-5),
          ];
        },
      });
    }
  }
  return cases;
}

function gatherCase(): ConformanceCase {
  return {
    name: 'gather with out-of-range ids (zero rows)',
    async run(backend, random) {
      const [rows, rowSize] = [randomInt(random, 3, 50), randomInt(random, 1, 33)];
      const table = { shape: [rows, rowSize], data: randomFloats(rows * rowSize, random) };
      const ids = randomInts(12, random, 0, rows);
      ids[5] = rows + 3;
      ids[7] = -1;
      const y = await gather(backend.tensor(table.data, table.shape), backend.tensor(ids, [3, 4], 'i32'));
      expectShape(y, [3, 4, rowSize]);
      const ref = gatherRef(table, { shape: [3, 4], data: ids });
      return [exact(`gather [${rows},${rowSize}]`, await y.read(), Array.from(ref.data, Math.fround))];
    },
  };
}

function normCases(): ConformanceCase[] {
  const shapes = [
    [1, 1],
    [4, 33],
    [2, 3, 300],
  ];
  const draw = (shape: number[], random: Rng) => {
    const cols = shape[shape.length - 1]!;
    return {
      cols,
      x: { shape, data: randomFloats(size(shape), random, -3, 3) },
      w: { shape: [cols], data: randomFloats(cols, random, 0.5, 1.5) },
      bias: { shape: [cols], data: randomFloats(cols, random, -1, 1) },
    };
  };
  return shapes.flatMap((shape): ConformanceCase[] => [
    {
      name: `rmsNorm ${fmtShape(shape)}`,
      async run(backend, random) {
        const { cols, x, w } = draw(shape, random);
        const y = await rmsNorm(backend.tensor(x.data, shape), backend.tensor(w.data, [cols]), { eps: 1e-6 });
        expectShape(y, shape);
        return [
          check(
            'rmsNorm',
            await y.read(),
            rmsNormRef(x, w, 1e-6).data,
            rmsNormRef(x, w, 1e-6, { precision: 'f32' }).data,
            1e-5,
          ),
        ];
      },
    },
    {
      name: `layerNorm ${fmtShape(shape)}`,
      async run(backend, random) {
        const { cols, x, w, bias } = draw(shape, random);
        const y = await layerNorm(
          backend.tensor(x.data, shape),
          backend.tensor(w.data, [cols]),
          backend.tensor(bias.data, [cols]),
        );
        expectShape(y, shape);
        return [
          check(
            'layerNorm',
            await y.read(),
            layerNormRef(x, w, bias).data,
            layerNormRef(x, w, bias, 1e-5, { precision: 'f32' }).data,
            1e-5,
          ),
        ];
      },
    },
  ]);
}

function softmaxCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const shapes = [
    [1, 1],
    [4, 7],
    [3, 100],
    [2, 3, 33],
  ];
  for (const algorithm of ['online', 'safe'] as const satisfies readonly SoftmaxAlgorithm[]) {
    for (const shape of shapes) {
      cases.push({
        name: `softmax ${algorithm} ${fmtShape(shape)}`,
        async run(backend, random) {
          const data = randomFloats(size(shape), random, -8, 8);
          const { output, lse } = await softmaxWithLse(backend.tensor(data, shape), { algorithm });
          expectShape(output, shape);
          expectShape(lse, shape.slice(0, -1), 'lse');
          const ref = softmaxRef({ shape, data }, { algorithm: 'safe' });
          const ref32 = softmaxRef({ shape, data }, { algorithm, precision: 'f32' });
          return [
            check('output', await output.read(), ref.output.data, ref32.output.data),
            check('lse', await lse.read(), ref.lse.data, ref32.lse.data, 1e-5),
          ];
        },
      });
    }
    cases.push({
      name: `softmax ${algorithm} with -Infinity mask, temperature, a fully masked row`,
      async run(backend, random) {
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
        const mask = backend.tensor(maskData, [q, n]);
        const { output, lse } = await softmaxWithLse(backend.tensor(data, [b, q, n]), {
          algorithm,
          mask,
          temperature,
        });
        const host = { shape: [b, q, n], data };
        const hostMask = { shape: [q, n], data: maskData };
        const ref = softmaxRef(host, { mask: hostMask, temperature });
        const ref32 = softmaxRef(host, { algorithm, mask: hostMask, temperature, precision: 'f32' });
        const out = await output.read();
        const lseHost = await lse.read();
        for (let batch = 0; batch < b; batch++) {
          const l = lseHost[batch * q + 2];
          expectThat(
            l === Number.NEGATIVE_INFINITY,
            `fully masked row ${batch * q + 2}: lse ${l}, expected -Infinity`,
          );
          for (let j = 0; j < n; j++) {
            const v = out[(batch * q + 2) * n + j];
            expectThat(v === 0, `fully masked row ${batch * q + 2}: p[${j}] = ${v}, expected 0`);
          }
        }
        return [
          check(
            `output [${b},${q},${n}] T=${temperature.toFixed(3)}`,
            out,
            ref.output.data,
            ref32.output.data,
          ),
          check('lse', lseHost, ref.lse.data, ref32.lse.data, 1e-5),
        ];
      },
    });
  }
  cases.push({
    name: 'softmax of one element (N = 1) is 1',
    async run(backend, random) {
      const y = await softmax(backend.tensor([randomFloats(1, random, -5, 5)[0]!, 3], [2, 1]));
      expectShape(y, [2, 1]);
      return [exact('N=1', await y.read(), [1, 1])];
    },
  });
  return cases;
}

/** Every case, in run order. */
export function allCases(): ConformanceCase[] {
  return [
    ...matmulCases(),
    ...unaryCases(),
    ...binaryCases(),
    ...reduceCases(),
    gatherCase(),
    ...normCases(),
    ...softmaxCases(),
  ];
}
