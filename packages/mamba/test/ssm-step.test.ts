import { type Backend, ShapeError } from '@longseq/backend';
import {
  describeEachBackend,
  expectClose,
  expectCloseRelative,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { mambaSsmStep, ssmStepRef } from '../src';

type StepHost = Parameters<typeof ssmStepRef>[0];

/**
 * Runs one step on `backend` from host inputs and checks y and the new state against the
 * float64 reference (the state relatively, with `relativeState`); disposes what it made.
 */
async function checkStep(
  backend: Backend,
  host: StepHost,
  [batch, channels, states]: readonly [number, number, number],
  seed: number,
  relativeState = false,
): Promise<void> {
  const shapes: Record<keyof StepHost, number[]> = {
    u: [batch, channels],
    dt: [batch, channels],
    A: [channels, states],
    B: [batch, states],
    C: [batch, states],
    D: [channels],
    z: [batch, channels],
    dtBias: [channels],
    state: [batch, channels, states],
  };
  const t = Object.fromEntries(
    Object.entries(host).map(([k, v]) => [k, backend.tensor(v, shapes[k as keyof StepHost])]),
  ) as unknown as Parameters<typeof mambaSsmStep>[0];
  const { y, state } = await mambaSsmStep(t);
  const sizes = { batch, channels, states };
  const ref = ssmStepRef(host, sizes);
  const ref32 = ssmStepRef(host, sizes, { precision: 'f32' });
  const compareState = relativeState ? expectCloseRelative : expectClose;
  compareState(await state.read(), ref.state, ref32.state, { seed, label: 'state' });
  expectClose(await y.read(), ref.y, ref32.y, { seed, label: 'y' });
  for (const x of [...Object.values(t), y, state]) x.dispose();
}

describeEachBackend('mambaSsmStep', (ctx) => {
  // [batch, channels, states]: one channel, odd sizes, Mamba's N = 16, a wide state.
  const cases: [number, number, number][] = [
    [1, 1, 1],
    [2, 5, 3],
    [3, 67, 16],
    [1, 130, 64],
  ];
  for (const [batch, channels, states] of cases) {
    it(`[${batch}, ${channels}, ${states}] matches the float64 reference`, async () => {
      const seed = freshSeed();
      const random = rng(seed);
      const host = {
        u: randomFloats(batch * channels, random, -2, 2),
        // dt before the bias: some past softplus' threshold 20, most in the usual range
        dt: Float32Array.from(randomFloats(batch * channels, random, -4, 2), (v, i) =>
          i % 7 === 3 ? 21 + v : v,
        ),
        A: randomFloats(channels * states, random, -4, -0.05),
        B: randomFloats(batch * states, random, -1, 1),
        C: randomFloats(batch * states, random, -1, 1),
        D: randomFloats(channels, random, 0.5, 1.5),
        z: randomFloats(batch * channels, random, -3, 3),
        dtBias: randomFloats(channels, random, -3, 0),
        state: randomFloats(batch * channels * states, random, -2, 2),
      };
      await checkStep(ctx.backend, host, [batch, channels, states], seed);
    });
  }

  it('a small dt (dt + bias in [-16, -1]) keeps its relative accuracy in the new state', async () => {
    // softplus(x) for x in [-16, -1] is log1p of e^x in [1e-7, 0.37], where the shader `log`
    // is only absolutely accurate; Goldberg's form was 0.19 off relatively on gpujs-webgpu.
    // The state starts tiny, so the new state is dt' u B and carries dt's relative error.
    const seed = freshSeed();
    const random = rng(seed);
    const [batch, channels, states] = [2, 37, 5];
    const awayFromZero = (count: number, lo: number, hi: number) =>
      Float32Array.from(randomFloats(count, random, lo, hi), (v, i) => (i % 2 === 0 ? v : -v));
    const host = {
      u: awayFromZero(batch * channels, 0.5, 2),
      dt: randomFloats(batch * channels, random, -8, -1),
      A: randomFloats(channels * states, random, -4, -0.05),
      B: awayFromZero(batch * states, 0.5, 1.5),
      C: randomFloats(batch * states, random, -1, 1),
      D: randomFloats(channels, random, 0.5, 1.5),
      z: randomFloats(batch * channels, random, -3, 3),
      dtBias: randomFloats(channels, random, -8, 0),
      state: randomFloats(batch * channels * states, random, -1e-12, 1e-12),
    };
    await checkStep(ctx.backend, host, [batch, channels, states], seed, true);
  });

  it('shape mismatches throw ShapeError naming the input', async () => {
    const mk = (shape: number[]) =>
      ctx.backend.tensor(
        randomFloats(
          shape.reduce((a, b) => a * b, 1),
          rng(1),
        ),
        shape,
      );
    const good = {
      u: mk([2, 3]),
      dt: mk([2, 3]),
      A: mk([3, 4]),
      B: mk([2, 4]),
      C: mk([2, 4]),
      D: mk([3]),
      z: mk([2, 3]),
      dtBias: mk([3]),
      state: mk([2, 3, 4]),
    };
    const wrongState = mk([2, 3, 5]);
    const wrongB = mk([1, 4]);
    await expect(mambaSsmStep({ ...good, state: wrongState })).rejects.toMatchObject({ argument: 'state' });
    await expect(mambaSsmStep({ ...good, B: wrongB })).rejects.toThrow(ShapeError);
    await expect(mambaSsmStep({ ...good, u: good.state })).rejects.toMatchObject({ argument: 'u' });
    for (const x of [...Object.values(good), wrongState, wrongB]) x.dispose();
  });
});
