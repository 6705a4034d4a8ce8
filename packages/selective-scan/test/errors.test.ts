import {
  ArgumentError,
  DeviceLimitError,
  DisposedTensorError,
  DTypeError,
  type LongseqError,
  ShapeError,
  type Tensor,
} from '@longseq/backend';
import { describeEachBackend } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { MAX_STATES, type SelectiveScanOptions, selectiveScan, setSequentialTuning } from '../src';

describeEachBackend('selectiveScan bad input', (ctx) => {
  // batch 2, d 4, L 3, n 2: valid tensors to start from.
  const made: Tensor[] = [];
  const t = (shape: number[], dtype: 'f32' | 'i32' = 'f32') => {
    const size = shape.reduce((a, b) => a * b, 1);
    const x = ctx.backend.tensor(
      Array.from({ length: size }, (_, i) => 0.1 + 0.01 * i),
      shape,
      dtype,
    );
    made.push(x);
    return x;
  };
  const valid = () => ({
    u: t([2, 4, 3]),
    delta: t([2, 4, 3]),
    A: t([4, 2]),
    B: t([2, 2, 3]),
    C: t([2, 2, 3]),
  });
  const cleanup = () => {
    for (const x of made.splice(0)) x.dispose();
  };

  /** Expects the call to throw `type` naming `argument`, with nothing run and nothing leaked. */
  async function rejects(
    call: (v: ReturnType<typeof valid>) => Promise<unknown>,
    type: new (...args: never[]) => LongseqError,
    argument: string,
  ) {
    const before = ctx.backend.memory();
    const v = valid();
    try {
      const err = await call(v).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(type);
      expect((err as { argument: string }).argument).toContain(argument);
    } finally {
      cleanup();
    }
    // Nothing was allocated for the failed call (outputs are made after validation).
    expect(ctx.backend.memory().tensors).toBe(before.tensors);
  }
  const scan = (v: ReturnType<typeof valid>, options?: SelectiveScanOptions) =>
    selectiveScan(v.u, v.delta, v.A, v.B, v.C, options);

  it('L = 0 is a ShapeError naming u', async () => {
    await rejects(
      (v) => selectiveScan(t([2, 4, 0]), t([2, 4, 0]), v.A, t([2, 2, 0]), t([2, 2, 0])),
      ShapeError,
      'u',
    );
  });

  it('u of the wrong rank, delta of another shape', async () => {
    await rejects((v) => selectiveScan(t([4, 3]), v.delta, v.A, v.B, v.C), ShapeError, 'u');
    await rejects((v) => selectiveScan(v.u, t([2, 4, 4]), v.A, v.B, v.C), ShapeError, 'delta');
  });

  it('A not [d, n]', async () => {
    await rejects((v) => selectiveScan(v.u, v.delta, t([3, 2]), v.B, v.C), ShapeError, 'A');
    await rejects((v) => selectiveScan(v.u, v.delta, t([8]), v.B, v.C), ShapeError, 'A');
  });

  it('B and C in no accepted layout, groups not dividing d', async () => {
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, t([2, 3, 3]), v.C), ShapeError, 'B');
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, v.B, t([2, 2, 4])), ShapeError, 'C');
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, t([2, 3, 2, 3]), v.C), ShapeError, 'B');
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, v.B, t([4, 3])), ShapeError, 'C');
  });

  it('options of the wrong shape', async () => {
    await rejects((v) => scan(v, { D: t([3]) }), ShapeError, 'options.D');
    await rejects((v) => scan(v, { z: t([2, 4, 2]) }), ShapeError, 'options.z');
    await rejects((v) => scan(v, { deltaBias: t([4, 1]) }), ShapeError, 'options.deltaBias');
    await rejects((v) => scan(v, { initialState: t([2, 4, 3]) }), ShapeError, 'options.initialState');
  });

  it('non-f32 tensors are DTypeErrors naming the tensor', async () => {
    await rejects((v) => selectiveScan(v.u, t([2, 4, 3], 'i32'), v.A, v.B, v.C), DTypeError, 'delta');
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, v.B, t([2, 2, 3], 'i32')), DTypeError, 'C');
    await rejects((v) => scan(v, { D: t([4], 'i32') }), DTypeError, 'options.D');
  });

  it('bad options are ArgumentErrors', async () => {
    await rejects((v) => scan(v, { algorithm: 'tree' as never }), ArgumentError, 'options.algorithm');
    await rejects((v) => scan(v, { exp: 'cheap' as never }), ArgumentError, 'options.exp');
    await rejects((v) => scan(v, { segments: 0 }), ArgumentError, 'options.segments');
    await rejects((v) => scan(v, { subgroups: 'yes' as never }), ArgumentError, 'options.subgroups');
    await rejects((v) => scan(v, { deltaSoftplus: 1 as never }), ArgumentError, 'options.deltaSoftplus');
    await rejects((v) => scan(v, { z: [1, 2] as never }), ArgumentError, 'options.z');
    await rejects((v) => selectiveScan(v.u, v.delta, v.A, v.B, v.C, null as never), ArgumentError, 'options');
    await rejects((v) => selectiveScan(v.u, v.delta, 'A' as never, v.B, v.C), ArgumentError, 'A');
  });

  it('a disposed input is a DisposedTensorError', async () => {
    await rejects(
      (v) => {
        v.B.dispose();
        return scan(v);
      },
      DisposedTensorError,
      'B',
    );
  });

  it(`n above ${MAX_STATES} is a DeviceLimitError`, async () => {
    const n = MAX_STATES + 1;
    await rejects((v) => selectiveScan(v.u, v.delta, t([4, n]), t([4, n]), t([4, n])), DeviceLimitError, 'A');
  });

  it('gpu.js: chunk pairs too large for one tensor are a DeviceLimitError before any kernel runs', async () => {
    if (ctx.backend.kind !== 'gpujs') return;
    // n = 256, d = 8: 8 x 256 x chunks x 2 floats of pairs, just past the largest tensor,
    // while every input is 32 times smaller (B and C time-invariant).
    const maxElements = ctx.backend.limits.maxStorageBufferBindingSize / 4;
    const L = (Math.floor(maxElements / 4096) + 1) * 16;
    const u = ctx.backend.tensor(new Float32Array(8 * L).fill(0.5), [1, 8, L]);
    const small = ctx.backend.tensor(new Float32Array(8 * 256).fill(-0.5), [8, 256]);
    try {
      const before = ctx.backend.memory().tensors;
      const err = await selectiveScan(u, u, small, small, small).then(
        (r) => r.y.dispose(),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DeviceLimitError);
      expect((err as DeviceLimitError).argument).toMatch(/chunk pairs/);
      expect(ctx.backend.memory().tensors).toBe(before);
    } finally {
      u.dispose();
      small.dispose();
    }
  });

  it('checkFinite reads delta and A back and names a non-finite value', async () => {
    await rejects(
      (v) => {
        const bad = ctx.backend.tensor(
          [
            0.1,
            0.2,
            Number.NaN,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
          ],
          [2, 4, 3],
        );
        made.push(bad);
        return selectiveScan(v.u, bad, v.A, v.B, v.C, { checkFinite: true });
      },
      ArgumentError,
      'delta',
    );
    await rejects(
      (v) => {
        const bad = ctx.backend.tensor([-1, -1, -1, Number.POSITIVE_INFINITY, -1, -1, -1, -1], [4, 2]);
        made.push(bad);
        return selectiveScan(v.u, v.delta, bad, v.B, v.C, { checkFinite: true });
      },
      ArgumentError,
      'A',
    );
  });

  it('without checkFinite a NaN dt propagates into y of its channel only', async () => {
    const v = valid();
    const data = Array.from({ length: 24 }, () => 0.1);
    data[4 * 3 + 1] = Number.NaN; // batch 1, channel 0, step 1
    const delta = ctx.backend.tensor(data, [2, 4, 3]);
    try {
      const { y } = await selectiveScan(v.u, delta, v.A, v.B, v.C);
      const out = await y.read();
      y.dispose();
      expect(Number.isNaN(out[13]!)).toBe(true);
      expect(Number.isNaN(out[14]!)).toBe(true);
      expect(Number.isFinite(out[12]!)).toBe(true);
      expect(Array.from(out).filter((x) => Number.isNaN(x))).toHaveLength(2);
    } finally {
      delta.dispose();
      cleanup();
    }
  });
});

it('setSequentialTuning rejects a bad launch shape with an ArgumentError and keeps the old one', () => {
  const before = setSequentialTuning({});
  expect(() => setSequentialTuning({ tilesInFlight: 0 })).toThrow(ArgumentError);
  expect(() => setSequentialTuning({ quadWorkgroup: 96 })).toThrow(/tuning\.quadWorkgroup/);
  expect(setSequentialTuning({})).toEqual(before);
});
