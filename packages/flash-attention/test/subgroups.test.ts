/**
 * The WebGPU forward's subgroup-shuffle row max: it runs where a row's threads (bc / tc)
 * fit in the device's smallest subgroup, so a tile with bc / tc = 4 exercises it on
 * SwiftShader (subgroups of 4) as 16 / 2 = 8 or more does on a GPU with 32-wide subgroups.
 * With subgroups off, the workgroup-memory path gives the same result. (gpu.js ignores both
 * options; there it is one more shape against the reference.)
 */
import {
  caseSeed,
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import { it } from 'vitest';
import { attention, attentionRef } from '../src/index';

const SEED = freshSeed();

describeEachBackend('attention subgroup row max', (ctx) => {
  it('a tile whose rows fit one subgroup matches the reference, with and without subgroups', async () => {
    const { backend } = ctx;
    const seed = caseSeed(SEED, 'subgroups');
    const random = rng(seed);
    const shape = [1, 2, 37, 32];
    const q = randomFloats(2 * 37 * 32, random, -2, 2);
    const k = randomFloats(2 * 37 * 32, random, -2, 2);
    const v = randomFloats(2 * 37 * 32, random);
    const host = (data: Float32Array) => ({ data, shape });
    const options = { causal: true, window: [20, 0] as [number, number] };
    const ref64 = attentionRef(host(q), host(k), host(v), options);
    const ref32 = attentionRef(host(q), host(k), host(v), { ...options, precision: 'f32' });
    const tq = backend.tensor(q, shape);
    const tk = backend.tensor(k, shape);
    const tv = backend.tensor(v, shape);
    try {
      const ntx = Math.max(1, Math.min(16, backend.limits.subgroupSize || 4));
      const tile = { br: 16, bc: ntx * 2, tr: 2, tc: 2 };
      for (const subgroups of [true, false]) {
        const { output, lse } = await attention(tq, tk, tv, {
          ...options,
          tile,
          subgroups,
          returnLse: true,
        });
        const got = await output.read();
        const gotLse = await lse.read();
        output.dispose();
        lse.dispose();
        expectClose(got, ref64.output.data, ref32.output.data, {
          label: `out subgroups=${subgroups}`,
          seed,
        });
        expectClose(gotLse, ref64.lse.data, ref32.lse.data, { label: `lse subgroups=${subgroups}`, seed });
      }
    } finally {
      for (const t of [tq, tk, tv]) t.dispose();
    }
  });
});
