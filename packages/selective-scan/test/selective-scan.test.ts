import { maxAbsDiff } from '@longseq/backend';
import { caseSeed, describeEachBackend, expectClose, freshSeed, rng } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { type ScanAlgorithm, selectiveScan } from '../src';
import { describeCase, randomProblem, references, type ScanCase, scanOptions, upload } from './cases';

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

    it(`${algorithm}: L a multiple of 4 (the vec4 path) with every layout and option`, async () => {
      const seed = freshSeed();
      const all = {
        D: true,
        z: true,
        deltaBias: true,
        deltaSoftplus: true,
        initialState: true,
        returnLastState: true,
      };
      await check(ctx.backend, { batch: 2, d: 5, L: 64, n: 4, ...all }, algorithm, seed);
      // n past the unrolled range: the state loop stays a loop.
      await check(ctx.backend, { batch: 1, d: 3, L: 16, n: 40, ...all }, algorithm, seed);
      await check(
        ctx.backend,
        { batch: 1, d: 8, L: 4, n: 3, bLayout: 'grouped', cLayout: 'invariant', groups: 2, ...all },
        algorithm,
        seed,
      );
      await check(
        ctx.backend,
        { batch: 1, d: 8, L: 12, n: 2, bLayout: 'invariant', cLayout: 'grouped', groups: 4 },
        algorithm,
        seed,
      );
    });

    it(`${algorithm}: several parallel chunks (L past the chunk length, not a multiple of it)`, async () => {
      const seed = freshSeed();
      await check(
        ctx.backend,
        { batch: 1, d: 3, L: 601, n: 4, D: true, z: true, initialState: true, returnLastState: true },
        algorithm,
        seed,
      );
      await check(
        ctx.backend,
        { batch: 2, d: 2, L: 520, n: 2, deltaBias: true, deltaSoftplus: true },
        algorithm,
        seed,
      );
    });

    it(`${algorithm}: long L = 4096 for a few channels, n = 16`, async () => {
      const seed = freshSeed();
      await check(
        ctx.backend,
        {
          batch: 1,
          d: 2,
          L: 4096,
          n: 16,
          D: true,
          z: true,
          deltaBias: true,
          deltaSoftplus: true,
          returnLastState: true,
        },
        algorithm,
        seed,
      );
    });
  }

  it('parallel and sequential agree with each other', async () => {
    const seed = freshSeed();
    const c: ScanCase = {
      batch: 2,
      d: 5,
      L: 300,
      n: 6,
      D: true,
      z: true,
      deltaBias: true,
      deltaSoftplus: true,
      initialState: true,
      returnLastState: true,
    };
    const p = randomProblem(c, rng(seed));
    const { ref64, ref32 } = references(c, p);
    const t = upload(ctx.backend, p);
    try {
      const seq = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOptions(c, t, 'sequential'));
      const par = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOptions(c, t, 'parallel'));
      const [ys, yp, hs, hp] = await Promise.all([
        seq.y.read(),
        par.y.read(),
        seq.lastState!.read(),
        par.lastState!.read(),
      ]);
      for (const x of [seq.y, par.y, seq.lastState, par.lastState]) x?.dispose();
      // Each is within the test rule of the reference, so they are within twice that of each other.
      const yRule = expectClose(yp, ref64.y.data, ref32.y.data, { label: 'parallel y', seed });
      expectClose(ys, ref64.y.data, ref32.y.data, { label: 'sequential y', seed });
      expect(maxAbsDiff(ys, yp)).toBeLessThanOrEqual(2 * yRule.allowed);
      const hRule = expectClose(hp, ref64.lastState!.data, ref32.lastState!.data, {
        label: 'parallel state',
        seed,
      });
      expect(maxAbsDiff(hs, hp)).toBeLessThanOrEqual(2 * hRule.allowed);
    } finally {
      t.dispose();
    }
  });

  it('parallel: subgroup scan or tree, one pass or segments in three passes, all match the reference', async () => {
    const seed = freshSeed();
    const c: ScanCase = {
      batch: 2,
      d: 5,
      L: 531,
      n: 3,
      D: true,
      z: true,
      deltaBias: true,
      deltaSoftplus: true,
      initialState: true,
      returnLastState: true,
    };
    const p = randomProblem(c, rng(seed));
    const { ref64, ref32 } = references(c, p);
    const t = upload(ctx.backend, p);
    try {
      const variants = [
        { subgroups: true, segments: 1 },
        { subgroups: false, segments: 1 },
        { subgroups: true, segments: 'auto' as const },
        { subgroups: false, segments: 2 },
      ];
      for (const { subgroups, segments } of variants) {
        const r = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
          ...scanOptions(c, t, 'parallel'),
          subgroups,
          segments,
        });
        const [y, h] = [await r.y.read(), await r.lastState!.read()];
        r.y.dispose();
        r.lastState!.dispose();
        expectClose(y, ref64.y.data, ref32.y.data, {
          label: `subgroups ${subgroups} segments ${segments} y`,
          seed,
        });
        expectClose(h, ref64.lastState!.data, ref32.lastState!.data, {
          label: `subgroups ${subgroups} state`,
          seed,
        });
      }
    } finally {
      t.dispose();
    }
  });

  it('sequential: states split over quads (subgroups) and one thread per channel both match the reference', async () => {
    const seed = freshSeed();
    const all = {
      D: true,
      z: true,
      deltaBias: true,
      deltaSoftplus: true,
      initialState: true,
      returnLastState: true,
    };
    const cases: ScanCase[] = [
      { batch: 3, d: 11, L: 36, n: 8, ...all },
      // L a multiple of 32: the quad kernel's coalesced 32-step blocks (three blocks).
      { batch: 2, d: 5, L: 96, n: 12, ...all },
      { batch: 1, d: 6, L: 20, n: 13, bLayout: 'grouped', cLayout: 'invariant', groups: 3, ...all },
      { batch: 2, d: 4, L: 8, n: 16, bLayout: 'invariant', cLayout: 'grouped', groups: 2 },
    ];
    for (const c of cases) {
      const p = randomProblem(c, rng(caseSeed(seed, describeCase(c))));
      const { ref64, ref32 } = references(c, p);
      const t = upload(ctx.backend, p);
      try {
        for (const subgroups of [true, false]) {
          const r = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
            ...scanOptions(c, t, 'sequential'),
            subgroups,
          });
          const y = await r.y.read();
          const h = r.lastState ? await r.lastState.read() : undefined;
          r.y.dispose();
          r.lastState?.dispose();
          const label = `subgroups ${subgroups} ${describeCase(c)}`;
          expectClose(y, ref64.y.data, ref32.y.data, { label, seed });
          if (h)
            expectClose(h, ref64.lastState!.data, ref32.lastState!.data, { label: `${label} state`, seed });
        }
      } finally {
        t.dispose();
      }
    }
  });

  it("'auto' matches the reference for a decode step (L = 1) and a prompt", async () => {
    const seed = freshSeed();
    await check(
      ctx.backend,
      { batch: 3, d: 4, L: 1, n: 8, D: true, z: true, initialState: true, returnLastState: true },
      'auto',
      seed,
    );
    await check(
      ctx.backend,
      { batch: 1, d: 4, L: 77, n: 8, D: true, z: true, deltaSoftplus: true, deltaBias: true },
      'auto',
      seed,
    );
  });

  it('an empty batch returns empty tensors', async () => {
    const c: ScanCase = { batch: 0, d: 3, L: 5, n: 2, returnLastState: true };
    const t = upload(ctx.backend, randomProblem(c, rng(freshSeed())));
    const { y, lastState } = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, { returnLastState: true });
    expect(y.shape).toEqual([0, 3, 5]);
    expect(lastState.shape).toEqual([0, 3, 2]);
    y.dispose();
    lastState.dispose();
    t.dispose();
  });

  it('decoding step by step through lastState equals one scan over the sequence', async () => {
    const seed = freshSeed();
    const c: ScanCase = {
      batch: 2,
      d: 3,
      L: 6,
      n: 4,
      D: true,
      z: true,
      deltaBias: true,
      deltaSoftplus: true,
      returnLastState: true,
    };
    const p = randomProblem(c, rng(seed));
    const { ref64, ref32 } = references(c, p);
    const t = upload(ctx.backend, p);
    // Step s of a [x, y, L] host tensor, as a [x, y, 1] tensor.
    const column = (h: { shape: readonly number[]; data: ArrayLike<number> }, s: number) => {
      const [x, y] = h.shape as [number, number];
      const out = new Float32Array(x * y);
      for (let i = 0; i < x * y; i++) out[i] = h.data[i * c.L + s]!;
      return ctx.backend.tensor(out, [x, y, 1]);
    };
    const y = new Float32Array(c.batch * c.d * c.L);
    let state = ctx.backend.tensor(new Float32Array(c.batch * c.d * c.n), [c.batch, c.d, c.n]);
    for (let s = 0; s < c.L; s++) {
      const [us, ds, bs, cs, zs] = [p.u, p.delta, p.B, p.C, p.z!].map((h) => column(h, s));
      const r = await selectiveScan(us!, ds!, t.A, bs!, cs!, {
        D: t.D,
        z: zs,
        deltaBias: t.deltaBias,
        deltaSoftplus: true,
        initialState: state,
        returnLastState: true,
      });
      const ys = await r.y.read();
      for (let i = 0; i < c.batch * c.d; i++) y[i * c.L + s] = ys[i]!;
      state.dispose();
      state = r.lastState;
      for (const x of [r.y, us, ds, bs, cs, zs]) x!.dispose();
    }
    expectClose(y, ref64.y.data, ref32.y.data, { label: 'stepwise y', seed });
    expectClose(await state.read(), ref64.lastState!.data, ref32.lastState!.data, {
      label: 'stepwise state',
      seed,
    });
    state.dispose();
    t.dispose();
  });
});
