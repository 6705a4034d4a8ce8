import { ShapeError, gatherRef, rmsNormRef, unaryRef } from '@longseq/backend';
import {
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  randomInts,
  rng,
} from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { embedding, linear, linearRef, rmsNorm, silu, softplus } from '../src';

describeEachBackend('layers', (ctx) => {
  // [leading dims..., in] x [out, in]: one row, odd sizes, a batch of sequences.
  const linearCases: [number[], number][] = [
    [[1], 1],
    [[5], 3],
    [[3, 17], 33],
    [[2, 7, 65], 40],
  ];
  for (const [xShape, outFeatures] of linearCases) {
    for (const withBias of [false, true]) {
      it(`linear ${JSON.stringify(xShape)} -> ${outFeatures}${withBias ? ' with bias' : ''} matches the float64 reference`, async () => {
        const seed = freshSeed();
        const random = rng(seed);
        const inFeatures = xShape[xShape.length - 1]!;
        const size = xShape.reduce((a, b) => a * b, 1);
        const xData = randomFloats(size, random);
        const wData = randomFloats(outFeatures * inFeatures, random);
        const bData = randomFloats(outFeatures, random);
        const x = ctx.backend.tensor(xData, xShape);
        const w = ctx.backend.tensor(wData, [outFeatures, inFeatures]);
        const b = ctx.backend.tensor(bData, [outFeatures]);
        const y = await linear(x, w, withBias ? b : undefined);
        expect(y.shape).toEqual([...xShape.slice(0, -1), outFeatures]);
        const hx = { shape: xShape, data: xData };
        const hw = { shape: [outFeatures, inFeatures], data: wData };
        const hb = withBias ? { shape: [outFeatures], data: bData } : undefined;
        expectClose(
          await y.read(),
          linearRef(hx, hw, hb).data,
          linearRef(hx, hw, hb, { precision: 'f32' }).data,
          {
            seed,
          },
        );
        for (const t of [x, w, b, y]) t.dispose();
      });
    }
  }

  it('linear rejects a weight or bias of the wrong shape, naming it', async () => {
    const x = ctx.backend.tensor(randomFloats(6, rng(1)), [2, 3]);
    const w = ctx.backend.tensor(randomFloats(8, rng(2)), [2, 4]);
    const b = ctx.backend.tensor(randomFloats(3, rng(3)), [3]);
    const w2 = ctx.backend.tensor(randomFloats(6, rng(4)), [2, 3]);
    await expect(linear(x, w)).rejects.toMatchObject({ argument: 'weight' });
    await expect(linear(x, w2, b)).rejects.toThrow(ShapeError);
    for (const t of [x, w, b, w2]) t.dispose();
  });

  it('rmsNorm, embedding, silu and softplus match their references', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const [rows, cols, vocab] = [5, 37, 11];
    const xData = randomFloats(rows * cols, random, -3, 3);
    const wData = randomFloats(cols, random);
    const x = ctx.backend.tensor(xData, [rows, cols]);
    const w = ctx.backend.tensor(wData, [cols]);
    const normed = await rmsNorm(x, w, 1e-5);
    const hx = { shape: [rows, cols], data: xData };
    const hw = { shape: [cols], data: wData };
    expectClose(
      await normed.read(),
      rmsNormRef(hx, hw, 1e-5).data,
      rmsNormRef(hx, hw, 1e-5, { precision: 'f32' }).data,
      {
        seed,
        label: 'rmsNorm',
      },
    );
    for (const [name, fn] of [
      ['silu', silu],
      ['softplus', softplus],
    ] as const) {
      const y = await fn(x);
      expectClose(await y.read(), unaryRef(hx, name).data, unaryRef(hx, name, { precision: 'f32' }).data, {
        seed,
        label: name,
      });
      y.dispose();
    }
    const table = ctx.backend.tensor(randomFloats(vocab * cols, random), [vocab, cols]);
    const idsData = randomInts(2 * 3, random, 0, vocab);
    const ids = ctx.backend.tensor(idsData, [2, 3], 'i32');
    const rowsOut = await embedding(table, ids);
    expect(rowsOut.shape).toEqual([2, 3, cols]);
    const ref = gatherRef(
      { shape: [vocab, cols], data: await table.read() },
      { shape: [2, 3], data: idsData },
    );
    expect(Array.from(await rowsOut.read())).toEqual(Array.from(ref.data));
    for (const t of [x, w, normed, table, ids, rowsOut]) t.dispose();
  });
});
