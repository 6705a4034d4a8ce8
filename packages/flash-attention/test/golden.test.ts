/**
 * ../shared/golden/attention.json (PyTorch float64) on every backend, every case, flash and
 * naive. The file writes -1e30 for the logsumexp of a fully masked row; the API returns
 * -Infinity there, so the file's value is mapped before comparing.
 */
import { readFileSync } from 'node:fs';
import { describeEachBackend, expectClose } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { type AttentionAlgorithm, attention, attentionRef } from '../src/index';

interface GoldenCase {
  b: number;
  hq: number;
  hkv: number;
  nq: number;
  nk: number;
  d: number;
  causal: boolean;
  window: [number, number] | null;
  softcap: number;
  scale: number;
  q: unknown;
  k: unknown;
  v: unknown;
  out: unknown;
  lse: unknown;
}

const golden = JSON.parse(
  readFileSync(new URL('../../../../shared/golden/attention.json', import.meta.url), 'utf8'),
) as { cases: GoldenCase[] };

const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);
const MASKED_LSE = -1e30;

function describeCase(c: GoldenCase): string {
  const parts = [`b${c.b}`, `h${c.hq}/${c.hkv}`, `nq${c.nq}`, `nk${c.nk}`, `d${c.d}`];
  if (c.causal) parts.push('causal');
  if (c.window) parts.push(`window[${c.window}]`);
  if (c.softcap > 0) parts.push(`softcap${c.softcap}`);
  return parts.join(' ');
}

describeEachBackend('attention golden vectors', (ctx) => {
  it('the file has the cases it promises', () => {
    expect(golden.cases.length).toBeGreaterThanOrEqual(9);
  });
  for (const algorithm of ['flash', 'naive'] as AttentionAlgorithm[]) {
    golden.cases.forEach((c, index) => {
      it(`case ${index} (${describeCase(c)}) ${algorithm}`, async () => {
        const { backend } = ctx;
        const q = Float32Array.from(flat(c.q));
        const k = Float32Array.from(flat(c.k));
        const v = Float32Array.from(flat(c.v));
        const expectedOut = flat(c.out);
        const expectedLse = flat(c.lse).map((x) => (x <= MASKED_LSE ? Number.NEGATIVE_INFINITY : x));
        const options = {
          causal: c.causal,
          window: c.window ?? undefined,
          softcap: c.softcap,
          scale: c.scale,
        };
        const host = (data: Float32Array, shape: number[]) => ({ data, shape });
        const qShape = [c.b, c.hq, c.nq, c.d];
        const kShape = [c.b, c.hkv, c.nk, c.d];
        const ref32 = attentionRef(host(q, qShape), host(k, kShape), host(v, kShape), {
          ...options,
          precision: 'f32',
        });
        const tq = backend.tensor(q, qShape);
        const tk = backend.tensor(k, kShape);
        const tv = backend.tensor(v, kShape);
        try {
          const { output, lse } = await attention(tq, tk, tv, { ...options, algorithm, returnLse: true });
          const got = await output.read();
          const gotLse = await lse.read();
          output.dispose();
          lse.dispose();
          expectClose(got, expectedOut, ref32.output.data, { label: 'out' });
          expectClose(gotLse, expectedLse, ref32.lse.data, { label: 'lse' });
        } finally {
          tq.dispose();
          tk.dispose();
          tv.dispose();
        }
      });
    });
  }
  it('the float64 reference reproduces the file', () => {
    for (const c of golden.cases) {
      const host = (x: unknown, shape: number[]) => ({ data: Float32Array.from(flat(x)), shape });
      const ref = attentionRef(
        host(c.q, [c.b, c.hq, c.nq, c.d]),
        host(c.k, [c.b, c.hkv, c.nk, c.d]),
        host(c.v, [c.b, c.hkv, c.nk, c.d]),
        {
          causal: c.causal,
          window: c.window ?? undefined,
          softcap: c.softcap,
          scale: c.scale,
        },
      );
      const out = flat(c.out);
      const lse = flat(c.lse);
      for (let i = 0; i < out.length; i++) expect(Math.abs(ref.output.data[i]! - out[i]!)).toBeLessThan(1e-7);
      for (let i = 0; i < lse.length; i++) {
        if (lse[i]! <= MASKED_LSE) expect(ref.lse.data[i]).toBe(Number.NEGATIVE_INFINITY);
        else expect(Math.abs(ref.lse.data[i]! - lse[i]!)).toBeLessThan(1e-7);
      }
    }
  });
});
