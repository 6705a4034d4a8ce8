import { ArgumentError, BackendMismatchError, DTypeError, ShapeError } from '@longseq/backend';
import { describeEachBackend, expectClose, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import { causalConv1d, causalConv1dRef, causalConv1dStep, causalConv1dStepRef } from '../src';

describe('causalConv1dRef', () => {
  it('running it over a sequence in two pieces, the state carried, equals one pass', () => {
    const random = rng(freshSeed());
    const [b, c, l, k] = [2, 3, 9, 4];
    const x = randomFloats(b * c * l, random);
    const weight = { shape: [c, k], data: randomFloats(c * k, random) };
    const whole = causalConv1dRef({ shape: [b, c, l], data: x }, weight);
    const slice = (from: number, to: number) => {
      const data: number[] = [];
      for (let bc = 0; bc < b * c; bc++) for (let t = from; t < to; t++) data.push(x[bc * l + t]!);
      return { shape: [b, c, to - from], data };
    };
    const first = causalConv1dRef(slice(0, 5), weight);
    const second = causalConv1dRef(slice(5, l), weight, { initialState: first.finalState });
    for (let bc = 0; bc < b * c; bc++) {
      for (let t = 0; t < l; t++) {
        const part = t < 5 ? first.output.data[bc * 5 + t]! : second.output.data[bc * 4 + t - 5]!;
        expect(part).toBeCloseTo(whole.output.data[bc * l + t]!, 12);
      }
    }
    expect(Array.from(second.finalState.data)).toEqual(Array.from(whole.finalState.data));
  });
});

describeEachBackend('causalConv1d', (ctx) => {
  // [batch, channels, length, kernel]: lengths shorter than the kernel, L = 1, K = 1, odd sizes.
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 4],
    [2, 5, 3, 4],
    [3, 7, 33, 4],
    [1, 130, 17, 3],
    [2, 4, 6, 1],
    [1, 3, 11, 6],
    [1, 2048, 129, 4],
  ];
  for (const [b, c, l, k] of cases) {
    for (const withState of [false, true]) {
      it(`[${b}, ${c}, ${l}] K=${k}${withState ? ' with an initial state' : ''} matches the float64 reference`, async () => {
        const seed = freshSeed();
        const random = rng(seed);
        const xData = randomFloats(b * c * l, random, -2, 2);
        const wData = randomFloats(c * k, random);
        const biasData = randomFloats(c, random);
        const stateData = randomFloats(b * c * (k - 1), random, -2, 2);
        const x = ctx.backend.tensor(xData, [b, c, l]);
        // The HF checkpoint layout [C, 1, K].
        const weight = ctx.backend.tensor(wData, [c, 1, k]);
        const bias = ctx.backend.tensor(biasData, [c]);
        const state = ctx.backend.tensor(stateData, [b, c, k - 1]);
        const { output, finalState } = await causalConv1d(x, weight, {
          bias,
          returnFinalState: true,
          ...(withState ? { initialState: state } : {}),
        });
        const hostOptions = {
          bias: { shape: [c], data: biasData },
          ...(withState ? { initialState: { shape: [b, c, k - 1], data: stateData } } : {}),
        };
        const w = { shape: [c, k], data: wData };
        const ref = causalConv1dRef({ shape: [b, c, l], data: xData }, w, hostOptions);
        const ref32 = causalConv1dRef({ shape: [b, c, l], data: xData }, w, {
          ...hostOptions,
          precision: 'f32',
        });
        expect(output.shape).toEqual([b, c, l]);
        expectClose(await output.read(), ref.output.data, ref32.output.data, { seed, label: 'output' });
        expect(finalState!.shape).toEqual([b, c, k - 1]);
        expect(Array.from(await finalState!.read())).toEqual(Array.from(ref.finalState.data));
        for (const t of [x, weight, bias, state, output, finalState!]) t.dispose();
      });
    }
  }

  it('an empty batch gives empty outputs; L = 0 hands the initial state through', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const weight = ctx.backend.tensor(randomFloats(3 * 4, random), [3, 4]);
    const empty = ctx.backend.tensor([], [0, 3, 5]);
    const none = await causalConv1d(empty, weight, { returnFinalState: true });
    expect(none.output.shape).toEqual([0, 3, 5]);
    expect(none.finalState!.shape).toEqual([0, 3, 3]);
    const stateData = randomFloats(2 * 3 * 3, random);
    const state = ctx.backend.tensor(stateData, [2, 3, 3]);
    const zeroLength = ctx.backend.tensor([], [2, 3, 0]);
    const through = await causalConv1d(zeroLength, weight, { initialState: state, returnFinalState: true });
    expect(through.output.shape).toEqual([2, 3, 0]);
    expect(Array.from(await through.finalState!.read())).toEqual(Array.from(stateData));
    for (const t of [
      weight,
      empty,
      none.output,
      none.finalState!,
      state,
      zeroLength,
      through.output,
      through.finalState!,
    ])
      t.dispose();
  });

  it('without a bias, with a [C, K] weight, and without the final state', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const [b, c, l, k] = [2, 9, 13, 4];
    const xData = randomFloats(b * c * l, random);
    const wData = randomFloats(c * k, random);
    const x = ctx.backend.tensor(xData, [b, c, l]);
    const weight = ctx.backend.tensor(wData, [c, k]);
    const result = await causalConv1d(x, weight);
    expect(result.finalState).toBeUndefined();
    const ref = causalConv1dRef({ shape: [b, c, l], data: xData }, { shape: [c, k], data: wData });
    const ref32 = causalConv1dRef(
      { shape: [b, c, l], data: xData },
      { shape: [c, k], data: wData },
      { precision: 'f32' },
    );
    expectClose(await result.output.read(), ref.output.data, ref32.output.data, { seed });
    for (const t of [x, weight, result.output]) t.dispose();
  });

  it('stepping token by token from a prefix state equals the sequence form', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const [b, c, l, k, prefix] = [2, 37, 7, 4, 3];
    const xData = randomFloats(b * c * l, random, -2, 2);
    const wData = randomFloats(c * k, random);
    const biasData = randomFloats(c, random);
    const column = (from: number, to: number) => {
      const data: number[] = [];
      for (let bc = 0; bc < b * c; bc++) for (let t = from; t < to; t++) data.push(xData[bc * l + t]!);
      return data;
    };
    const weight = ctx.backend.tensor(wData, [c, 1, k]);
    const bias = ctx.backend.tensor(biasData, [c]);
    const head = ctx.backend.tensor(column(0, prefix), [b, c, prefix]);
    const first = await causalConv1d(head, weight, { bias, returnFinalState: true });
    let state = first.finalState!;
    let hostState = { shape: [b, c, k - 1], data: Array.from(await state.read()) as ArrayLike<number> };
    const ref = causalConv1dRef(
      { shape: [b, c, l], data: xData },
      { shape: [c, k], data: wData },
      {
        bias: { shape: [c], data: biasData },
      },
    );
    for (let t = prefix; t < l; t++) {
      const xt = ctx.backend.tensor(column(t, t + 1), [b, c]);
      const step = await causalConv1dStep(xt, state, weight, { bias });
      const refStep = causalConv1dStepRef(
        { shape: [b, c], data: column(t, t + 1) },
        hostState,
        { shape: [c, k], data: wData },
        {
          bias: { shape: [c], data: biasData },
        },
      );
      const ref32 = causalConv1dStepRef(
        { shape: [b, c], data: column(t, t + 1) },
        hostState,
        { shape: [c, k], data: wData },
        {
          bias: { shape: [c], data: biasData },
          precision: 'f32',
        },
      );
      const got = await step.output.read();
      expectClose(got, refStep.output.data, ref32.output.data, { seed, label: `step ${t}` });
      // and the step reference is the sequence reference at time t
      for (let bc = 0; bc < b * c; bc++)
        expect(refStep.output.data[bc]).toBeCloseTo(ref.output.data[bc * l + t]!, 12);
      expect(Array.from(await step.state.read())).toEqual(Array.from(refStep.state.data));
      hostState = refStep.state;
      state.dispose();
      xt.dispose();
      step.output.dispose();
      state = step.state;
    }
    for (const t of [weight, bias, head, first.output, state]) t.dispose();
  });

  it('bad inputs throw typed errors naming the argument, before any GPU work', async () => {
    const x = ctx.backend.tensor(randomFloats(2 * 3 * 4, rng(1)), [2, 3, 4]);
    const w = ctx.backend.tensor(randomFloats(3 * 4, rng(2)), [3, 4]);
    const wrongW = ctx.backend.tensor(randomFloats(4 * 4, rng(3)), [4, 4]);
    const ids = ctx.backend.tensor([1, 2, 3], [3], 'i32');
    const state = ctx.backend.tensor(randomFloats(2 * 3 * 2, rng(4)), [2, 3, 2]);
    const x2 = ctx.backend.tensor(randomFloats(6, rng(5)), [2, 3]);
    const oneTap = ctx.backend.tensor(randomFloats(3, rng(6)), [3, 1]);
    const flat = x.reshape([6, 4]);
    const before = ctx.backend.memory().tensors;
    await expect(causalConv1d(flat, w)).rejects.toThrow(ShapeError);
    await expect(causalConv1d(x, wrongW)).rejects.toMatchObject({ argument: 'weight' });
    await expect(causalConv1d(x, w, { bias: ids })).rejects.toThrow(DTypeError);
    await expect(causalConv1d(x, w, { bias: w })).rejects.toMatchObject({ argument: 'options.bias' });
    await expect(causalConv1d(x, w, { initialState: state })).rejects.toMatchObject({
      argument: 'options.initialState',
    });
    await expect(causalConv1d(x, w, null as never)).rejects.toThrow(ArgumentError);
    await expect(causalConv1dStep(x2, state, w)).rejects.toMatchObject({ argument: 'state' });
    await expect(causalConv1dStep(x, state, w)).rejects.toMatchObject({ argument: 'x' });
    await expect(causalConv1dStep(x2, state, oneTap)).rejects.toMatchObject({ argument: 'weight' });
    // nothing allocated by a rejected call survives it
    expect(ctx.backend.memory().tensors).toBe(before);
    for (const t of [x, flat, w, wrongW, ids, state, x2, oneTap]) t.dispose();
  });

  it('tensors from another backend are refused', async () => {
    const { getBackend } = await import('@longseq/test-harness');
    const otherName = ctx.name === 'gpujs-cpu' ? 'gpujs-webasm' : 'gpujs-cpu';
    const other = await getBackend(otherName);
    const x = ctx.backend.tensor(randomFloats(6, rng(7)), [1, 2, 3]);
    const w = other.tensor(randomFloats(8, rng(8)), [2, 4]);
    await expect(causalConv1d(x, w)).rejects.toThrow(BackendMismatchError);
    x.dispose();
    w.dispose();
  });
});
