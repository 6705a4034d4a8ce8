/**
 * attentionBackward on every backend against analytic float64 gradients, and the float64
 * gradients themselves against central finite differences of the float64 forward.
 */
import type { Tensor } from '@longseq/backend';
import {
  caseSeed,
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  type AttentionMaskOptions,
  attention,
  attentionBackward,
  attentionBackwardRef,
  attentionRef,
  attentionVarlen,
  attentionVarlenBackward,
  attentionVarlenBackwardRef,
} from '../src/index';

const SEED = freshSeed();

interface GradCase {
  readonly name: string;
  readonly b: number;
  readonly h: number;
  readonly hkv: number;
  readonly nq: number;
  readonly nk: number;
  readonly d: number;
  readonly options?: AttentionMaskOptions & { seqlensQ?: number[]; seqlensK?: number[] };
}

const CASES: GradCase[] = [
  { name: 'GQA 4/2, nq != nk, d 24', b: 1, h: 4, hkv: 2, nq: 13, nk: 19, d: 24 },
  { name: 'causal, d 18', b: 2, h: 1, hkv: 1, nq: 11, nk: 11, d: 18, options: { causal: true } },
  {
    name: 'softcap, ALiBi, window, lengths',
    b: 2,
    h: 2,
    hkv: 1,
    nq: 12,
    nk: 15,
    d: 16,
    options: { window: [4, 2], softcap: 3, alibiSlopes: [0.25, 0.5], seqlensQ: [12, 5], seqlensK: [15, 8] },
  },
  // Several key and query blocks in both tiled passes (d 64: 16 x 32 and 32 x 16 blocks on
  // SwiftShader, 32 x 32 where workgroup memory is 48 KiB),
  // GQA summed over the group, the causal band skipping blocks, nq != nk.
  {
    name: 'tiled: GQA 2/1, causal, d 64, many blocks',
    b: 1,
    h: 2,
    hkv: 1,
    nq: 45,
    nk: 71,
    d: 64,
    options: { causal: true },
  },
  // Head-dim capacity 64 (the smallest blocks, 16 accumulator vec4s a thread) with a d that
  // is not a multiple of 4 (scalar loads), several key and query blocks in both passes.
  {
    name: 'tiled: d 130, GQA 2/1, causal, nq != nk',
    b: 1,
    h: 2,
    hkv: 1,
    nq: 10,
    nk: 13,
    d: 130,
    options: { causal: true },
  },
  {
    name: 'tiled: window, lengths, d 24',
    b: 2,
    h: 1,
    hkv: 1,
    nq: 37,
    nk: 37,
    d: 24,
    options: { window: [9, 3], seqlensQ: [37, 20], seqlensK: [37, 33] },
  },
];

const host = (data: Float32Array, shape: number[]) => ({ data, shape });

describeEachBackend('attentionBackward', (ctx) => {
  for (const c of CASES) {
    it(c.name, async () => {
      const { backend } = ctx;
      const seed = caseSeed(SEED, c.name);
      const random = rng(seed);
      const qShape = [c.b, c.h, c.nq, c.d];
      const kShape = [c.b, c.hkv, c.nk, c.d];
      const q = randomFloats(c.b * c.h * c.nq * c.d, random, -1.5, 1.5);
      const k = randomFloats(c.b * c.hkv * c.nk * c.d, random, -1.5, 1.5);
      const v = randomFloats(c.b * c.hkv * c.nk * c.d, random);
      const dOut = randomFloats(q.length, random);
      const options = c.options ?? {};
      const ref64 = attentionBackwardRef(
        host(q, qShape),
        host(k, kShape),
        host(v, kShape),
        host(dOut, qShape),
        options,
      );
      const ref32 = attentionBackwardRef(
        host(q, qShape),
        host(k, kShape),
        host(v, kShape),
        host(dOut, qShape),
        {
          ...options,
          precision: 'f32',
        },
      );
      const tensors: Tensor[] = [];
      const track = (t: Tensor) => {
        tensors.push(t);
        return t;
      };
      try {
        const tq = track(backend.tensor(q, qShape));
        const tk = track(backend.tensor(k, kShape));
        const tv = track(backend.tensor(v, kShape));
        const tdo = track(backend.tensor(dOut, qShape));
        const { output, lse } = await attention(tq, tk, tv, { ...options, returnLse: true });
        track(output);
        track(lse);
        const grads = await attentionBackward(tq, tk, tv, output, tdo, lse, options);
        track(grads.dq);
        track(grads.dk);
        track(grads.dv);
        expectClose(await grads.dq.read(), ref64.dq.data, ref32.dq.data, { label: 'dq', seed });
        expectClose(await grads.dk.read(), ref64.dk.data, ref32.dk.data, { label: 'dk', seed });
        expectClose(await grads.dv.read(), ref64.dv.data, ref32.dv.data, { label: 'dv', seed });
      } finally {
        for (const t of tensors) t.dispose();
      }
      // The first case of a head-dim class compiles the forward and both tiled backward
      // passes, tens of seconds each on SwiftShader under load.
    }, 300_000);
  }

  it('NaN in a key row or a query row: dq, dk, dv are NaN exactly where the float64 gradients are, the rest close (causal)', async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'nan-grad'));
    const n = 20;
    const d = 16;
    const shape = [1, 1, n, d];
    const v = randomFloats(n * d, random);
    const dOut = randomFloats(n * d, random);
    const options = { causal: true };
    const check = async (q: Float32Array, k: Float32Array, what: string) => {
      const ref = attentionBackwardRef(
        host(q, shape),
        host(k, shape),
        host(v, shape),
        host(dOut, shape),
        options,
      );
      const tensors: Tensor[] = [];
      const track = (t: Tensor) => {
        tensors.push(t);
        return t;
      };
      try {
        const tq = track(backend.tensor(q, shape));
        const tk = track(backend.tensor(k, shape));
        const tv = track(backend.tensor(v, shape));
        const tdo = track(backend.tensor(dOut, shape));
        const { output, lse } = await attention(tq, tk, tv, { ...options, returnLse: true });
        track(output);
        track(lse);
        const grads = await attentionBackward(tq, tk, tv, output, tdo, lse, options);
        for (const name of ['dq', 'dk', 'dv'] as const) {
          const got = await track(grads[name]).read();
          const want = ref[name].data;
          let nans = 0;
          for (let e = 0; e < want.length; e++) {
            const nan = Number.isNaN(want[e]!);
            nans += nan ? 1 : 0;
            expect(Number.isNaN(got[e]!), `${what}: ${name}[${e}] NaN`).toBe(nan);
            if (!nan) expect(Math.abs(got[e]! - want[e]!), `${what}: ${name}[${e}]`).toBeLessThan(1e-4);
          }
          // The case poisons some gradients and leaves others finite.
          expect(nans, `${what}: ${name}`).toBeGreaterThan(0);
          if (what === 'query') expect(nans, `${what}: ${name}`).toBeLessThan(want.length);
        }
      } finally {
        for (const t of tensors) t.dispose();
      }
    };
    // Key 11: rows 11.. see it (dq NaN there, finite before); every key is seen by a row >= 11.
    const q = randomFloats(n * d, random);
    const k = randomFloats(n * d, random);
    const kNan = k.slice();
    kNan[11 * d + 3] = Number.NaN;
    await check(q, kNan, 'key');
    // Query row 5: its dq, and dk, dv of keys 0..5 (the keys row 5 sees); the rest finite.
    const qNan = q.slice();
    qNan[5 * d + 7] = Number.NaN;
    await check(qNan, k, 'query');
  }, 300_000);

  it('varlen backward (packed), causal', async () => {
    const { backend } = ctx;
    const seed = caseSeed(SEED, 'varlen backward');
    const random = rng(seed);
    const d = 16;
    const options = { cuSeqlensQ: [0, 4, 10], cuSeqlensK: [0, 7, 13], causal: true };
    const qShape = [10, 2, d];
    const kShape = [13, 1, d];
    const q = randomFloats(10 * 2 * d, random, -1.5, 1.5);
    const k = randomFloats(13 * d, random, -1.5, 1.5);
    const v = randomFloats(13 * d, random);
    const dOut = randomFloats(q.length, random);
    const ref64 = attentionVarlenBackwardRef(
      host(q, qShape),
      host(k, kShape),
      host(v, kShape),
      host(dOut, qShape),
      options,
    );
    const ref32 = attentionVarlenBackwardRef(
      host(q, qShape),
      host(k, kShape),
      host(v, kShape),
      host(dOut, qShape),
      {
        ...options,
        precision: 'f32',
      },
    );
    const tensors: Tensor[] = [];
    try {
      const tq = backend.tensor(q, qShape);
      const tk = backend.tensor(k, kShape);
      const tv = backend.tensor(v, kShape);
      const tdo = backend.tensor(dOut, qShape);
      tensors.push(tq, tk, tv, tdo);
      const { output, lse } = await attentionVarlen(tq, tk, tv, { ...options, returnLse: true });
      tensors.push(output, lse);
      const { dq, dk, dv } = await attentionVarlenBackward(tq, tk, tv, output, tdo, lse, options);
      tensors.push(dq, dk, dv);
      expectClose(await dq.read(), ref64.dq.data, ref32.dq.data, { label: 'dq', seed });
      expectClose(await dk.read(), ref64.dk.data, ref32.dk.data, { label: 'dk', seed });
      expectClose(await dv.read(), ref64.dv.data, ref32.dv.data, { label: 'dv', seed });
    } finally {
      for (const t of tensors) t.dispose();
    }
  });
});

describe('attentionBackwardRef', () => {
  it('matches central finite differences of attentionRef (softcap, ALiBi, causal, GQA)', () => {
    const random = rng(caseSeed(SEED, 'finite differences'));
    const qShape = [1, 2, 4, 3];
    const kShape = [1, 1, 5, 3];
    const q = Float64Array.from(randomFloats(24, random));
    const k = Float64Array.from(randomFloats(15, random));
    const v = Float64Array.from(randomFloats(15, random));
    const dOut = Float64Array.from(randomFloats(24, random));
    const options = { causal: true, softcap: 2, alibiSlopes: [0.3, 0.7], scale: 0.9 };
    const loss = () => {
      const out = attentionRef(
        { data: q, shape: qShape },
        { data: k, shape: kShape },
        { data: v, shape: kShape },
        options,
      ).output.data;
      let s = 0;
      for (let i = 0; i < out.length; i++) s += out[i]! * dOut[i]!;
      return s;
    };
    const grads = attentionBackwardRef(
      { data: q, shape: qShape },
      { data: k, shape: kShape },
      { data: v, shape: kShape },
      { data: dOut, shape: qShape },
      options,
    );
    const eps = 1e-6;
    for (const [x, g] of [
      [q, grads.dq.data],
      [k, grads.dk.data],
      [v, grads.dv.data],
    ] as const) {
      for (let i = 0; i < x.length; i++) {
        const keep = x[i]!;
        x[i] = keep + eps;
        const up = loss();
        x[i] = keep - eps;
        const down = loss();
        x[i] = keep;
        expect(Math.abs((up - down) / (2 * eps) - g[i]!)).toBeLessThan(1e-7);
      }
    }
  });
});
