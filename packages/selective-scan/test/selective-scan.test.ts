import { caseSeed, describeEachBackend, expectClose, freshSeed, rng } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { type ScanAlgorithm, selectiveScan } from '../src';
import { type ScanCase, describeCase, randomProblem, references, scanOptions, upload } from './cases';

const ALGORITHMS: ('sequential' | 'parallel')[] = ['sequential', 'parallel'];

/** Runs one case with one algorithm and checks y (and the last state) by the test rule. */
async function check(
  backend: Parameters<typeof upload>[0],
  c: ScanCase,
  algorithm: ScanAlgorithm,
  seed: number,
): Promise<void> {
  const random = rng(caseSeed(seed, describeCase(c)));
  const p = randomProblem(c, random);
  const { ref64, ref32 } = references(c, p);
  const t = upload(backend, p);
  try {
    const result = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOptions(c, t, algorithm));
    try {
      expect(result.y.shape).toEqual([c.batch, c.d, c.L]);
      const label = `${algorithm} ${describeCase(c)}`;
      expectClose(await result.y.read(), ref64.y.data, ref32.y.data, { label, seed });
      if (c.returnLastState) {
        expect(result.lastState!.shape).toEqual([c.batch, c.d, c.n]);
        expectClose(await result.lastState!.read(), ref64.lastState!.data, ref32.lastState!.data, {
          label: `${label} lastState`,
          seed,
        });
      } else {
        expect(result.lastState).toBeUndefined();
      }
    } finally {
      result.y.dispose();
      result.lastState?.dispose();
    }
  } finally {
    t.dispose();
  }
}

describeEachBackend('selectiveScan', (ctx) => {
  for (const algorithm of ALGORITHMS) {
    it(`${algorithm}: plain scan, odd L, d not a multiple of 4`, async () => {
      const seed = freshSeed();
      await check(ctx.backend, { batch: 2, d: 5, L: 37, n: 4 }, algorithm, seed);
    });

    it(`${algorithm}: L = 1 and L = 2`, async () => {
      const seed = freshSeed();
      await check(
        ctx.backend,
        { batch: 1, d: 3, L: 1, n: 3, D: true, returnLastState: true },
        algorithm,
        seed,
      );
      await check(ctx.backend, { batch: 2, d: 4, L: 2, n: 2, initialState: true }, algorithm, seed);
    });

    it(`${algorithm}: every option at once (D, z, deltaBias + softplus, initialState, last state)`, async () => {
      const seed = freshSeed();
      await check(
        ctx.backend,
        {
          batch: 2,
          d: 6,
          L: 45,
          n: 5,
          D: true,
          z: true,
          deltaBias: true,
          deltaSoftplus: true,
          initialState: true,
          returnLastState: true,
        },
        algorithm,
        seed,
      );
    });

    it(`${algorithm}: B and C layouts (shared, grouped, time-invariant, mixed)`, async () => {
      const seed = freshSeed();
      const base = { batch: 2, d: 6, L: 19, n: 3, D: true, returnLastState: true };
      await check(
        ctx.backend,
        { ...base, bLayout: 'grouped', cLayout: 'grouped', groups: 3 },
        algorithm,
        seed,
      );
      await check(
        ctx.backend,
        { ...base, bLayout: 'grouped', cLayout: 'grouped', groups: 2 },
        algorithm,
        seed,
      );
      await check(ctx.backend, { ...base, bLayout: 'invariant', cLayout: 'invariant' }, algorithm, seed);
      await check(ctx.backend, { ...base, bLayout: 'invariant', cLayout: 'shared' }, algorithm, seed);
      await check(
        ctx.backend,
        { ...base, bLayout: 'shared', cLayout: 'grouped', groups: 6 },
        algorithm,
        seed,
      );
    });
  }
});
