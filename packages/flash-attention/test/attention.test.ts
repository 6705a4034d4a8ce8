/**
 * attention and attentionVarlen on every backend against the float64 reference (test rule:
 * at most twice the error of a float32 computation), flash and naive; NaN containment;
 * memory growth of flash (linear) versus naive (quadratic).
 */
import type { Backend, Tensor } from '@longseq/backend';
import {
  caseSeed,
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import { expect, it } from 'vitest';
import {
  type AttentionAlgorithm,
  type AttentionMaskOptions,
  attention,
  attentionRef,
  attentionVarlen,
  attentionVarlenRef,
} from '../src/index';

const SEED = freshSeed();

interface PaddedCase {
  readonly name: string;
  readonly b: number;
  readonly h: number;
  readonly hkv: number;
  readonly nq: number;
  readonly nk: number;
  readonly d: number;
  readonly options?: AttentionMaskOptions & { seqlensQ?: number[]; seqlensK?: number[] };
  /** Also run naive (default true). */
  readonly naive?: boolean;
}

const CASES: PaddedCase[] = [
  { name: 'odd N, nq != nk, d 40', b: 2, h: 2, hkv: 2, nq: 37, nk: 53, d: 40 },
  {
    name: 'd 18 (not a multiple of 4), causal',
    b: 1,
    h: 2,
    hkv: 2,
    nq: 21,
    nk: 21,
    d: 18,
    options: { causal: true },
  },
  {
    name: 'd 24, GQA 4/2, window [5, 3]',
    b: 1,
    h: 4,
    hkv: 2,
    nq: 30,
    nk: 30,
    d: 24,
    options: { window: [5, 3] },
  },
  { name: 'MQA 4/1 causal', b: 2, h: 4, hkv: 1, nq: 20, nk: 20, d: 32, options: { causal: true } },
  {
    name: 'nq = 1, nk = 300 (split decode), GQA',
    b: 1,
    h: 4,
    hkv: 2,
    nq: 1,
    nk: 300,
    d: 64,
    options: { causal: true },
  },
  { name: 'nq = 1, nk = 7 (tiled)', b: 2, h: 2, hkv: 1, nq: 1, nk: 7, d: 32 },
  { name: 'd 16', b: 1, h: 1, hkv: 1, nq: 5, nk: 9, d: 16 },
  { name: 'd 256', b: 1, h: 1, hkv: 1, nq: 5, nk: 9, d: 256, options: { causal: true } },
  {
    name: 'causal nq > nk (fully masked rows)',
    b: 1,
    h: 2,
    hkv: 2,
    nq: 40,
    nk: 25,
    d: 32,
    options: { causal: true },
  },
  {
    name: 'softcap and ALiBi, causal window',
    b: 1,
    h: 2,
    hkv: 1,
    nq: 33,
    nk: 33,
    d: 32,
    options: { causal: true, window: [12, 0], softcap: 5, alibiSlopes: [0.5, 0.125] },
  },
  {
    name: 'per-sequence lengths (seqlensQ, seqlensK)',
    b: 3,
    h: 2,
    hkv: 2,
    nq: 19,
    nk: 23,
    d: 32,
    options: { causal: true, seqlensQ: [19, 7, 0], seqlensK: [23, 11, 5] },
  },
  {
    name: 'scale 0.3, window [0, Infinity]',
    b: 1,
    h: 2,
    hkv: 2,
    nq: 17,
    nk: 17,
    d: 32,
    options: { scale: 0.3, window: [0, Number.POSITIVE_INFINITY] },
  },
];

function hostOf(data: Float32Array, shape: number[]) {
  return { data, shape };
}

async function readAll(t: Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.read());
}

describeEachBackend('attention', (ctx) => {
  for (const c of CASES) {
    for (const algorithm of ['flash', 'naive'] as AttentionAlgorithm[]) {
      if (algorithm === 'naive' && c.naive === false) continue;
      it(`${c.name} (${algorithm})`, async () => {
        const backend: Backend = ctx.backend;
        const seed = caseSeed(SEED, c.name);
        const random = rng(seed);
        const qShape = [c.b, c.h, c.nq, c.d];
        const kShape = [c.b, c.hkv, c.nk, c.d];
        const q = randomFloats(c.b * c.h * c.nq * c.d, random, -2, 2);
        const k = randomFloats(c.b * c.hkv * c.nk * c.d, random, -2, 2);
        const v = randomFloats(c.b * c.hkv * c.nk * c.d, random);
        const options = c.options ?? {};
        const ref64 = attentionRef(hostOf(q, qShape), hostOf(k, kShape), hostOf(v, kShape), options);
        const ref32 = attentionRef(hostOf(q, qShape), hostOf(k, kShape), hostOf(v, kShape), {
          ...options,
          precision: 'f32',
        });
        const tq = backend.tensor(q, qShape);
        const tk = backend.tensor(k, kShape);
        const tv = backend.tensor(v, kShape);
        try {
          const { output, lse } = await attention(tq, tk, tv, { ...options, algorithm, returnLse: true });
          expect(output.shape).toEqual(qShape);
          expect(lse.shape).toEqual([c.b, c.h, c.nq]);
          const got = await readAll(output);
          const gotLse = await readAll(lse);
          output.dispose();
          lse.dispose();
          expectClose(got, ref64.output.data, ref32.output.data, { label: 'out', seed });
          expectClose(gotLse, ref64.lse.data, ref32.lse.data, { label: 'lse', seed });
        } finally {
          tq.dispose();
          tk.dispose();
          tv.dispose();
        }
      });
    }
  }

  it('returnLse false returns the output tensor alone', async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'plain'));
    const q = backend.tensor(randomFloats(2 * 16, random), [1, 1, 2, 16]);
    const k = backend.tensor(randomFloats(3 * 16, random), [1, 1, 3, 16]);
    const out = await attention(q, k, k);
    expect(out.shape).toEqual([1, 1, 2, 16]);
    out.dispose();
    q.dispose();
    k.dispose();
  });

  it('varlen (packed, cu_seqlens) with an empty query sequence, causal GQA', async () => {
    const { backend } = ctx;
    const seed = caseSeed(SEED, 'varlen');
    const random = rng(seed);
    const h = 4;
    const hkv = 2;
    const d = 24;
    const cuSeqlensQ = [0, 5, 5, 17];
    const cuSeqlensK = [0, 9, 12, 30];
    const qShape = [17, h, d];
    const kShape = [30, hkv, d];
    const q = randomFloats(17 * h * d, random, -2, 2);
    const k = randomFloats(30 * hkv * d, random, -2, 2);
    const v = randomFloats(30 * hkv * d, random);
    const options = { cuSeqlensQ, cuSeqlensK, causal: true, softcap: 8 };
    const ref64 = attentionVarlenRef(hostOf(q, qShape), hostOf(k, kShape), hostOf(v, kShape), options);
    const ref32 = attentionVarlenRef(hostOf(q, qShape), hostOf(k, kShape), hostOf(v, kShape), {
      ...options,
      precision: 'f32',
    });
    const tq = backend.tensor(q, qShape);
    const tk = backend.tensor(k, kShape);
    const tv = backend.tensor(v, kShape);
    const { output, lse } = await attentionVarlen(tq, tk, tv, {
      ...options,
      maxSeqlenQ: 12,
      maxSeqlenK: 18,
      returnLse: true,
    });
    expect(lse.shape).toEqual([h, 17]);
    expectClose(await output.read(), ref64.output.data, ref32.output.data, { label: 'out', seed });
    expectClose(await lse.read(), ref64.lse.data, ref32.lse.data, { label: 'lse', seed });
    for (const t of [output, lse, tq, tk, tv]) t.dispose();
  });

  it('varlen equals the padded form sequence by sequence', async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'varlen-vs-padded'));
    const d = 16;
    const lengths = [6, 3];
    const cu = [0, 6, 9];
    const packed = randomFloats(9 * d, random, -2, 2);
    const vPacked = randomFloats(9 * d, random);
    const q = backend.tensor(packed, [9, 1, d]);
    const v = backend.tensor(vPacked, [9, 1, d]);
    const varlen = await attentionVarlen(q, q, v, { cuSeqlensQ: cu, cuSeqlensK: cu, causal: true });
    const got = await varlen.read();
    // The same sequences padded to 6 rows, with per-sequence lengths.
    const padded = new Float32Array(2 * 6 * d);
    const vPadded = new Float32Array(2 * 6 * d);
    padded.set(packed.subarray(0, 6 * d), 0);
    padded.set(packed.subarray(6 * d), 6 * d);
    vPadded.set(vPacked.subarray(0, 6 * d), 0);
    vPadded.set(vPacked.subarray(6 * d), 6 * d);
    const pq = backend.tensor(padded, [2, 1, 6, d]);
    const pv = backend.tensor(vPadded, [2, 1, 6, d]);
    const paddedOut = await attention(pq, pq, pv, { causal: true, seqlensQ: lengths, seqlensK: lengths });
    const want = await paddedOut.read();
    for (let i = 0; i < 6 * d; i++) expect(got[i]).toBeCloseTo(want[i]!, 6);
    for (let i = 0; i < 3 * d; i++) expect(got[6 * d + i]).toBeCloseTo(want[6 * d + i]!, 6);
    for (const t of [varlen, q, v, pq, pv, paddedOut]) t.dispose();
  });

  it('NaN in one query row or one key row poisons only the rows that see it (flash), and returns', async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'nan'));
    const n = 20;
    const d = 16;
    const q = randomFloats(n * d, random);
    const k = randomFloats(n * d, random);
    const v = randomFloats(n * d, random);
    q[3 * d + 5] = Number.NaN;
    k[11 * d] = Number.NaN;
    const ref = attentionRef(hostOf(q, [1, 1, n, d]), hostOf(k, [1, 1, n, d]), hostOf(v, [1, 1, n, d]), {
      causal: true,
    });
    const tq = backend.tensor(q, [1, 1, n, d]);
    const tk = backend.tensor(k, [1, 1, n, d]);
    const tv = backend.tensor(v, [1, 1, n, d]);
    try {
      const { output, lse } = await attention(tq, tk, tv, { causal: true, returnLse: true });
      const got = await output.read();
      const gotLse = await lse.read();
      output.dispose();
      lse.dispose();
      for (let i = 0; i < n; i++) {
        // Causal: row 3 has a NaN query, rows 11.. see key 11; the others stay finite and exact.
        const poisoned = i === 3 || i >= 11;
        expect(Number.isNaN(ref.lse.data[i]!)).toBe(poisoned);
        expect(Number.isNaN(gotLse[i]!), `lse row ${i}`).toBe(poisoned);
        for (let e = 0; e < d; e++) expect(Number.isNaN(got[i * d + e]!), `row ${i}`).toBe(poisoned);
      }
    } finally {
      for (const t of [tq, tk, tv]) t.dispose();
    }
  });

  it("NaN without a mask (the plain program's one-sum poison test): a query row alone, a key row everywhere", async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'nan-unmasked'));
    const n = 40;
    const d = 16;
    const q = randomFloats(n * d, random);
    const k = randomFloats(n * d, random);
    const v = randomFloats(n * d, random);
    const shape = [1, 1, n, d];
    const run = async (qd: Float32Array, kd: Float32Array) => {
      const tq = backend.tensor(qd, shape);
      const tk = backend.tensor(kd, shape);
      const tv = backend.tensor(v, shape);
      try {
        const { output, lse } = await attention(tq, tk, tv, { returnLse: true });
        const got = { out: await output.read(), lse: await lse.read() };
        output.dispose();
        lse.dispose();
        return got;
      } finally {
        for (const t of [tq, tk, tv]) t.dispose();
      }
    };
    const qNan = q.slice();
    qNan[7 * d + 2] = Number.NaN;
    const one = await run(qNan, k);
    const ref = attentionRef(hostOf(q, shape), hostOf(k, shape), hostOf(v, shape), {});
    for (let i = 0; i < n; i++) {
      expect(Number.isNaN(one.lse[i]!), `lse row ${i}`).toBe(i === 7);
      if (i !== 7) {
        for (let e = 0; e < d; e++) {
          expect(Math.abs(one.out[i * d + e]! - ref.output.data[i * d + e]!)).toBeLessThan(1e-5);
        }
      }
    }
    const kNan = k.slice();
    kNan[30 * d + 9] = Number.NaN;
    const all = await run(q, kNan);
    for (let i = 0; i < n; i++) {
      expect(Number.isNaN(all.lse[i]!), `lse row ${i}`).toBe(true);
      for (let e = 0; e < d; e++) expect(Number.isNaN(all.out[i * d + e]!), `row ${i}`).toBe(true);
    }
  });

  it('naive: NaN in one query row poisons that row only', async () => {
    // (naive adds the -Infinity mask to materialized scores, so a NaN key reaches every row.)
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'nan-naive'));
    const n = 12;
    const d = 16;
    const q = randomFloats(n * d, random);
    q[5 * d + 2] = Number.NaN;
    const tq = backend.tensor(q, [1, 1, n, d]);
    const tk = backend.tensor(randomFloats(n * d, random), [1, 1, n, d]);
    try {
      const out = await attention(tq, tk, tk, { causal: true, algorithm: 'naive' });
      const got = await out.read();
      out.dispose();
      for (let i = 0; i < n; i++) expect(Number.isNaN(got[i * d]!), `row ${i}`).toBe(i === 5);
    } finally {
      tq.dispose();
      tk.dispose();
    }
  });

  it('memory beyond inputs and outputs: flash grows at most linearly in N, naive quadratically', async () => {
    const { backend } = ctx;
    const random = rng(caseSeed(SEED, 'memory'));
    const d = 16;
    const extra = async (n: number, algorithm: AttentionAlgorithm) => {
      const q = backend.tensor(randomFloats(n * d, random), [1, 1, n, d]);
      const k = backend.tensor(randomFloats(n * d, random), [1, 1, n, d]);
      const v = backend.tensor(randomFloats(n * d, random), [1, 1, n, d]);
      await backend.sync();
      const base = backend.memory().bytes;
      backend.resetPeak();
      const { output, lse } = await attention(q, k, v, { algorithm, returnLse: true });
      await backend.sync();
      const outputs = (output.size + lse.size) * 4;
      const peak = backend.memory().peakBytes - base - outputs;
      for (const t of [output, lse, q, k, v]) t.dispose();
      return peak;
    };
    const sizes = [32, 64, 128];
    const flash: number[] = [];
    const naive: number[] = [];
    for (const n of sizes) {
      flash.push(await extra(n, 'flash'));
      naive.push(await extra(n, 'naive'));
    }
    for (let i = 1; i < sizes.length; i++) {
      // Doubling N: flash's extra bytes at most double (plus a constant table), naive's about quadruple.
      expect(flash[i]!, `flash ${flash}`).toBeLessThanOrEqual(2 * flash[i - 1]! + 256);
      expect(naive[i]!, `naive ${naive}`).toBeGreaterThanOrEqual(3.5 * naive[i - 1]!);
    }
    expect(naive[2]!).toBeGreaterThan(128 * 128 * 4);
    expect(flash[2]!).toBeLessThan(128 * d * 4);
  });
});
