import { ArgumentError, DeviceLimitError } from '@longseq/backend';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BlockManager,
  type BlockCopy,
  FreedBlockError,
  OutOfBlocksError,
  UnknownSequenceError,
  blocksForBudget,
  bytesPerBlock,
} from '../src';

/**
 * The model of the device: every slot holds the token id whose KV was written there. Copies
 * move whole blocks, as the device kernels do; a sequence is right when the slots its block
 * table names hold exactly the tokens appended to it.
 */
class KvModel {
  readonly device = new Map<number, number>();
  readonly host = new Map<number, number>();
  constructor(readonly blockSize: number) {}

  copy(copies: readonly BlockCopy[], from: Map<number, number>, to: Map<number, number>): void {
    // all sources are read before any destination is written, as one kernel launch does
    const staged = copies.map(([src]) => {
      const values: (number | undefined)[] = [];
      for (let o = 0; o < this.blockSize; o++) values.push(from.get(src * this.blockSize + o));
      return values;
    });
    copies.forEach(([, dst], i) => {
      for (let o = 0; o < this.blockSize; o++) {
        const v = staged[i]![o];
        if (v === undefined) to.delete(dst * this.blockSize + o);
        else to.set(dst * this.blockSize + o, v);
      }
    });
  }

  write(slots: readonly number[], tokens: readonly number[]): void {
    slots.forEach((slot, i) => {
      this.device.set(slot, tokens[i]!);
    });
  }
}

type Op =
  | { kind: 'add'; tokens: number[]; prefixOf: number; prefixLen: number }
  | { kind: 'append'; seq: number; tokens: number[] }
  | { kind: 'fork'; seq: number }
  | { kind: 'free'; seq: number }
  | { kind: 'swapOut'; seq: number }
  | { kind: 'swapIn'; seq: number }
  | { kind: 'preempt'; seq: number }
  | { kind: 'bad'; which: number; seq: number };

const tokensArb = fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 0, maxLength: 11 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('add' as const),
    tokens: tokensArb,
    prefixOf: fc.nat(20),
    prefixLen: fc.nat(12),
  }),
  fc.record({ kind: fc.constant('append' as const), seq: fc.nat(20), tokens: tokensArb }),
  fc.record({ kind: fc.constant('fork' as const), seq: fc.nat(20) }),
  fc.record({ kind: fc.constant('free' as const), seq: fc.nat(20) }),
  fc.record({ kind: fc.constant('swapOut' as const), seq: fc.nat(20) }),
  fc.record({ kind: fc.constant('swapIn' as const), seq: fc.nat(20) }),
  fc.record({ kind: fc.constant('preempt' as const), seq: fc.nat(20) }),
  fc.record({ kind: fc.constant('bad' as const), which: fc.nat(3), seq: fc.nat(20) }),
);

function checkContent(m: BlockManager, model: KvModel, expected: Map<number, number[]>): void {
  for (const [id, tokens] of expected) {
    expect(m.tokens(id)).toEqual(tokens);
    const snap = m.snapshot().sequences.find((s) => s.id === id)!;
    const store = snap.swapped ? model.host : model.device;
    const got = tokens.map((_, t) =>
      store.get(snap.blocks[Math.floor(t / m.blockSize)]! * m.blockSize + (t % m.blockSize)),
    );
    expect(got, `KV content of sequence ${id}${snap.swapped ? ' (swapped)' : ''}`).toEqual(tokens);
  }
}

function run(
  ops: Op[],
  numBlocks: number,
  blockSize: number,
  numHostBlocks: number,
  prefixCaching: boolean,
): void {
  const m = new BlockManager({ numBlocks, blockSize, numHostBlocks, prefixCaching });
  const model = new KvModel(blockSize);
  const expected = new Map<number, number[]>();
  const everSeen: number[][] = [];
  const pick = (i: number): number | undefined => {
    const ids = [...expected.keys()];
    return ids.length === 0 ? undefined : ids[i % ids.length];
  };
  /** An op that must fail leaves the state unchanged. */
  const unchanged = (fn: () => unknown, error: new (...args: never[]) => Error): void => {
    const before = m.snapshot();
    expect(fn).toThrow(error);
    expect(m.snapshot()).toEqual(before);
  };
  for (const op of ops) {
    switch (op.kind) {
      case 'add': {
        const source = everSeen.length > 0 ? everSeen[op.prefixOf % everSeen.length]! : [];
        const tokens = [...source.slice(0, op.prefixLen), ...op.tokens];
        if (m.blocksToAdd(tokens) > m.device.available) {
          unchanged(() => m.add(tokens), OutOfBlocksError);
          break;
        }
        const r = m.add(tokens);
        model.copy(r.copies, model.device, model.device);
        model.write(r.slots, tokens.slice(r.cachedTokens));
        expected.set(r.seqId, tokens);
        everSeen.push(tokens);
        break;
      }
      case 'append': {
        const id = pick(op.seq);
        if (id === undefined) break;
        if (m.isSwapped(id)) {
          unchanged(() => m.append(id, op.tokens), UnknownSequenceError);
          break;
        }
        if (m.blocksToAppend(id, op.tokens.length) > m.device.available) {
          unchanged(() => m.append(id, op.tokens), OutOfBlocksError);
          break;
        }
        const r = m.append(id, op.tokens);
        model.copy(r.copies, model.device, model.device);
        model.write(r.slots, op.tokens);
        expected.get(id)!.push(...op.tokens);
        everSeen.push([...expected.get(id)!]);
        break;
      }
      case 'fork': {
        const id = pick(op.seq);
        if (id === undefined || m.isSwapped(id)) break;
        expected.set(m.fork(id), [...expected.get(id)!]);
        break;
      }
      case 'free': {
        const id = pick(op.seq);
        if (id === undefined) break;
        m.free(id);
        expected.delete(id);
        break;
      }
      case 'preempt':
      case 'swapOut': {
        const id = pick(op.seq);
        if (id === undefined || m.isSwapped(id)) break;
        // a preempted request's whole group (here: the sequence and every live fork of it) moves out
        const group = [...expected.keys()].filter(
          (s) => !m.isSwapped(s) && (s === id || op.kind === 'preempt'),
        );
        if (m.blocksToSwapIn(group) > m.host.available) {
          unchanged(() => m.swapOut(group), OutOfBlocksError);
          if (op.kind === 'preempt') {
            // recompute: free and re-add the same tokens
            for (const s of group) {
              m.free(s);
              const tokens = expected.get(s)!;
              expected.delete(s);
              if (m.blocksToAdd(tokens) <= m.device.available) {
                const r = m.add(tokens);
                model.write(r.slots, tokens.slice(r.cachedTokens));
                expected.set(r.seqId, tokens);
              }
            }
          }
          break;
        }
        model.copy(m.swapOut(group).copies, model.device, model.host);
        break;
      }
      case 'swapIn': {
        const id = pick(op.seq);
        if (id === undefined || !m.isSwapped(id)) break;
        if (m.blocksToSwapIn([id]) > m.device.available) {
          unchanged(() => m.swapIn([id]), OutOfBlocksError);
          break;
        }
        model.copy(m.swapIn([id]).copies, model.host, model.device);
        break;
      }
      case 'bad': {
        const freed = 1000 + op.seq;
        if (op.which === 0) unchanged(() => m.append(freed, [1]), UnknownSequenceError);
        else if (op.which === 1) unchanged(() => m.fork(freed), UnknownSequenceError);
        else if (op.which === 2) unchanged(() => m.free(freed), UnknownSequenceError);
        else {
          const free = m.snapshot().device.free;
          if (free.length > 0) unchanged(() => m.checkBlockTable([free[0]!]), FreedBlockError);
        }
        break;
      }
    }
    m.checkInvariants();
    checkContent(m, model, expected);
  }
  for (const id of [...expected.keys()]) m.free(id);
  m.checkInvariants();
  // nothing leaks: every block is free or merely cached, and evicting the cache frees all
  expect(m.device.numReferenced).toBe(0);
  expect(m.host.numReferenced).toBe(0);
  m.device.evictAll();
  expect(m.device.numFree).toBe(numBlocks);
  expect(m.host.numFree).toBe(numHostBlocks);
}

describe('BlockManager', () => {
  it('budget: blocks from bytes, K and V of every layer counted', () => {
    const perBlock = bytesPerBlock({ blockSize: 16, layers: 32, kvHeads: 8, headDim: 128 });
    expect(perBlock).toBe(2 * 32 * 16 * 8 * 128 * 4);
    expect(
      blocksForBudget({
        bytes: 10 * perBlock + perBlock - 1,
        blockSize: 16,
        layers: 32,
        kvHeads: 8,
        headDim: 128,
      }),
    ).toBe(10);
    expect(
      blocksForBudget({ bytes: 1 << 20, blockSize: 16, layers: 1, kvHeads: 1, headDim: 64, dtypeBytes: 2 }),
    ).toBe(256);
    expect(() => bytesPerBlock({ blockSize: 0, layers: 1, kvHeads: 1, headDim: 1 })).toThrow(ArgumentError);
  });

  it('appending allocates a block only when the last one is full', () => {
    const m = new BlockManager({ numBlocks: 8, blockSize: 4 });
    const { seqId, slots } = m.add([1, 2, 3]);
    expect(m.blockTable(seqId)).toHaveLength(1);
    expect(slots).toEqual(m.slotMapping(seqId));
    expect(m.append(seqId, [4]).slots).toHaveLength(1);
    expect(m.blockTable(seqId)).toHaveLength(1);
    m.append(seqId, [5]);
    expect(m.blockTable(seqId)).toHaveLength(2);
    expect(m.device.numReferenced).toBe(2);
  });

  it('fork shares every block; the first write to a shared partial block copies it', () => {
    const m = new BlockManager({ numBlocks: 8, blockSize: 4 });
    const { seqId: parent } = m.add([1, 2, 3, 4, 5, 6]);
    const child = m.fork(parent);
    expect(m.blockTable(child)).toEqual(m.blockTable(parent));
    const [full, partial] = m.blockTable(parent);
    expect(m.device.refcount(full!)).toBe(2);
    const r = m.append(child, [7]);
    expect(r.copies).toEqual([[partial, m.blockTable(child)[1]]]);
    expect(m.blockTable(child)[0]).toBe(full);
    // the parent is now the only owner of the old partial block: no copy
    expect(m.append(parent, [8]).copies).toEqual([]);
    m.checkInvariants();
  });

  it('prefix caching reuses full blocks of a shared prefix, and keeps them (LRU) after free', () => {
    const m = new BlockManager({ numBlocks: 8, blockSize: 2 });
    const a = m.add([1, 2, 3, 4, 5]);
    expect(a.cachedTokens).toBe(0);
    const b = m.add([1, 2, 3, 4, 9]);
    expect(b.cachedTokens).toBe(4);
    expect(m.blockTable(b.seqId).slice(0, 2)).toEqual(m.blockTable(a.seqId).slice(0, 2));
    expect(b.slots).toHaveLength(1);
    // a different first block breaks the chain even though the second block's tokens match
    expect(m.add([7, 7, 3, 4, 1]).cachedTokens).toBe(0);
    const cachedBlocks = m.blockTable(a.seqId).slice(0, 2);
    m.free(a.seqId);
    m.free(b.seqId);
    expect(m.device.numCached).toBeGreaterThanOrEqual(2);
    const c = m.add([1, 2, 3, 4, 6]);
    expect(c.cachedTokens).toBe(4);
    expect(m.blockTable(c.seqId).slice(0, 2)).toEqual(cachedBlocks);
    m.checkInvariants();
  });

  it('typed errors leave the state unchanged', () => {
    const m = new BlockManager({ numBlocks: 3, blockSize: 2, numHostBlocks: 1 });
    const { seqId } = m.add([1, 2, 3]);
    const other = m.add([4]).seqId;
    m.free(other);
    const before = m.snapshot();
    expect(() => m.append(other, [1])).toThrow(UnknownSequenceError);
    expect(() => m.fork(12345)).toThrow(UnknownSequenceError);
    expect(() => m.append(seqId, [1, 2, 3, 4, 5])).toThrow(OutOfBlocksError);
    expect(() => m.append(seqId, [1, 2, 3, 4, 5])).toThrow(DeviceLimitError);
    expect(() => m.add([1, 2, 3, 4, 5, 6, 7])).toThrow(OutOfBlocksError);
    expect(() => m.swapOut([seqId])).toThrow(OutOfBlocksError);
    expect(() => m.append(seqId, [1.5])).toThrow(ArgumentError);
    expect(() => m.checkBlockTable([...m.blockTable(seqId), before.device.free[0]!])).toThrow(
      FreedBlockError,
    );
    expect(() => m.checkBlockTable([99])).toThrow(FreedBlockError);
    expect(m.snapshot()).toEqual(before);
    expect(() => m.append(other, [1])).toThrow(/seqId: expected a live sequence id/);
  });

  it('swap out and back in keeps the content and the sharing among forks', () => {
    const m = new BlockManager({ numBlocks: 6, blockSize: 2, numHostBlocks: 6 });
    const model = new KvModel(2);
    const a = m.add([1, 2, 3]);
    model.write(a.slots, [1, 2, 3]);
    const b = m.fork(a.seqId);
    const out = m.swapOut([a.seqId, b]);
    expect(out.copies).toHaveLength(2);
    model.copy(out.copies, model.device, model.host);
    expect(m.device.numReferenced).toBe(0);
    expect(() => m.append(a.seqId, [4])).toThrow(UnknownSequenceError);
    const back = m.swapIn([a.seqId, b]);
    model.copy(back.copies, model.host, model.device);
    expect(m.blockTable(a.seqId)).toEqual(m.blockTable(b));
    checkContent(
      m,
      model,
      new Map([
        [a.seqId, [1, 2, 3]],
        [b, [1, 2, 3]],
      ]),
    );
    m.checkInvariants();
  });

  it('property: random add/append/fork/free/cached-prefix/preempt/swap keep every invariant and the KV content', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 10 }),
        fc.boolean(),
        (ops, numBlocks, blockSize, numHostBlocks, prefixCaching) => {
          run(ops, numBlocks, blockSize, numHostBlocks, prefixCaching);
        },
      ),
      { numRuns: 300 },
    );
  });
});
