import {
  ArgumentError,
  DTypeError,
  DeviceLimitError,
  ShapeError,
  compareToReference,
} from '@longseq/backend';
import { attentionVarlen } from '@longseq/flash-attention';
import {
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  randomInt,
  rng,
  type Rng,
} from '@longseq/test-harness';
import { describe, expect, it } from 'vitest';
import {
  FreedBlockError,
  PagedKvCache,
  contiguousAttentionRef,
  copyBlocks,
  copyBlocksRef,
  pagedAttention,
  pagedAttentionRef,
  writeKv,
  writeKvRef,
} from '../src';

interface Case {
  name: string;
  lengths: number[];
  heads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  chunk?: number;
  softcap?: number;
  alibi?: boolean;
  partitionSize?: number;
  workgroupSize?: number;
}

/** ALiBi's geometric slopes, 2^(-8 i / H). */
const alibiSlopes = (heads: number) => Array.from({ length: heads }, (_, i) => 2 ** ((-8 * (i + 1)) / heads));

/** Random block tables: each sequence's blocks drawn from a shuffled pool, so never contiguous or ordered. */
function randomPaging(random: Rng, lengths: number[], blockSize: number, spare: number) {
  const perSeq = lengths.map((l) => Math.max(1, Math.ceil(l / blockSize)));
  const numBlocks = perSeq.reduce((a, b) => a + b, 0) + spare;
  const pool = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = randomInt(random, 0, i);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  const width = Math.max(...perSeq);
  const tables = new Int32Array(lengths.length * width);
  let next = 0;
  perSeq.forEach((count, s) => {
    // unused trailing entries point at real blocks too: the kernel must not read past the length
    for (let i = 0; i < width; i++) tables[s * width + i] = i < count ? pool[next++]! : pool[numBlocks - 1]!;
  });
  return { numBlocks, width, tables };
}

function makeInputs(random: Rng, c: Case) {
  const chunk = c.chunk ?? 1;
  const { numBlocks, width, tables } = randomPaging(random, c.lengths, c.blockSize, 3);
  const cacheSize = numBlocks * c.blockSize * c.kvHeads * c.headDim;
  const rows = c.lengths.length * chunk;
  return {
    q: { shape: [rows, c.heads, c.headDim], data: randomFloats(rows * c.heads * c.headDim, random, -2, 2) },
    keyCache: {
      shape: [numBlocks, c.blockSize, c.kvHeads, c.headDim],
      data: randomFloats(cacheSize, random, -2, 2),
    },
    valueCache: {
      shape: [numBlocks, c.blockSize, c.kvHeads, c.headDim],
      data: randomFloats(cacheSize, random, -1, 1),
    },
    blockTables: { shape: [c.lengths.length, width], data: tables },
    contextLens: Int32Array.from(c.lengths),
  };
}

/** Gathers each sequence's keys or values into a contiguous [L, KVH, D] array through its table. */
function gather(
  cache: { shape: number[]; data: ArrayLike<number> },
  tables: Int32Array,
  width: number,
  seq: number,
  length: number,
) {
  const [, blockSize, kvHeads, d] = cache.shape as [number, number, number, number];
  const row = kvHeads * d;
  const data = new Float64Array(Math.max(length, 1) * row);
  for (let t = 0; t < length; t++) {
    const slot = tables[seq * width + Math.floor(t / blockSize)]! * blockSize + (t % blockSize);
    for (let e = 0; e < row; e++) data[t * row + e] = cache.data[slot * row + e]!;
  }
  return { shape: [length, kvHeads, d], data };
}

const CASES: Case[] = [
  {
    // more keys than a workgroup covers in one pass (64 key groups of 4 lanes on SwiftShader)
    name: 'decode, long contexts in one default partition, block size 16',
    lengths: [150, 97],
    heads: 4,
    kvHeads: 1,
    headDim: 16,
    blockSize: 16,
  },
  {
    // few key groups per workgroup: many unrolled steps, the last one partly past the length
    name: 'decode, workgroups of 32 threads, GQA 4:1, d = 32',
    lengths: [200, 37],
    heads: 8,
    kvHeads: 2,
    headDim: 32,
    blockSize: 16,
    workgroupSize: 32,
  },
  {
    // the subgroup kernel puts all 8 kv heads in one workgroup here (one key group each or more)
    name: 'decode, 8 kv heads, GQA 2:1, block size 8',
    lengths: [40, 75],
    heads: 16,
    kvHeads: 8,
    headDim: 16,
    blockSize: 8,
  },
  { name: 'decode, one sequence of length 1', lengths: [1], heads: 2, kvHeads: 2, headDim: 8, blockSize: 4 },
  {
    name: 'decode, odd lengths, block size not dividing them, GQA 4:1',
    lengths: [7, 33, 1, 20],
    heads: 4,
    kvHeads: 1,
    headDim: 8,
    blockSize: 5,
  },
  {
    name: 'decode, many partitions (split-K) and GQA 2:1',
    lengths: [70, 5, 49],
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    blockSize: 3,
    partitionSize: 16,
  },
  {
    name: 'decode, head dim not a multiple of 4 (scalar path), softcap',
    lengths: [9, 17],
    heads: 3,
    kvHeads: 3,
    headDim: 6,
    blockSize: 4,
    softcap: 2,
  },
  {
    name: 'prefill, chunk of 5 against the cached prefix (causal, bottom-right), ALiBi',
    alibi: true,
    lengths: [12, 5, 23],
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    blockSize: 4,
    chunk: 5,
    partitionSize: 16,
  },
  {
    name: 'a zero-length sequence gives zeros',
    lengths: [0, 6],
    heads: 2,
    kvHeads: 1,
    headDim: 4,
    blockSize: 2,
  },
];

describe('pagedAttentionRef', () => {
  it('equals contiguous attention on the gathered keys and values', () => {
    const seed = freshSeed();
    const random = rng(seed);
    for (const c of CASES) {
      const inputs = makeInputs(random, c);
      const width = inputs.blockTables.shape[1]!;
      const options = {
        chunk: c.chunk ?? 1,
        softcap: c.softcap ?? 0,
        ...(c.alibi ? { alibiSlopes: alibiSlopes(c.heads) } : {}),
      };
      const paged = pagedAttentionRef(inputs, options);
      const keys = c.lengths.map((l, s) => gather(inputs.keyCache, inputs.blockTables.data, width, s, l));
      const values = c.lengths.map((l, s) => gather(inputs.valueCache, inputs.blockTables.data, width, s, l));
      const contiguous = contiguousAttentionRef(inputs.q, keys, values, options);
      for (let i = 0; i < paged.data.length; i++) expect(paged.data[i]).toBeCloseTo(contiguous.data[i]!, 12);
    }
  });
});

describeEachBackend('pagedAttention', (ctx) => {
  // WebGPU has two score loops: lanes of a subgroup sharing a key ('auto' picks it where the
  // device has subgroups, as SwiftShader does) and one key per thread
  const variants = ctx.name === 'webgpu' ? (['auto', 'thread'] as const) : (['auto'] as const);
  for (const c of CASES)
    for (const variant of variants) {
      it(`${c.name} (${variant}) matches the float64 reference`, async () => {
        const seed = freshSeed();
        const random = rng(seed);
        const inputs = makeInputs(random, c);
        const b = ctx.backend;
        const q = b.tensor(inputs.q.data, inputs.q.shape);
        const kc = b.tensor(inputs.keyCache.data, inputs.keyCache.shape);
        const vc = b.tensor(inputs.valueCache.data, inputs.valueCache.shape);
        const bt = b.tensor(inputs.blockTables.data, inputs.blockTables.shape, 'i32');
        const cl = b.tensor(inputs.contextLens, [c.lengths.length], 'i32');
        const options = {
          chunk: c.chunk ?? 1,
          softcap: c.softcap ?? 0,
          ...(c.alibi ? { alibiSlopes: alibiSlopes(c.heads) } : {}),
        };
        const out = await pagedAttention(q, kc, vc, bt, cl, {
          ...options,
          maxContextLen: Math.max(...c.lengths),
          variant,
          ...(c.partitionSize ? { partitionSize: c.partitionSize } : {}),
          ...(c.workgroupSize ? { workgroupSize: c.workgroupSize } : {}),
        });
        expect(out.shape).toEqual(inputs.q.shape);
        const ref = pagedAttentionRef(inputs, options);
        const ref32 = pagedAttentionRef(inputs, { ...options, precision: 'f32' });
        expectClose(await out.read(), ref.data, ref32.data, { label: c.name, seed, atol: 1e-5 });
        for (const t of [q, kc, vc, bt, cl, out]) t.dispose();
      });
    }

  // the paged kernel against flash-attention's contiguous (packed varlen) attention on the same data
  const CROSS: Case[] = [
    {
      name: 'decode, GQA 2:1, odd lengths',
      lengths: [7, 33, 1, 20],
      heads: 4,
      kvHeads: 2,
      headDim: 16,
      blockSize: 5,
      partitionSize: 16,
    },
    {
      name: 'prefill chunk of 3, causal, ALiBi',
      alibi: true,
      lengths: [9, 3, 14],
      heads: 2,
      kvHeads: 1,
      headDim: 16,
      blockSize: 4,
      chunk: 3,
    },
  ];
  for (const c of CROSS) {
    it(`${c.name}: equals flash-attention's contiguous attention on the gathered keys and values`, async () => {
      const seed = freshSeed();
      const random = rng(seed);
      const inputs = makeInputs(random, c);
      const chunk = c.chunk ?? 1;
      const width = inputs.blockTables.shape[1]!;
      const b = ctx.backend;
      const q = b.tensor(inputs.q.data, inputs.q.shape);
      const kc = b.tensor(inputs.keyCache.data, inputs.keyCache.shape);
      const vc = b.tensor(inputs.valueCache.data, inputs.valueCache.shape);
      const bt = b.tensor(inputs.blockTables.data, inputs.blockTables.shape, 'i32');
      const cl = b.tensor(inputs.contextLens, [c.lengths.length], 'i32');
      const slopes = c.alibi ? { alibiSlopes: alibiSlopes(c.heads) } : {};
      const paged = await pagedAttention(q, kc, vc, bt, cl, {
        chunk,
        ...slopes,
        ...(c.partitionSize ? { partitionSize: c.partitionSize } : {}),
      });
      const keys = c.lengths.map((l, s) => gather(inputs.keyCache, inputs.blockTables.data, width, s, l));
      const values = c.lengths.map((l, s) => gather(inputs.valueCache, inputs.blockTables.data, width, s, l));
      const total = c.lengths.reduce((a, l) => a + l, 0);
      const row = c.kvHeads * c.headDim;
      const kPacked = new Float32Array(total * row);
      const vPacked = new Float32Array(total * row);
      let offset = 0;
      c.lengths.forEach((l, s) => {
        kPacked.set(keys[s]!.data.subarray(0, l * row), offset * row);
        vPacked.set(values[s]!.data.subarray(0, l * row), offset * row);
        offset += l;
      });
      const k = b.tensor(kPacked, [total, c.kvHeads, c.headDim]);
      const v = b.tensor(vPacked, [total, c.kvHeads, c.headDim]);
      const cuSeqlensQ = c.lengths.map((_, s) => s * chunk).concat([c.lengths.length * chunk]);
      const cuSeqlensK = [0];
      for (const l of c.lengths) cuSeqlensK.push(cuSeqlensK[cuSeqlensK.length - 1]! + l);
      const contiguous = await attentionVarlen(q, k, v, {
        cuSeqlensQ,
        cuSeqlensK,
        causal: chunk > 1,
        ...slopes,
      });
      const got = await paged.read();
      const want = await contiguous.read();
      const ref = pagedAttentionRef(inputs, { chunk, ...slopes });
      const ref32 = pagedAttentionRef(inputs, { chunk, ...slopes, precision: 'f32' });
      const mine = expectClose(got, ref.data, ref32.data, { label: `${c.name} paged`, seed, atol: 1e-5 });
      const theirs = compareToReference(want, ref.data, ref32.data, { atol: 1e-5 });
      // two float32 computations of the same function: within the sum of their allowances
      let diff = 0;
      for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
      expect(diff, `paged vs flash-attention (seed ${seed})`).toBeLessThanOrEqual(
        mine.allowed + theirs.allowed,
      );
      for (const t of [q, kc, vc, bt, cl, paged, k, v, contiguous]) t.dispose();
    });
  }

  it('an empty batch returns an empty output', async () => {
    const b = ctx.backend;
    const q = b.tensor([], [0, 2, 4]);
    const kc = b.tensor(randomFloats(2 * 2 * 1 * 4, rng(1)), [2, 2, 1, 4]);
    const vc = b.tensor(randomFloats(2 * 2 * 1 * 4, rng(2)), [2, 2, 1, 4]);
    const bt = b.tensor([], [0, 1], 'i32');
    const cl = b.tensor([], [0], 'i32');
    const out = await pagedAttention(q, kc, vc, bt, cl);
    expect(out.shape).toEqual([0, 2, 4]);
    for (const t of [q, kc, vc, bt, cl, out]) t.dispose();
  });

  it('bad inputs throw typed errors naming the argument, before any GPU work', async () => {
    const b = ctx.backend;
    const q = b.tensor(randomFloats(2 * 4 * 8, rng(3)), [2, 4, 8]);
    const kc = b.tensor(randomFloats(3 * 2 * 2 * 8, rng(4)), [3, 2, 2, 8]);
    const vc = b.tensor(randomFloats(3 * 2 * 2 * 8, rng(5)), [3, 2, 2, 8]);
    const bt = b.tensor([0, 1, 2, 0], [2, 2], 'i32');
    const cl = b.tensor([3, 2], [2], 'i32');
    const btF = b.tensor([0, 1, 2, 0], [2, 2]);
    const q3 = b.tensor(randomFloats(2 * 3 * 8, rng(6)), [2, 3, 8]);
    const before = b.memory();
    await expect(pagedAttention(q, kc, vc, btF, cl)).rejects.toThrow(DTypeError);
    await expect(pagedAttention(q3, kc, vc, bt, cl)).rejects.toThrow(/multiple of keyCache's 2 kv heads/);
    await expect(pagedAttention(q, kc, q, bt, cl)).rejects.toThrow(ShapeError);
    await expect(pagedAttention(q, kc, vc, bt, cl, { chunk: 2 })).rejects.toThrow(/seqs x chunk/);
    await expect(pagedAttention(q, kc, vc, bt, cl, { maxContextLen: 5 })).rejects.toThrow(ArgumentError);
    await expect(pagedAttention(q, kc, vc, bt, cl, { partitionSize: 24 })).rejects.toThrow(/power of two/);
    await expect(pagedAttention(q, kc, vc, bt, cl, { softcap: -1 })).rejects.toThrow(ArgumentError);
    await expect(pagedAttention(q, kc, vc, bt, cl, { alibiSlopes: [1, 2] })).rejects.toThrow(/alibiSlopes/);
    await expect(pagedAttention(q, kc, vc, bt, q)).rejects.toThrow(DTypeError);
    await expect(pagedAttention(q, kc, vc, bt, cl, { variant: 'fast' as never })).rejects.toThrow(
      /options.variant/,
    );
    await expect(pagedAttention(q, kc, vc, bt, cl, { workgroupSize: 48 })).rejects.toThrow(
      /options.workgroupSize.*power of two/,
    );
    if (b.kind === 'webgpu')
      await expect(
        pagedAttention(q, kc, vc, bt, cl, { workgroupSize: 2 * b.limits.maxWorkgroupInvocations }),
      ).rejects.toThrow(DeviceLimitError);
    expect(b.memory().tensors).toBe(before.tensors);
    for (const t of [q, kc, vc, bt, cl, btF, q3]) t.dispose();
  });
});

describeEachBackend('writeKv and copyBlocks', (ctx) => {
  it('writeKv scatters rows into their slots and skips negative ones', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const b = ctx.backend;
    const shape = [5, 3, 2, 4];
    const cacheK = randomFloats(5 * 3 * 8, random);
    const cacheV = randomFloats(5 * 3 * 8, random);
    const k = randomFloats(4 * 8, random);
    const v = randomFloats(4 * 8, random);
    const slots = [13, -1, 0, 7];
    const kc = b.tensor(cacheK, shape);
    const vc = b.tensor(cacheV, shape);
    const kt = b.tensor(k, [4, 2, 4]);
    const vt = b.tensor(v, [4, 2, 4]);
    const st = b.tensor(slots, [4], 'i32');
    await writeKv(kt, vt, st, kc, vc);
    expect(Array.from(await kc.read())).toEqual(
      Array.from(writeKvRef({ shape, data: cacheK }, { shape: [4, 2, 4], data: k }, slots)),
    );
    expect(Array.from(await vc.read())).toEqual(
      Array.from(writeKvRef({ shape, data: cacheV }, { shape: [4, 2, 4], data: v }, slots)),
    );
    await expect(writeKv(kt, vt, st, kc, kc)).rejects.toThrow(ArgumentError);
    await expect(writeKv(kt, vt, kt, kc, vc)).rejects.toThrow(DTypeError);
    for (const t of [kc, vc, kt, vt, st]) t.dispose();
  });

  it('copyBlocks copies in place (copy-on-write) and across tensors (swap)', async () => {
    const random = rng(freshSeed());
    const b = ctx.backend;
    const shape = [6, 3, 1, 5];
    const data = randomFloats(6 * 15, random);
    const other = randomFloats(2 * 15, random);
    const cache = b.tensor(data, shape);
    const staged = b.tensor(other, [2, 3, 1, 5]);
    const pairs: [number, number][] = [
      [4, 1],
      [0, 5],
    ];
    await copyBlocks(cache, cache, pairs);
    const expected = copyBlocksRef({ shape, data }, { shape, data }, pairs);
    expect(Array.from(await cache.read())).toEqual(Array.from(Float32Array.from(expected)));
    await copyBlocks(staged, cache, [[1, 2]]);
    const expected2 = copyBlocksRef({ shape: [2, 3, 1, 5], data: other }, { shape, data: expected }, [
      [1, 2],
    ]);
    expect(Array.from(await cache.read())).toEqual(Array.from(Float32Array.from(expected2)));
    await copyBlocks(cache, staged, [[3, 0]]);
    expect(Array.from((await staged.read()).slice(0, 15))).toEqual(
      Array.from(Float32Array.from(expected2.slice(45, 60))),
    );
    await expect(
      copyBlocks(cache, cache, [
        [1, 2],
        [2, 3],
      ]),
    ).rejects.toThrow(/both a source and a destination/);
    await expect(copyBlocks(cache, cache, [[1, 6]])).rejects.toThrow(/pairs\[0\]\[1\]/);
    await expect(
      copyBlocks(cache, cache, [
        [1, 2],
        [3, 2],
      ]),
    ).rejects.toThrow(/distinct destination/);
    cache.dispose();
    staged.dispose();
  });
});

describeEachBackend('PagedKvCache', (ctx) => {
  it('add, write, fork with copy-on-write, swap out and in: attention equals the reference on what was appended', async () => {
    const seed = freshSeed();
    const random = rng(seed);
    const b = ctx.backend;
    const [heads, kvHeads, d, blockSize] = [4, 2, 8, 3];
    const cache = new PagedKvCache(b, {
      blockSize,
      layers: 2,
      kvHeads,
      headDim: d,
      numBlocks: 12,
      numHostBlocks: 8,
    });
    // the keys and values each sequence should hold, per layer: a plain contiguous record
    const truth = new Map<number, { k: number[][]; v: number[][] }>();
    const writeTokens = async (seqId: number, slots: number[], count: number) => {
      const rec = truth.get(seqId) ?? { k: [[], []], v: [[], []] };
      truth.set(seqId, rec);
      for (let layer = 0; layer < 2; layer++) {
        const k = randomFloats(count * kvHeads * d, random);
        const v = randomFloats(count * kvHeads * d, random);
        const kt = b.tensor(k, [count, kvHeads, d]);
        const vt = b.tensor(v, [count, kvHeads, d]);
        await cache.write(layer, slots, kt, vt);
        kt.dispose();
        vt.dispose();
        rec.k[layer]!.push(...k);
        rec.v[layer]!.push(...v);
      }
    };
    const a = await cache.add([1, 2, 3, 4, 5]);
    await writeTokens(a.seqId, a.slots, 5);
    const child = cache.fork(a.seqId);
    truth.set(child, {
      k: truth.get(a.seqId)!.k.map((x) => [...x]),
      v: truth.get(a.seqId)!.v.map((x) => [...x]),
    });
    const grown = await cache.append(child, [6, 7]);
    expect(grown.copies).toHaveLength(1);
    await writeTokens(child, grown.slots, 2);
    const parentGrown = await cache.append(a.seqId, [9]);
    await writeTokens(a.seqId, parentGrown.slots, 1);
    // a request with the same first block reuses it from the prefix cache
    const c = await cache.add([1, 2, 3, 8]);
    expect(c.cachedTokens).toBe(3);
    const cRec = {
      k: truth.get(a.seqId)!.k.map((x) => x.slice(0, 3 * kvHeads * d)),
      v: truth.get(a.seqId)!.v.map((x) => x.slice(0, 3 * kvHeads * d)),
    };
    truth.set(c.seqId, cRec);
    await writeTokens(c.seqId, c.slots, 1);
    await cache.swapOut([child]);
    await cache.swapIn([child]);

    const seqs = [a.seqId, child, c.seqId];
    for (let layer = 0; layer < 2; layer++) {
      const qData = randomFloats(seqs.length * heads * d, random);
      const q = b.tensor(qData, [seqs.length, heads, d]);
      const out = await cache.attention(layer, q, seqs, { partitionSize: 16 });
      const keys = seqs.map((s) => ({ shape: [cache.length(s), kvHeads, d], data: truth.get(s)!.k[layer]! }));
      const values = seqs.map((s) => ({
        shape: [cache.length(s), kvHeads, d],
        data: truth.get(s)!.v[layer]!,
      }));
      const qh = { shape: [seqs.length, heads, d], data: qData };
      const ref = contiguousAttentionRef(qh, keys, values);
      const ref32 = contiguousAttentionRef(qh, keys, values, { precision: 'f32' });
      expectClose(await out.read(), ref.data, ref32.data, { label: `layer ${layer}`, seed, atol: 1e-5 });
      q.dispose();
      out.dispose();
    }
    // explicit block tables are checked against the allocator
    const q = b.tensor(randomFloats(heads * d, random), [1, heads, d]);
    const freeBlock = cache.manager.snapshot().device.free[0]!;
    await expect(cache.attention(0, q, { blockTables: [[freeBlock]], contextLens: [1] })).rejects.toThrow(
      FreedBlockError,
    );
    q.dispose();
    for (const s of seqs) cache.free(s);
    cache.manager.checkInvariants();
    expect(cache.manager.device.numReferenced).toBe(0);
    cache.dispose();
  });
});
