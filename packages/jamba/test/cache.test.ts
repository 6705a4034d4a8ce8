import { DeviceLimitError } from '@longseq/backend';
import { UnknownSequenceError } from '@longseq/paged-kv';
import { describeEachBackend } from '@longseq/test-harness';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CacheBudgetError, JambaModel } from './imports';
import { GOLDEN, REL_TOL, maxRelativeError, readGolden } from './helpers';

const golden = readGolden();
const vocab = 128;
const promptA = golden.input_ids[0]!.slice(0, 6);
const promptB = golden.input_ids[1]!.slice(0, 6);

describeEachBackend('JambaModel through the hybrid cache', (ctx) => {
  let model: JambaModel;
  beforeAll(async () => {
    model = await JambaModel.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  /** Logits of the last position of each sequence by a full forward (no cache). */
  async function lastLogits(seqs: number[][]): Promise<Float32Array> {
    const { logits } = await model.forward(seqs, { lastOnly: true });
    const out = (await logits.read()) as Float32Array;
    logits.dispose();
    return out;
  }

  it('generation through the cache equals generation recomputing everything (greedy, batch 2; seeded sampling)', async () => {
    const greedy = { maxNewTokens: 6, returnLogits: true };
    const cached = await model.generate([promptA, promptB], greedy);
    const recomputed = await model.generate([promptA, promptB], { ...greedy, useCache: false });
    expect(cached.ids).toEqual(recomputed.ids);
    for (let t = 0; t < 6; t++)
      expect(maxRelativeError(cached.logits![t]!, recomputed.logits![t]!, vocab), `step ${t}`).toBeLessThan(
        REL_TOL,
      );
    const sampling = { maxNewTokens: 6, temperature: 1.2, topK: 50, topP: 0.95, seed: 11 };
    const a = await model.generate([promptA, promptB], sampling);
    const b = await model.generate([promptA, promptB], { ...sampling, useCache: false });
    expect(a.ids).toEqual(b.ids);
  });

  const paths: ('auto' | 'composed')[] = ctx.name === 'webgpu' ? ['auto', 'composed'] : ['auto'];
  for (const path of paths)
    it(`prefill then step (decode path ${path}): each step equals a forward over the whole sequence, across block boundaries`, async () => {
      const cache = model.createCache({ maxSequences: 2, blockSize: 4, maxTokens: 16 });
      model.decodePath = path;
      try {
        const { seqIds, logits } = await model.prefill([promptA.slice(0, 3), promptB.slice(0, 3)], cache);
        const first = await logits.read();
        logits.dispose();
        const full = [promptA.slice(0, 3), promptB.slice(0, 3)];
        expect(maxRelativeError(first, await lastLogits(full), vocab)).toBeLessThan(REL_TOL);
        for (let t = 3; t < 9; t++) {
          const next = [golden.input_ids[0]![t]!, golden.input_ids[1]![t]!];
          const stepped = await model.step(seqIds, next, cache);
          expect(stepped.shape).toEqual([2, vocab]);
          const got = await stepped.read();
          stepped.dispose();
          full[0]!.push(next[0]!);
          full[1]!.push(next[1]!);
          expect(maxRelativeError(got, await lastLogits(full), vocab), `position ${t}`).toBeLessThan(REL_TOL);
        }
        expect(seqIds.map((s) => cache.length(s))).toEqual([9, 9]);
        expect(cache.kv!.blockTable(cache.kvSequence(seqIds[0]!))).toHaveLength(3);
      } finally {
        model.decodePath = 'auto';
        cache.dispose();
      }
    });

  it('fork shares the KV blocks and copies the Mamba states; appending copies the shared partial block', async () => {
    const cache = model.createCache({ maxSequences: 3, blockSize: 4, maxTokens: 12 });
    try {
      const { seqIds, logits } = await model.prefill([promptA], cache);
      logits.dispose();
      const parent = seqIds[0]!;
      const before = cache.memory();
      const child = await cache.fork(parent);
      const after = cache.memory();
      const table = (s: number) => cache.kv!.blockTable(cache.kvSequence(s));
      expect(table(child)).toEqual(table(parent));
      expect(after.kvBlocksInUse).toBe(before.kvBlocksInUse); // shared, not copied
      expect(after.mambaStateBytesInUse).toBe(2 * before.mambaStateBytesInUse);
      expect(cache.slot(child)).not.toBe(cache.slot(parent));
      // both continue with different tokens: the partial last block (tokens 4, 5) is copied on write
      const [a, b] = [5, 77];
      const stepped = await model.step([parent, child], [a, b], cache);
      const got = await stepped.read();
      stepped.dispose();
      expect(table(child)[0]).toBe(table(parent)[0]);
      expect(table(child)[1]).not.toBe(table(parent)[1]);
      expect(cache.memory().kvBlocksInUse).toBe(before.kvBlocksInUse + 1);
      const expected = await lastLogits([
        [...promptA, a],
        [...promptA, b],
      ]);
      expect(maxRelativeError(got, expected, vocab)).toBeLessThan(REL_TOL);
      // the child alone (its state slot is gathered from the pool)
      const childOnly = await model.step([child], [9], cache);
      const gotChild = await childOnly.read();
      childOnly.dispose();
      expect(maxRelativeError(gotChild, await lastLogits([[...promptA, b, 9]]), vocab)).toBeLessThan(REL_TOL);
    } finally {
      cache.dispose();
    }
  });

  it('parallel sampling (numSamples) forks each prompt: seeded, reproducible, one row per sample', async () => {
    const options = { maxNewTokens: 5, temperature: 1.5, numSamples: 3, seed: 3 };
    const a = await model.generate([promptA, promptB], options);
    const b = await model.generate([promptA, promptB], options);
    expect(a.ids).toHaveLength(6);
    expect(a.ids).toEqual(b.ids);
    // each sample equals the same sampler run without a cache
    const c = await model.generate([promptA, promptB], { ...options, useCache: false });
    expect(c.ids).toEqual(a.ids);
    const d = await model.generate([promptA, promptB], { ...options, seed: 4 });
    expect(d.ids).not.toEqual(a.ids);
  });

  it('prefix caching shares the full blocks of an equal prefix, and the logits stay right', async () => {
    const cache = model.createCache({ maxSequences: 2, blockSize: 4, maxTokens: 12 });
    try {
      const shared = golden.input_ids[0]!.slice(0, 9);
      const first = await model.prefill([shared], cache);
      first.logits.dispose();
      const other = [...shared.slice(0, 8), 100];
      const blocksBefore = cache.memory().kvBlocksInUse;
      const second = await model.prefill([other], cache);
      const got = await second.logits.read();
      second.logits.dispose();
      const t1 = cache.kv!.blockTable(cache.kvSequence(first.seqIds[0]!));
      const t2 = cache.kv!.blockTable(cache.kvSequence(second.seqIds[0]!));
      expect(t2.slice(0, 2)).toEqual(t1.slice(0, 2));
      expect(cache.memory().kvBlocksInUse).toBe(blocksBefore + 1);
      expect(maxRelativeError(got, await lastLogits([other]), vocab)).toBeLessThan(REL_TOL);
      const next = await model.step(second.seqIds, [4], cache);
      const gotNext = await next.read();
      next.dispose();
      expect(maxRelativeError(gotNext, await lastLogits([[...other, 4]]), vocab)).toBeLessThan(REL_TOL);
    } finally {
      cache.dispose();
    }
  });

  it("memory(): the allocator's accounting of KV blocks and Mamba states, matching the device's bytes", async () => {
    const start = ctx.backend.memory().bytes;
    const cache = model.createCache({ maxSequences: 2, blockSize: 4, numBlocks: 10 });
    try {
      const m0 = cache.memory();
      const { dInner: D, dConv: K, dState: N, numKvHeads, headDim } = model.config;
      const blockBytes = 2 * 2 * 4 * numKvHeads * headDim * 4; // K+V x 2 attention layers x 4 tokens x 4 bytes
      const stateBytes = 2 * D * (K - 1 + N) * 4; // conv + SSM, 2 Mamba layers
      expect(m0).toMatchObject({
        kvBlockBytes: blockBytes,
        kvBlocksTotal: 10,
        kvBlocksInUse: 0,
        kvBytesAllocated: 10 * blockBytes,
        mambaStateBytesPerSequence: stateBytes,
        mambaStateBytesAllocated: 2 * stateBytes,
        bytesInUse: 0,
        sequences: 0,
      });
      expect(ctx.backend.memory().bytes - start).toBe(m0.bytesAllocated);
      const { seqIds, logits } = await model.prefill([promptA], cache); // 6 tokens: 2 blocks
      logits.dispose();
      const m1 = cache.memory();
      expect(m1.kvBlocksInUse).toBe(2);
      expect(m1.kvBytesInUse).toBe(2 * blockBytes);
      expect(m1.mambaStateBytesInUse).toBe(stateBytes);
      expect(m1.tokens).toEqual({ [seqIds[0]!]: 6 });
      expect(m1.layers.map((l) => [l.kind, l.bytesInUse])).toEqual([
        ['mamba', stateBytes / 2],
        ['attention', blockBytes],
        ['mamba', stateBytes / 2],
        ['attention', blockBytes],
      ]);
      // decoding 20 more tokens grows the KV blocks and leaves the Mamba states as they are
      let id = 1;
      for (let i = 0; i < 4; i++) {
        const l = await model.step(seqIds, [id], cache);
        id = (id * 7 + 3) % vocab;
        l.dispose();
      }
      const m2 = cache.memory();
      expect(m2.kvBlocksInUse).toBe(3);
      expect(m2.mambaStateBytesInUse).toBe(stateBytes);
      cache.free(seqIds[0]!);
      const m3 = cache.memory();
      expect(m3.sequences).toBe(0);
      expect(m3.kvBlocksInUse).toBe(0);
      expect(m3.kvBlocksCached).toBe(2); // full blocks stay for prefix reuse
    } finally {
      cache.dispose();
    }
  });

  it('a context beyond the cache budget is a CacheBudgetError naming the limit, and the cache is unchanged', async () => {
    const cache = model.createCache({ maxSequences: 1, blockSize: 4, numBlocks: 2 });
    try {
      const long = golden.input_ids[0]!.slice(0, 9); // 3 blocks
      const before = cache.snapshot();
      const memBefore = ctx.backend.memory();
      const err = await model.prefill([long], cache).catch((e) => e);
      expect(err).toBeInstanceOf(CacheBudgetError);
      expect(err).toBeInstanceOf(DeviceLimitError);
      expect(err).toMatchObject({ argument: 'prompts', resource: 'KV blocks', needed: 3, available: 2 });
      expect(err.message).toMatch(/KV blocks of the cache \(2 blocks of 4 tokens/);
      expect(cache.snapshot()).toEqual(before);
      expect(ctx.backend.memory().tensors).toBe(memBefore.tensors);
      // fill it exactly (8 tokens), then one more token does not fit
      const { seqIds, logits } = await model.prefill([long.slice(0, 8)], cache);
      logits.dispose();
      const full = cache.snapshot();
      const stepErr = await model.step(seqIds, [1], cache).catch((e) => e);
      expect(stepErr).toMatchObject({
        name: 'CacheBudgetError',
        resource: 'KV blocks',
        needed: 1,
        available: 0,
      });
      expect(cache.snapshot()).toEqual(full);
      // no second sequence: one state slot
      const seqErr = await model.prefill([[1, 2]], cache).catch((e) => e);
      expect(seqErr).toMatchObject({ resource: 'sequences', needed: 1, available: 0 });
      await expect(cache.fork(seqIds[0]!)).rejects.toMatchObject({ resource: 'sequences' });
      expect(cache.snapshot()).toEqual(full);
      // generate with a context beyond the budget of its own cache
      await expect(
        model.generate(long, { maxNewTokens: 4, cacheOptions: { numBlocks: 2, blockSize: 4 } }),
      ).rejects.toBeInstanceOf(CacheBudgetError);
    } finally {
      cache.dispose();
    }
  });

  it('bad sequences, ids and options are refused before any work, naming the argument', async () => {
    const cache = model.createCache({ maxSequences: 2, blockSize: 4 });
    try {
      const { seqIds, logits } = await model.prefill([promptA], cache);
      logits.dispose();
      const snap = cache.snapshot();
      await expect(model.step([seqIds[0]! + 5], [1], cache)).rejects.toBeInstanceOf(UnknownSequenceError);
      await expect(model.step(seqIds, [1, 2], cache)).rejects.toMatchObject({
        name: 'ShapeError',
        argument: 'ids',
      });
      await expect(model.step(seqIds, [128], cache)).rejects.toMatchObject({ argument: 'ids[0]' });
      await expect(model.step([seqIds[0]!, seqIds[0]!], [1, 2], cache)).rejects.toMatchObject({
        argument: 'seqIds',
      });
      expect(cache.snapshot()).toEqual(snap);
      await expect(model.forward([[1, 2], [3]])).rejects.toMatchObject({
        name: 'ShapeError',
        argument: 'ids',
      });
      await expect(model.forward([[]])).rejects.toMatchObject({ name: 'ShapeError', argument: 'ids' });
      await expect(model.forward([[1, -1]])).rejects.toMatchObject({ argument: 'ids[0]' });
      await expect(model.generate([1, 2], { maxNewTokens: -1 })).rejects.toMatchObject({
        argument: 'options.maxNewTokens',
      });
      await expect(model.generate([1, 2], { maxNewTokens: 2, temperature: 0 })).rejects.toMatchObject({
        argument: 'options.temperature',
      });
      await expect(model.generate([1, 2], { maxNewTokens: 2, numSamples: 0 })).rejects.toMatchObject({
        argument: 'options.numSamples',
      });
      await expect(model.generate([1, 2], { maxNewTokens: 2, cache, useCache: false })).rejects.toMatchObject(
        {
          argument: 'options.cache',
        },
      );
      const disposed = model.createCache();
      disposed.dispose();
      await expect(model.prefill([[1]], disposed)).rejects.toMatchObject({ argument: 'cache' });
      expect(() => model.createCache({ maxSequences: 0 })).toThrow(/options\.maxSequences/);
    } finally {
      cache.dispose();
    }
  });

  it('generate with a given cache leaves it as it found it (its sequences freed)', async () => {
    const cache = model.createCache({ maxSequences: 2, blockSize: 4, maxTokens: 16 });
    try {
      const r = await model.generate(promptA, { maxNewTokens: 3, cache });
      expect(r.ids[0]).toHaveLength(3);
      expect(cache.memory()).toMatchObject({ sequences: 0, kvBlocksInUse: 0 });
    } finally {
      cache.dispose();
    }
  });
});
