/**
 * A first-come-first-served scheduler over a BlockManager, in the manner of vLLM's:
 * each step decodes one token for every running sequence, and admits waiting requests (in
 * arrival order) while blocks last. When the running sequences need more blocks than are
 * free, the newest request is preempted: by recompute (its blocks are freed and it goes
 * back to the front of the queue, to be prefilled again) or by swap (its blocks move to
 * host memory, and back once there is room).
 *
 * A request is a group of sequences: one, `n` parallel samples forked from the prompt, or
 * a beam of `beamWidth` whose members the caller reselects after every step.
 */
import { ArgumentError } from '@longseq/backend';
import type { BlockCopy, BlockManager } from './block-manager';
import { OutOfBlocksError } from './errors';

export type PreemptionMode = 'recompute' | 'swap' | 'none';

export interface Request {
  readonly id: number;
  readonly prompt: readonly number[];
  /** Tokens to generate per sequence. */
  readonly maxNewTokens: number;
  /** Parallel samples sharing the prompt (default 1). */
  readonly n?: number;
  /** Beam search width (default 1, no beam); exclusive with n > 1. */
  readonly beamWidth?: number;
}

export interface SchedulerOptions {
  /** What to do when the running sequences need more blocks than are free (default 'recompute'). */
  readonly preemption?: PreemptionMode;
  /** At most this many sequences run at once (default unlimited). */
  readonly maxRunningSequences?: number;
  /**
   * Share of the blocks kept free when admitting new requests, so running sequences can
   * grow a while before anything is preempted (vLLM's watermark). Default 0.01.
   */
  readonly watermark?: number;
}

/** A sampling function: the next token of a sequence. */
export type Sampler = (requestId: number, seqId: number, tokens: readonly number[]) => number;
/** Beam reselection: for each of the group's k new beams, the index (into `seqIds`) of the beam it continues. */
export type BeamSelector = (requestId: number, seqIds: readonly number[]) => number[];

export interface KvWrite {
  readonly seqId: number;
  readonly slots: number[];
}

export interface StepResult {
  /** Requests prefilled this step (admitted or re-admitted after recompute). */
  readonly prefilled: number[];
  /** Tokens whose KV was written this step (prompt tokens not in the prefix cache, plus one per decoding sequence). */
  readonly tokens: number;
  /** Prompt tokens served from the prefix cache. */
  readonly cachedTokens: number;
  readonly writes: KvWrite[];
  /** Device copy-on-write copies, to run before the writes. */
  readonly copies: BlockCopy[];
  readonly swapOut: BlockCopy[];
  readonly swapIn: BlockCopy[];
  readonly preempted: { readonly requestId: number; readonly mode: 'recompute' | 'swap' }[];
  readonly finished: number[];
}

interface Group {
  readonly request: Request;
  /** Arrival order: FCFS admits the lowest first and preempts the highest first. */
  readonly arrival: number;
  /** Sequence ids while admitted. */
  seqIds: number[];
  /** Generated tokens so far (of the first sequence, for recompute of single-sequence groups). */
  generated: number;
  /** Tokens sampled but whose KV is not yet written, per sequence. */
  pending: Map<number, number>;
  /** The prompt to prefill on (re-)admission. */
  prompt: number[];
  state: 'waiting' | 'running' | 'swapped';
}

const byArrival = (a: Group, b: Group): number => a.arrival - b.arrival;

export class Scheduler {
  readonly manager: BlockManager;
  readonly preemption: PreemptionMode;
  readonly maxRunningSequences: number;
  readonly watermark: number;
  private readonly waiting: Group[] = [];
  private readonly running: Group[] = [];
  private readonly swapped: Group[] = [];
  private readonly ids = new Set<number>();
  private arrivals = 0;

  constructor(manager: BlockManager, options: SchedulerOptions = {}) {
    this.manager = manager;
    this.preemption = options.preemption ?? 'recompute';
    if (!['recompute', 'swap', 'none'].includes(this.preemption))
      throw new ArgumentError('options.preemption', "'recompute', 'swap' or 'none'", this.preemption);
    this.maxRunningSequences = options.maxRunningSequences ?? Number.POSITIVE_INFINITY;
    this.watermark = options.watermark ?? 0.01;
    if (!(this.watermark >= 0 && this.watermark < 1))
      throw new ArgumentError('options.watermark', 'a number in [0, 1)', this.watermark);
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numSwapped(): number {
    return this.swapped.length;
  }

  /** Sequences running now. */
  get runningSequences(): number {
    return this.running.reduce((n, g) => n + g.seqIds.length, 0);
  }

  /** Every request the scheduler holds, with its state and (while admitted) its sequence ids. */
  groups(): { requestId: number; state: 'waiting' | 'running' | 'swapped'; seqIds: readonly number[] }[] {
    return [...this.running, ...this.swapped, ...this.waiting].map((g) => ({
      requestId: g.request.id,
      state: g.state,
      seqIds: [...g.seqIds],
    }));
  }

  get idle(): boolean {
    return this.waiting.length === 0 && this.running.length === 0 && this.swapped.length === 0;
  }

  add(request: Request): void {
    if (request === null || typeof request !== 'object')
      throw new ArgumentError('request', 'an object', request);
    if (this.ids.has(request.id))
      throw new ArgumentError('request.id', 'an id not already queued', request.id);
    if (!Array.isArray(request.prompt) || request.prompt.length === 0)
      throw new ArgumentError('request.prompt', 'a non-empty array of token ids', request.prompt);
    if (!Number.isInteger(request.maxNewTokens) || request.maxNewTokens < 1)
      throw new ArgumentError('request.maxNewTokens', 'an integer >= 1', request.maxNewTokens);
    const n = request.n ?? 1;
    const beam = request.beamWidth ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new ArgumentError('request.n', 'an integer >= 1', n);
    if (!Number.isInteger(beam) || beam < 1)
      throw new ArgumentError('request.beamWidth', 'an integer >= 1', beam);
    if (n > 1 && beam > 1)
      throw new ArgumentError('request', 'n > 1 or beamWidth > 1, not both', `n ${n}, beamWidth ${beam}`);
    this.ids.add(request.id);
    this.waiting.push({
      request,
      arrival: this.arrivals++,
      seqIds: [],
      generated: 0,
      pending: new Map(),
      prompt: [...request.prompt],
      state: 'waiting',
    });
  }

  /**
   * One step: make room for the running sequences' next tokens (preempting the newest
   * requests if needed), swap requests back in or admit waiting ones, then write one
   * token per running sequence and prefill the admitted prompts. With preemption 'none',
   * a step that cannot fit throws OutOfBlocksError before changing anything.
   */
  step(sample: Sampler, selectBeams?: BeamSelector): StepResult {
    const m = this.manager;
    const result = {
      prefilled: [] as number[],
      tokens: 0,
      cachedTokens: 0,
      writes: [] as KvWrite[],
      copies: [] as BlockCopy[],
      swapOut: [] as BlockCopy[],
      swapIn: [] as BlockCopy[],
      preempted: [] as { requestId: number; mode: 'recompute' | 'swap' }[],
      finished: [] as number[],
    };
    // 1. room for one more token per running sequence, newest preempted first
    const needs = (g: Group): number => g.seqIds.reduce((n, id) => n + m.blocksToAppend(id, 1), 0);
    let needed = this.running.reduce((n, g) => n + needs(g), 0);
    if (needed > m.device.available && this.preemption === 'none')
      throw new OutOfBlocksError('running sequences', needed, m.device.available);
    while (needed > m.device.available && this.running.length > 0) {
      const victim = this.running.pop()!;
      needed -= needs(victim);
      this.preempt(victim, result);
    }
    // 2. bring back swapped requests, then admit new ones, in arrival order, while they fit
    let free = m.device.available - needed;
    let seqs = this.runningSequences;
    if (result.preempted.length === 0) {
      while (this.swapped.length > 0) {
        const g = this.swapped[0]!;
        const cost = m.blocksToSwapIn(g.seqIds) + g.seqIds.length;
        if (cost > free || seqs + g.seqIds.length > this.maxRunningSequences) break;
        this.swapped.shift();
        result.swapIn.push(...m.swapIn(g.seqIds).copies);
        g.state = 'running';
        this.running.push(g);
        this.running.sort(byArrival);
        free = m.device.available - this.running.reduce((n, r) => n + needs(r), 0);
        seqs += g.seqIds.length;
      }
    }
    const admitted: Group[] = [];
    if (this.swapped.length === 0) {
      while (this.waiting.length > 0) {
        const g = this.waiting[0]!;
        const width = Math.max(g.request.n ?? 1, g.request.beamWidth ?? 1);
        // the prompt, plus a block per extra sequence for its first copy-on-write or new block
        const cost = m.blocksToAdd(g.prompt) + width;
        const reserve = Math.floor(this.watermark * m.device.numBlocks);
        if (cost + reserve > free || seqs + width > this.maxRunningSequences) {
          if (this.running.length === 0 && admitted.length === 0 && cost + reserve > m.device.numBlocks)
            throw new OutOfBlocksError(
              'request.prompt',
              cost + reserve,
              m.device.numBlocks,
              'KV blocks in the budget',
            );
          break;
        }
        this.waiting.shift();
        admitted.push(g);
        free -= cost;
        seqs += width;
      }
    }
    // 3. decode one token per running sequence (KV of the token sampled last step)
    for (const g of this.running) {
      for (const id of g.seqIds) {
        const token = g.pending.get(id)!;
        const r = m.append(id, [token]);
        result.copies.push(...r.copies);
        result.writes.push({ seqId: id, slots: r.slots });
        result.tokens += 1;
      }
      g.generated++;
    }
    // 4. prefill admitted prompts; parallel samples and beams fork from the prompt
    for (const g of admitted) {
      const r = m.add(g.prompt);
      result.copies.push(...r.copies);
      result.writes.push({ seqId: r.seqId, slots: r.slots });
      result.tokens += r.slots.length;
      result.cachedTokens += r.cachedTokens;
      const width = Math.max(g.request.n ?? 1, g.request.beamWidth ?? 1);
      g.seqIds = [r.seqId];
      for (let i = 1; i < width; i++) g.seqIds.push(m.fork(r.seqId));
      g.state = 'running';
      this.running.push(g);
      this.running.sort(byArrival);
      result.prefilled.push(g.request.id);
    }
    // 5. sample, reselect beams, retire finished requests
    for (const g of [...this.running]) {
      const finished = g.generated >= g.request.maxNewTokens;
      if (finished) {
        for (const id of g.seqIds) m.free(id);
        g.seqIds = [];
        this.running.splice(this.running.indexOf(g), 1);
        this.ids.delete(g.request.id);
        result.finished.push(g.request.id);
        continue;
      }
      if ((g.request.beamWidth ?? 1) > 1 && selectBeams && g.generated > 0) this.reselect(g, selectBeams);
      for (const id of g.seqIds) g.pending.set(id, sample(g.request.id, id, m.tokens(id)));
    }
    return result;
  }

  private reselect(g: Group, selectBeams: BeamSelector): void {
    const m = this.manager;
    const parents = selectBeams(g.request.id, g.seqIds);
    if (!Array.isArray(parents) || parents.length !== g.seqIds.length)
      throw new ArgumentError('selectBeams result', `${g.seqIds.length} beam indices`, parents);
    for (const p of parents) {
      if (!Number.isInteger(p) || p < 0 || p >= g.seqIds.length)
        throw new ArgumentError('selectBeams result', `indices in [0, ${g.seqIds.length})`, p);
    }
    // a beam that continues itself keeps its sequence; a replaced one becomes a fork of its
    // new parent. Every fork happens before any free, so shared blocks are never released.
    const old = g.seqIds;
    const next = parents.map((p, i) => (p === i ? old[i]! : m.fork(old[p]!)));
    parents.forEach((p, i) => {
      if (p !== i) m.free(old[i]!);
    });
    g.seqIds = next;
  }

  private preempt(
    g: Group,
    result: { preempted: { requestId: number; mode: 'recompute' | 'swap' }[]; swapOut: BlockCopy[] },
  ): void {
    const m = this.manager;
    const canSwap = this.preemption === 'swap' && m.blocksToSwapIn(g.seqIds) <= m.host.available;
    if (canSwap) {
      result.swapOut.push(...m.swapOut(g.seqIds).copies);
      g.state = 'swapped';
      this.swapped.push(g);
      this.swapped.sort(byArrival);
      result.preempted.push({ requestId: g.request.id, mode: 'swap' });
      return;
    }
    // recompute: a single sequence keeps what it generated as part of its new prompt;
    // a group of several restarts from its prompt (its samples diverged)
    if (g.seqIds.length === 1) {
      const id = g.seqIds[0]!;
      g.prompt = [...m.tokens(id), g.pending.get(id)!];
    } else {
      g.prompt = [...g.request.prompt];
      g.generated = 0;
    }
    for (const id of g.seqIds) m.free(id);
    g.seqIds = [];
    g.pending.clear();
    g.state = 'waiting';
    this.waiting.unshift(g);
    this.waiting.sort(byArrival);
    result.preempted.push({ requestId: g.request.id, mode: 'recompute' });
  }
}
