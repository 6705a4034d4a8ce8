import { describeEachBackend, expectClose, freshSeed, rng } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { exp2IsAccurate, FAST_EXP_TOLERANCE, measureFastExpError, selectiveScan } from '../src';
import { randomProblem, references, scanOptions, upload } from './cases';

describeEachBackend('the fast exp probe', (ctx) => {
  it('measures the fast e^(dt a) and picks it only within FAST_EXP_TOLERANCE', async () => {
    if (ctx.backend.kind !== 'webgpu') return;
    const error = await measureFastExpError(ctx.backend);
    console.log(`fast exp max relative error on ${ctx.name}: ${error}`);
    expect(error).toBeLessThan(1e-5);
    expect(await exp2IsAccurate(ctx.backend)).toBe(error <= FAST_EXP_TOLERANCE);
  });
});

describeEachBackend('the fast exp path', (ctx) => {
  it("exp: 'fast' runs both kernels within the device's exp2 error of the reference", async () => {
    if (ctx.backend.kind !== 'webgpu') return;
    const seed = freshSeed();
    const c = {
      batch: 1,
      d: 5,
      L: 132,
      n: 8,
      D: true,
      z: true,
      deltaBias: true,
      deltaSoftplus: true,
      returnLastState: true,
    };
    const p = randomProblem(c, rng(seed));
    const { ref64, ref32 } = references(c, p);
    // The fast path's only extra error is exp2's: each step's dA is off by at most the
    // probed relative error, which compounds over the steps of the sequence.
    const expError = await measureFastExpError(ctx.backend);
    let scale = 0;
    for (const v of ref64.y.data) scale = Math.max(scale, Math.abs(v));
    const t = upload(ctx.backend, p);
    try {
      for (const algorithm of ['sequential', 'parallel'] as const) {
        const r = await selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
          ...scanOptions(c, t, algorithm),
          exp: 'fast',
        });
        const y = await r.y.read();
        r.y.dispose();
        r.lastState?.dispose();
        expectClose(y, ref64.y.data, ref32.y.data, {
          label: `fast ${algorithm}`,
          seed,
          atol: 1e-6 + expError * c.L * scale,
        });
      }
    } finally {
      t.dispose();
    }
  });
});
