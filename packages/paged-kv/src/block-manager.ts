/**
 * Sequences and their block tables over a BlockAllocator: the bookkeeping half of
 * PagedAttention, in plain TypeScript (no GPU).
 *
 * A sequence's token t lives in logical block floor(t / blockSize) at offset t % blockSize;
 * its block table maps logical blocks to physical ones, and its *slot* on the device is
 * `physical * blockSize + offset` (the row of the KV cache tensors `[numBlocks * blockSize,
 * kvHeads, d]`). Every operation that changes KV returns what the device must do: the slots
 * to write new keys and values into, and the blocks to copy first (copy-on-write, swap).
 *
 * Every method validates everything before it changes anything, so a method that throws
 * leaves the state exactly as it was.
 */
import { ArgumentError } from '@longseq/backend';
import { type AllocatorSnapshot, BlockAllocator } from './allocator';
import { OutOfBlocksError, UnknownSequenceError } from './errors';

/** A block copy to perform on the device: [source block, destination block]. */
export type BlockCopy = readonly [src: number, dst: number];

export interface BlockManagerOptions {
  /** Device blocks (see blocksForBudget). */
  readonly numBlocks: number;
  /** Tokens per block. */
  readonly blockSize: number;
  /** Host (CPU memory) blocks for swapping; default 0 (no swapping). */
  readonly numHostBlocks?: number;
  /** Reuse full blocks whose tokens and prefix match (default true). */
  readonly prefixCaching?: boolean;
}

export interface AppendResult {
  /** Device slots to write the new tokens' keys and values into, one per token. */
  readonly slots: number[];
  /** Copy-on-write copies to perform on the device before writing: [shared block, its new copy]. */
  readonly copies: BlockCopy[];
}

export interface AddResult extends AppendResult {
  readonly seqId: number;
  /** Leading tokens whose KV came from the prefix cache; `slots` covers the rest. */
  readonly cachedTokens: number;
}

export interface SwapResult {
  /** swapOut: [device block, host block]; swapIn: [host block, device block]. */
  readonly copies: BlockCopy[];
}

interface Sequence {
  readonly id: number;
  readonly tokens: number[];
  /** Physical blocks: on the device, or on the host while swapped out. */
  blocks: number[];
  swapped: boolean;
  /** Prefix hash of each full block (chained: block i's hash covers tokens 0..(i+1)*blockSize). */
  readonly hashes: number[];
}

export interface SequenceSnapshot {
  readonly id: number;
  readonly tokens: number[];
  readonly blocks: number[];
  readonly swapped: boolean;
  readonly hashes: number[];
}

export interface BlockManagerSnapshot {
  readonly device: AllocatorSnapshot;
  readonly host: AllocatorSnapshot;
  readonly sequences: SequenceSnapshot[];
  readonly nextId: number;
}

/** The hash of the empty prefix, the chain's start. */
const ROOT_HASH = 0x9e3779b;

/**
 * A 52-bit hash of (parent hash, tokens): two 32-bit murmur-style mixes with different
 * seeds, 26 bits of each. The allocator also compares the exact content on lookup, so a
 * collision costs a cache miss, never wrong keys and values.
 */
export function blockHash(parent: number, tokens: ArrayLike<number>): number {
  let h1 = (parent ^ 0x85ebca6b) | 0;
  let h2 = (Math.floor(parent / 0x100000000) ^ 0xc2b2ae35 ^ parent) | 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]! | 0;
    h1 = Math.imul(h1 ^ t, 0xcc9e2d51);
    h1 = Math.imul((h1 << 15) | (h1 >>> 17), 0x1b873593);
    h2 = Math.imul(h2 ^ Math.imul(t, 0x27d4eb2f), 0x165667b1);
    h2 = Math.imul((h2 << 13) | (h2 >>> 19), 0x85ebca77);
  }
  const fmix = (h: number): number => {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  return (fmix(h1 ^ tokens.length) >>> 6) * 0x4000000 + (fmix(h2) >>> 6);
}

function checkTokens(tokens: unknown, argument: string): readonly number[] {
  if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens))
    throw new ArgumentError(argument, 'an array of integer token ids', tokens);
  const list = tokens as ArrayLike<number>;
  for (let i = 0; i < list.length; i++) {
    if (!Number.isInteger(list[i]))
      throw new ArgumentError(`${argument}[${i}]`, 'an integer token id', list[i]);
  }
  return Array.from(list);
}

export class BlockManager {
  readonly blockSize: number;
  readonly prefixCaching: boolean;
  readonly device: BlockAllocator;
  readonly host: BlockAllocator;
  private readonly seqs = new Map<number, Sequence>();
  private nextId = 0;

  constructor(options: BlockManagerOptions) {
    if (options === null || typeof options !== 'object')
      throw new ArgumentError('options', 'an object', options);
    if (!Number.isInteger(options.blockSize) || options.blockSize < 1)
      throw new ArgumentError('options.blockSize', 'an integer >= 1', options.blockSize);
    this.blockSize = options.blockSize;
    this.prefixCaching = options.prefixCaching ?? true;
    this.device = new BlockAllocator(options.numBlocks);
    this.host = new BlockAllocator(options.numHostBlocks ?? 0);
  }

  get numBlocks(): number {
    return this.device.numBlocks;
  }

  /** Live sequence ids (resident and swapped), oldest first. */
  sequenceIds(): number[] {
    return [...this.seqs.keys()];
  }

  has(seqId: number): boolean {
    return this.seqs.has(seqId);
  }

  isSwapped(seqId: number): boolean {
    return this.get(seqId, 'seqId').swapped;
  }

  /** Tokens whose KV the sequence holds. */
  length(seqId: number): number {
    return this.get(seqId, 'seqId').tokens.length;
  }

  tokens(seqId: number): readonly number[] {
    return this.get(seqId, 'seqId').tokens;
  }

  /** Physical device blocks of a resident sequence, in logical order. */
  blockTable(seqId: number): readonly number[] {
    return this.resident(seqId, 'seqId').blocks;
  }

  /** Device slots of tokens [start, end) of a resident sequence. */
  slotMapping(seqId: number, start = 0, end?: number): number[] {
    const seq = this.resident(seqId, 'seqId');
    const stop = end ?? seq.tokens.length;
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(stop) ||
      start < 0 ||
      stop < start ||
      stop > seq.tokens.length
    )
      throw new ArgumentError('start, end', `0 <= start <= end <= ${seq.tokens.length}`, [start, stop]);
    const slots: number[] = [];
    for (let t = start; t < stop; t++) slots.push(this.slotOf(seq.blocks, t));
    return slots;
  }

  /** Throws FreedBlockError if a block table entry is not an allocated device block. */
  checkBlockTable(table: ArrayLike<number>, argument = 'blockTable'): void {
    for (let i = 0; i < table.length; i++) this.device.checkReferenced(table[i]!, `${argument}[${i}]`);
  }

  /** Device blocks a new sequence with these tokens would take from the available pool (prefix cache hits counted). */
  blocksToAdd(tokens: readonly number[]): number {
    const hits = this.cacheHits(tokens);
    const evictableHits = hits.filter((b) => this.device.isEvictable(b)).length;
    return Math.ceil(tokens.length / this.blockSize) - hits.length + evictableHits;
  }

  /** Device blocks appending `count` tokens would take (including a copy-on-write). */
  blocksToAppend(seqId: number, count: number): number {
    return this.appendNeeds(this.resident(seqId, 'seqId'), count);
  }

  /**
   * Adds a sequence holding `tokens` (its prompt). With prefix caching, leading full blocks
   * already cached are shared instead of allocated (at most all but the last token, so a
   * model still computes something for the prompt). Returns the slots for the rest.
   */
  add(tokens: readonly number[]): AddResult {
    const list = checkTokens(tokens, 'tokens');
    const hits = this.cacheHits(list);
    const total = Math.ceil(list.length / this.blockSize);
    const evictableHits = hits.filter((b) => this.device.isEvictable(b)).length;
    const needed = total - hits.length;
    if (needed > this.device.available - evictableHits)
      throw new OutOfBlocksError('tokens', needed, this.device.available - evictableHits);
    for (const b of hits) this.device.incRef(b);
    const seq: Sequence = { id: this.nextId++, tokens: [], blocks: [...hits], swapped: false, hashes: [] };
    const cachedTokens = hits.length * this.blockSize;
    seq.tokens.push(...list.slice(0, cachedTokens));
    let parent = ROOT_HASH;
    for (let i = 0; i < hits.length; i++) {
      parent = blockHash(parent, list.slice(i * this.blockSize, (i + 1) * this.blockSize));
      seq.hashes.push(parent);
    }
    this.seqs.set(seq.id, seq);
    const { slots, copies } = this.appendUnchecked(seq, list.slice(cachedTokens));
    return { seqId: seq.id, cachedTokens, slots, copies };
  }

  /**
   * Appends tokens to a resident sequence. A block is allocated only when the last one is
   * full; if the last block is partial and shared (after fork), it is first copied
   * (copy-on-write) and the copy is returned for the device to perform.
   */
  append(seqId: number, tokens: readonly number[]): AppendResult {
    const seq = this.resident(seqId, 'seqId');
    const list = checkTokens(tokens, 'tokens');
    const needed = this.appendNeeds(seq, list.length);
    if (needed > this.device.available) throw new OutOfBlocksError('tokens', needed, this.device.available);
    return this.appendUnchecked(seq, list);
  }

  /** A new sequence sharing every block of `seqId` (parallel sampling, beam search). */
  fork(seqId: number): number {
    const parent = this.resident(seqId, 'seqId');
    for (const b of parent.blocks) this.device.incRef(b);
    const child: Sequence = {
      id: this.nextId++,
      tokens: [...parent.tokens],
      blocks: [...parent.blocks],
      swapped: false,
      hashes: [...parent.hashes],
    };
    this.seqs.set(child.id, child);
    return child.id;
  }

  /** Releases a sequence's blocks (device or host); cached full blocks stay for reuse until evicted. */
  free(seqId: number): void {
    const seq = this.get(seqId, 'seqId');
    const pool = seq.swapped ? this.host : this.device;
    for (const b of seq.blocks) pool.decRef(b);
    this.seqs.delete(seqId);
  }

  /**
   * Moves resident sequences to host blocks. Blocks shared among them are copied once and
   * stay shared on the host. Returns the [device, host] copies to perform *before* the
   * device blocks are reused.
   */
  swapOut(seqIds: readonly number[]): SwapResult {
    return this.move(seqIds, false);
  }

  /** Moves swapped sequences back to new device blocks; returns the [host, device] copies. */
  swapIn(seqIds: readonly number[]): SwapResult {
    return this.move(seqIds, true);
  }

  /** Device blocks swapping these sequences in would take. */
  blocksToSwapIn(seqIds: readonly number[]): number {
    const distinct = new Set<number>();
    for (const id of seqIds) for (const b of this.get(id, 'seqIds').blocks) distinct.add(b);
    return distinct.size;
  }

  snapshot(): BlockManagerSnapshot {
    return {
      device: this.device.snapshot(),
      host: this.host.snapshot(),
      sequences: [...this.seqs.values()].map((s) => ({
        id: s.id,
        tokens: [...s.tokens],
        blocks: [...s.blocks],
        swapped: s.swapped,
        hashes: [...s.hashes],
      })),
      nextId: this.nextId,
    };
  }

  /** Throws unless both pools are consistent and every refcount equals the block-table entries naming it. */
  checkInvariants(): void {
    const deviceRefs = new Int32Array(this.device.numBlocks);
    const hostRefs = new Int32Array(this.host.numBlocks);
    for (const seq of this.seqs.values()) {
      const expected = Math.ceil(seq.tokens.length / this.blockSize);
      if (seq.blocks.length !== expected)
        throw new Error(`sequence ${seq.id}: ${seq.blocks.length} blocks for ${seq.tokens.length} tokens`);
      for (const b of seq.blocks) (seq.swapped ? hostRefs : deviceRefs)[b]!++;
    }
    this.device.checkInvariants(deviceRefs);
    this.host.checkInvariants(hostRefs);
  }

  private get(seqId: number, argument: string): Sequence {
    const seq = this.seqs.get(seqId);
    if (!seq) throw new UnknownSequenceError(argument, seqId);
    return seq;
  }

  private resident(seqId: number, argument: string): Sequence {
    const seq = this.get(seqId, argument);
    if (seq.swapped)
      throw new UnknownSequenceError(argument, seqId, 'a sequence resident on the device (not swapped out)');
    return seq;
  }

  private slotOf(blocks: readonly number[], t: number): number {
    return blocks[Math.floor(t / this.blockSize)]! * this.blockSize + (t % this.blockSize);
  }

  /** Cached blocks for the leading full blocks of `tokens` (all but the last token), in order. */
  private cacheHits(tokens: readonly number[]): number[] {
    const hits: number[] = [];
    if (!this.prefixCaching) return hits;
    const reusable = Math.floor((tokens.length - 1) / this.blockSize);
    let parent = ROOT_HASH;
    for (let i = 0; i < reusable; i++) {
      const chunk = tokens.slice(i * this.blockSize, (i + 1) * this.blockSize);
      const content = `${parent}|${chunk.join(',')}`;
      parent = blockHash(parent, chunk);
      const block = this.device.lookup(parent, content);
      if (block === undefined) break;
      hits.push(block);
    }
    return hits;
  }

  private appendNeeds(seq: Sequence, count: number): number {
    if (count === 0) return 0;
    const len = seq.tokens.length;
    const partial = len % this.blockSize !== 0;
    const cow = partial && this.device.refcount(seq.blocks[seq.blocks.length - 1]!) > 1 ? 1 : 0;
    return cow + Math.ceil((len + count) / this.blockSize) - Math.ceil(len / this.blockSize);
  }

  /** Appends after the caller checked that enough blocks are available. */
  private appendUnchecked(seq: Sequence, tokens: readonly number[]): AppendResult {
    const copies: BlockCopy[] = [];
    const slots: number[] = [];
    if (tokens.length === 0) return { slots, copies };
    const bs = this.blockSize;
    if (seq.tokens.length % bs !== 0) {
      const last = seq.blocks.length - 1;
      const shared = seq.blocks[last]!;
      if (this.device.refcount(shared) > 1) {
        const copy = this.device.allocate('tokens');
        this.device.decRef(shared);
        seq.blocks[last] = copy;
        copies.push([shared, copy]);
      }
    }
    for (const token of tokens) {
      const t = seq.tokens.length;
      if (t % bs === 0) seq.blocks.push(this.device.allocate('tokens'));
      seq.tokens.push(token);
      slots.push(this.slotOf(seq.blocks, t));
      if ((t + 1) % bs === 0) this.sealBlock(seq, seq.blocks.length - 1);
    }
    return { slots, copies };
  }

  /** A block just became full: record its prefix hash and offer it to the prefix cache. */
  private sealBlock(seq: Sequence, index: number): void {
    const parent = index === 0 ? ROOT_HASH : seq.hashes[index - 1]!;
    const chunk = seq.tokens.slice(index * this.blockSize, (index + 1) * this.blockSize);
    const hash = blockHash(parent, chunk);
    seq.hashes[index] = hash;
    if (this.prefixCaching && !seq.swapped)
      this.device.setHash(seq.blocks[index]!, hash, `${parent}|${chunk.join(',')}`);
  }

  private move(seqIds: readonly number[], toDevice: boolean): SwapResult {
    if (!Array.isArray(seqIds)) throw new ArgumentError('seqIds', 'an array of sequence ids', seqIds);
    const seqs: Sequence[] = [];
    const seen = new Set<number>();
    for (const id of seqIds) {
      const seq = this.get(id, 'seqIds');
      if (seq.swapped !== toDevice)
        throw new UnknownSequenceError(
          'seqIds',
          id,
          toDevice ? 'a swapped-out sequence' : 'a sequence resident on the device',
        );
      if (seen.has(id)) throw new ArgumentError('seqIds', 'distinct sequence ids', id);
      seen.add(id);
      seqs.push(seq);
    }
    const from = toDevice ? this.host : this.device;
    const to = toDevice ? this.device : this.host;
    const distinct = new Set<number>();
    for (const seq of seqs) for (const b of seq.blocks) distinct.add(b);
    if (distinct.size > to.available)
      throw new OutOfBlocksError(
        'seqIds',
        distinct.size,
        to.available,
        toDevice ? 'free KV blocks' : 'free host blocks',
      );
    const mapping = new Map<number, number>();
    const copies: BlockCopy[] = [];
    for (const b of distinct) {
      const dst = to.allocate('seqIds');
      mapping.set(b, dst);
      copies.push([b, dst]);
    }
    for (const seq of seqs) {
      const moved = seq.blocks.map((b) => mapping.get(b)!);
      for (const b of seq.blocks) from.decRef(b);
      seq.blocks = moved;
      seq.swapped = !toDevice;
    }
    // allocate() gave each destination one reference; every further table entry adds one
    const refs = new Map<number, number>();
    for (const seq of seqs) for (const b of seq.blocks) refs.set(b, (refs.get(b) ?? 0) + 1);
    for (const [b, count] of refs) for (let i = 1; i < count; i++) to.incRef(b);
    if (toDevice && this.prefixCaching) {
      for (const seq of seqs) {
        for (let i = 0; i < seq.hashes.length; i++) {
          const parent = i === 0 ? ROOT_HASH : seq.hashes[i - 1]!;
          const chunk = seq.tokens.slice(i * this.blockSize, (i + 1) * this.blockSize);
          this.device.setHash(seq.blocks[i]!, seq.hashes[i]!, `${parent}|${chunk.join(',')}`);
        }
      }
    }
    return { copies };
  }
}
