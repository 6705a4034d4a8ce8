/**
 * A fixed pool of KV blocks with reference counts and a prefix cache.
 *
 * Every block is in exactly one of three states:
 * - free: on the free list, holding nothing anyone will read;
 * - referenced: refcount > 0, named by that many block-table entries;
 * - cached: refcount 0 but holding a full block of KV under a content hash, kept so that a
 *   later request with the same prefix can reuse it; evicted least-recently-used first when
 *   the free list runs dry.
 *
 * The allocator knows nothing about sequences; the BlockManager keeps the block tables.
 */
import { ArgumentError } from '@longseq/backend';
import { FreedBlockError, OutOfBlocksError } from './errors';

/** What a KV budget is made of; K and V both count. */
export interface KvBudget {
  /** Bytes available for the KV cache of all layers. */
  readonly bytes: number;
  /** Tokens per block. */
  readonly blockSize: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Bytes per element; 4 for f32 (default), 2 for f16. */
  readonly dtypeBytes?: number;
}

/** Bytes one block takes across all layers, keys and values: 2 x layers x blockSize x kvHeads x headDim x dtypeBytes. */
export function bytesPerBlock(budget: Omit<KvBudget, 'bytes'>): number {
  for (const key of ['blockSize', 'layers', 'kvHeads', 'headDim'] as const) {
    const v = budget[key];
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`budget.${key}`, 'an integer >= 1', v);
  }
  const dtypeBytes = budget.dtypeBytes ?? 4;
  if (!Number.isInteger(dtypeBytes) || dtypeBytes < 1)
    throw new ArgumentError('budget.dtypeBytes', 'an integer >= 1', dtypeBytes);
  return 2 * budget.layers * budget.blockSize * budget.kvHeads * budget.headDim * dtypeBytes;
}

/** How many whole blocks fit a byte budget. */
export function blocksForBudget(budget: KvBudget): number {
  if (typeof budget.bytes !== 'number' || !(budget.bytes >= 0))
    throw new ArgumentError('budget.bytes', 'a number >= 0', budget.bytes);
  return Math.floor(budget.bytes / bytesPerBlock(budget));
}

/** A plain-data copy of the allocator's state, for comparing before and after an operation. */
export interface AllocatorSnapshot {
  readonly free: number[];
  readonly refcounts: number[];
  /** [hash, block] for every block holding a cached hash, in block order. */
  readonly hashes: [number, number][];
  /** Cached unreferenced blocks, least recently used first. */
  readonly evictable: number[];
}

export class BlockAllocator {
  readonly numBlocks: number;
  private readonly refcounts: Int32Array;
  /** Free blocks; allocation pops from the end, so the lowest ids go first. */
  private readonly freeList: number[];
  private readonly hashOfBlock = new Map<number, number>();
  private readonly blockOfHash = new Map<number, number>();
  /** The exact content each hashed block was registered with, so a hash collision is a miss, never wrong KV. */
  private readonly contentOfBlock = new Map<number, string>();
  /** Cached blocks with refcount 0, in least-recently-used order (Map keeps insertion order). */
  private readonly evictable = new Map<number, true>();

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 0)
      throw new ArgumentError('numBlocks', 'an integer >= 0', numBlocks);
    this.numBlocks = numBlocks;
    this.refcounts = new Int32Array(numBlocks);
    this.freeList = [];
    for (let b = numBlocks - 1; b >= 0; b--) this.freeList.push(b);
  }

  /** Blocks an allocation can get now: free ones plus cached ones it may evict. */
  get available(): number {
    return this.freeList.length + this.evictable.size;
  }

  get numFree(): number {
    return this.freeList.length;
  }

  get numCached(): number {
    return this.hashOfBlock.size;
  }

  /** Blocks with refcount > 0. */
  get numReferenced(): number {
    return this.numBlocks - this.freeList.length - this.evictable.size;
  }

  refcount(block: number): number {
    return this.refcounts[block] ?? 0;
  }

  isReferenced(block: number): boolean {
    return Number.isInteger(block) && block >= 0 && block < this.numBlocks && this.refcounts[block]! > 0;
  }

  /** Throws FreedBlockError unless `block` is referenced. */
  checkReferenced(block: number, argument: string): void {
    if (!this.isReferenced(block)) throw new FreedBlockError(argument, block);
  }

  /** A block with refcount 1: from the free list, else by evicting the least recently used cached block. */
  allocate(argument = 'blocks'): number {
    let block = this.freeList.pop();
    if (block === undefined) {
      const lru = this.evictable.keys().next();
      if (lru.done) throw new OutOfBlocksError(argument, 1, 0);
      block = lru.value;
      this.evictable.delete(block);
      this.dropHash(block);
    }
    this.refcounts[block] = 1;
    return block;
  }

  incRef(block: number): void {
    if (this.refcounts[block] === 0) {
      // a cached block comes back into use
      if (!this.evictable.delete(block)) throw new FreedBlockError('block', block);
    }
    this.refcounts[block]!++;
  }

  /** Drops one reference; at zero the block becomes cached (if it has a hash) or free. */
  decRef(block: number): void {
    if (!this.isReferenced(block)) throw new FreedBlockError('block', block);
    if (--this.refcounts[block]! > 0) return;
    if (this.hashOfBlock.has(block)) this.evictable.set(block, true);
    else this.freeList.push(block);
  }

  /** The block holding `hash` with exactly this `content`, or undefined. Does not take a reference. */
  lookup(hash: number, content: string): number | undefined {
    const block = this.blockOfHash.get(hash);
    return block !== undefined && this.contentOfBlock.get(block) === content ? block : undefined;
  }

  /** Whether taking a reference to `block` would use up one of the available blocks (it is cached and unreferenced). */
  isEvictable(block: number): boolean {
    return this.evictable.has(block);
  }

  /**
   * Records that a referenced full block holds `hash` (of `content`: its parent hash and tokens).
   * A hash already held by another block stays there; this block then simply is not cached.
   */
  setHash(block: number, hash: number, content: string): boolean {
    if (this.blockOfHash.has(hash) || this.hashOfBlock.has(block)) return false;
    this.hashOfBlock.set(block, hash);
    this.blockOfHash.set(hash, block);
    this.contentOfBlock.set(block, content);
    return true;
  }

  hashOf(block: number): number | undefined {
    return this.hashOfBlock.get(block);
  }

  private dropHash(block: number): void {
    const hash = this.hashOfBlock.get(block);
    if (hash === undefined) return;
    this.hashOfBlock.delete(block);
    this.blockOfHash.delete(hash);
    this.contentOfBlock.delete(block);
  }

  /** Frees every cached unreferenced block (e.g. to prove that nothing else is held). */
  evictAll(): void {
    for (const block of [...this.evictable.keys()]) {
      this.evictable.delete(block);
      this.dropHash(block);
      this.freeList.push(block);
    }
  }

  snapshot(): AllocatorSnapshot {
    return {
      free: [...this.freeList],
      refcounts: [...this.refcounts],
      hashes: [...this.hashOfBlock].sort((a, b) => a[0] - b[0]).map(([b, h]) => [h, b]),
      evictable: [...this.evictable.keys()],
    };
  }

  /**
   * Throws if the bookkeeping is inconsistent: every block free xor referenced xor cached,
   * hashes mapped both ways, and (when given) refcounts equal to `expectedRefs`.
   */
  checkInvariants(expectedRefs?: ArrayLike<number>): void {
    const seen = new Uint8Array(this.numBlocks);
    for (const b of this.freeList) {
      if (seen[b]) throw new Error(`block ${b} is on the free list twice`);
      seen[b] = 1;
      if (this.refcounts[b] !== 0) throw new Error(`free block ${b} has refcount ${this.refcounts[b]}`);
      if (this.hashOfBlock.has(b)) throw new Error(`free block ${b} holds a hash`);
    }
    for (const b of this.evictable.keys()) {
      if (seen[b]) throw new Error(`block ${b} is both free and cached`);
      seen[b] = 2;
      if (this.refcounts[b] !== 0) throw new Error(`evictable block ${b} has refcount ${this.refcounts[b]}`);
      if (!this.hashOfBlock.has(b)) throw new Error(`evictable block ${b} holds no hash`);
    }
    for (let b = 0; b < this.numBlocks; b++) {
      if (!seen[b] && this.refcounts[b]! <= 0)
        throw new Error(`block ${b} is neither free, cached nor referenced (leaked)`);
      if (expectedRefs && this.refcounts[b] !== expectedRefs[b])
        throw new Error(`block ${b}: refcount ${this.refcounts[b]} but ${expectedRefs[b]} references`);
    }
    for (const [b, h] of this.hashOfBlock) {
      if (this.blockOfHash.get(h) !== b) throw new Error(`hash ${h} of block ${b} maps elsewhere`);
    }
    if (this.blockOfHash.size !== this.hashOfBlock.size) throw new Error('hash maps differ in size');
  }
}
