/**
 * A serving simulation: a synthetic trace of chat requests replayed step by step under a
 * fixed KV budget, through
 *   (a) contiguous allocation: each sequence reserves its maximum length (prompt + the
 *       request's max new tokens) up front, the way systems before vLLM did, and
 *   (b) the paged cache: blocks allocated as tokens arrive, shared by parallel samples and
 *       beams (fork + copy-on-write), FCFS with preemption (the Scheduler).
 * One step is one model iteration: every running sequence gets one token, admitted prompts
 * are prefilled. Pure TypeScript; no GPU.
 *
 * The trace: Poisson arrivals (exponential gaps, `rate` requests per step); prompt and
 * output lengths log-normal, by default fitted to the ShareGPT statistics the vLLM paper
 * reports (mean prompt 161 tokens, mean output 338), cut to the model's max length.
 */
import { ArgumentError } from '@longseq/backend';
import { BlockManager } from './block-manager';
import { Scheduler } from './scheduler';

export interface LogNormal {
  /** Mean and standard deviation of the underlying normal (of ln length). */
  readonly mu: number;
  readonly sigma: number;
}

/**
 * ShareGPT-like lengths. A log-normal with parameters (mu, sigma) has mean exp(mu + sigma^2/2):
 * prompts mu = ln(161) - 1.0^2/2 = 4.58, sigma 1.0 (mean 161, median 98);
 * outputs mu = ln(338) - 0.9^2/2 = 5.42, sigma 0.9 (mean 338, median 226).
 */
export const SHAREGPT_PROMPT: LogNormal = { mu: Math.log(161) - 0.5, sigma: 1.0 };
export const SHAREGPT_OUTPUT: LogNormal = { mu: Math.log(338) - 0.405, sigma: 0.9 };

export interface TraceOptions {
  readonly requests?: number;
  /** Mean arrivals per step (Poisson). Default 1. */
  readonly rate?: number;
  readonly prompt?: LogNormal;
  readonly output?: LogNormal;
  /** Longest sequence the model takes (prompt + output); default 2048 (OPT, as in the vLLM paper). */
  readonly maxModelLen?: number;
  /** Parallel samples per request (default 1). */
  readonly n?: number;
  /** Beam width (default 1: no beam search). */
  readonly beamWidth?: number;
  /** Tokens of a system prompt shared by every request (exercises the prefix cache). Default 0. */
  readonly sharedPrefix?: number;
  readonly seed?: number;
}

export interface TraceRequest {
  readonly id: number;
  /** Step at which it arrives. */
  readonly arrival: number;
  readonly prompt: number[];
  /** Tokens it will actually generate (where it stops). */
  readonly outputLen: number;
  /** The limit it asked for: the model's max length minus the prompt (the usual default). */
  readonly maxNewTokens: number;
  readonly n: number;
  readonly beamWidth: number;
}

/** A small, fast, seedable generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(random: () => number): number {
  // Box-Muller
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

export function generateTrace(options: TraceOptions = {}): TraceRequest[] {
  const count = options.requests ?? 1000;
  const rate = options.rate ?? 1;
  const maxModelLen = options.maxModelLen ?? 2048;
  const n = options.n ?? 1;
  const beamWidth = options.beamWidth ?? 1;
  const shared = options.sharedPrefix ?? 0;
  if (!Number.isInteger(count) || count < 0) throw new ArgumentError('requests', 'an integer >= 0', count);
  if (!(rate > 0)) throw new ArgumentError('rate', 'a number > 0', rate);
  if (!Number.isInteger(maxModelLen) || maxModelLen < 2)
    throw new ArgumentError('maxModelLen', 'an integer >= 2', maxModelLen);
  if (!Number.isInteger(shared) || shared < 0 || shared >= maxModelLen - 1)
    throw new ArgumentError('sharedPrefix', `an integer in [0, ${maxModelLen - 2}]`, shared);
  const random = seededRandom(options.seed ?? 1);
  const prompt = options.prompt ?? SHAREGPT_PROMPT;
  const output = options.output ?? SHAREGPT_OUTPUT;
  const systemPrompt = Array.from({ length: shared }, () => Math.floor(random() * 32000));
  const trace: TraceRequest[] = [];
  let time = 0;
  for (let id = 0; id < count; id++) {
    time += -Math.log(Math.max(1 - random(), 1e-12)) / rate;
    const promptLen = Math.min(
      maxModelLen - 1 - shared,
      Math.max(1, Math.round(Math.exp(prompt.mu + prompt.sigma * normal(random)))),
    );
    const maxNewTokens = maxModelLen - shared - promptLen;
    const outputLen = Math.min(
      maxNewTokens,
      Math.max(1, Math.round(Math.exp(output.mu + output.sigma * normal(random)))),
    );
    const tokens = [...systemPrompt];
    for (let i = 0; i < promptLen; i++) tokens.push(Math.floor(random() * 32000));
    trace.push({ id, arrival: Math.floor(time), prompt: tokens, outputLen, maxNewTokens, n, beamWidth });
  }
  return trace;
}

export interface SimulationOptions {
  /** KV budget in blocks (of `blockSize` tokens); the contiguous run gets the same tokens. */
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Paged preemption (default 'recompute'). */
  readonly preemption?: 'recompute' | 'swap';
  /** Host blocks for swapping (default numBlocks). */
  readonly numHostBlocks?: number;
  readonly prefixCaching?: boolean;
  /** Record every k-th step in the series (default: about 400 points). */
  readonly sampleEvery?: number;
  /** Stop after this many steps (default 1e6). */
  readonly maxSteps?: number;
  readonly seed?: number;
}

export interface SeriesPoint {
  readonly step: number;
  /** KV tokens reserved (allocated) and actually holding a token, and sequences running. */
  readonly reserved: number;
  readonly used: number;
  readonly running: number;
}

export interface RunStats {
  readonly name: 'contiguous' | 'paged';
  readonly steps: number;
  readonly finished: number;
  /** Time-averaged: sum over steps of (reserved - used) / sum of reserved, in %. */
  readonly wastePct: number;
  /** Time-averaged share of the budget reserved, in %. */
  readonly utilizationPct: number;
  readonly maxConcurrent: number;
  readonly meanConcurrent: number;
  /** Tokens written (prefill + decode) per step. */
  readonly tokensPerStep: number;
  /** Requests finished per 1000 steps. */
  readonly requestsPerKStep: number;
  readonly preemptions: number;
  /** Paged only: time-averaged (logical blocks - physical blocks) / logical blocks, in %. */
  readonly sharingSavedPct: number;
  readonly prefixCachedTokens: number;
  readonly series: SeriesPoint[];
}

export interface SimulationReport {
  readonly budgetTokens: number;
  readonly requests: number;
  readonly contiguous: RunStats;
  readonly paged: RunStats;
  /** paged.maxConcurrent / contiguous.maxConcurrent. */
  readonly concurrencyGain: number;
  readonly throughputGain: number;
}

class Accumulator {
  reserved = 0;
  used = 0;
  logical = 0;
  physical = 0;
  concurrent = 0;
  maxConcurrent = 0;
  steps = 0;
  tokens = 0;
  readonly series: SeriesPoint[] = [];
  constructor(
    readonly budget: number,
    readonly every: number,
  ) {}
  record(step: number, reserved: number, used: number, running: number, logical = 0, physical = 0): void {
    this.steps++;
    this.reserved += reserved;
    this.used += used;
    this.logical += logical;
    this.physical += physical;
    this.concurrent += running;
    this.maxConcurrent = Math.max(this.maxConcurrent, running);
    if (step % this.every === 0) this.series.push({ step, reserved, used, running });
  }
  stats(name: 'contiguous' | 'paged', finished: number, preemptions: number, cached: number): RunStats {
    const steps = Math.max(this.steps, 1);
    return {
      name,
      steps: this.steps,
      finished,
      wastePct: this.reserved === 0 ? 0 : (100 * (this.reserved - this.used)) / this.reserved,
      utilizationPct: (100 * this.reserved) / (steps * this.budget),
      maxConcurrent: this.maxConcurrent,
      meanConcurrent: this.concurrent / steps,
      tokensPerStep: this.tokens / steps,
      requestsPerKStep: (1000 * finished) / steps,
      preemptions,
      sharingSavedPct: this.logical === 0 ? 0 : (100 * (this.logical - this.physical)) / this.logical,
      prefixCachedTokens: cached,
      series: this.series,
    };
  }
}

/** (a) Contiguous: FCFS; a request is admitted when its whole reservation fits; never preempted. */
function runContiguous(
  trace: readonly TraceRequest[],
  budget: number,
  every: number,
  maxSteps: number,
): RunStats {
  const acc = new Accumulator(budget, every);
  interface Live {
    req: TraceRequest;
    width: number;
    length: number;
    generated: number;
  }
  const running: Live[] = [];
  let next = 0;
  let reserved = 0;
  let finished = 0;
  const queue: TraceRequest[] = [];
  const reservation = (r: TraceRequest) => Math.max(r.n, r.beamWidth) * (r.prompt.length + r.maxNewTokens);
  for (
    let step = 0;
    step < maxSteps && (next < trace.length || queue.length > 0 || running.length > 0);
    step++
  ) {
    while (next < trace.length && trace[next]!.arrival <= step) queue.push(trace[next++]!);
    // decode one token per running sequence
    for (const s of running) {
      s.length++;
      s.generated++;
      acc.tokens += s.width;
    }
    for (let i = running.length - 1; i >= 0; i--) {
      const s = running[i]!;
      if (s.generated >= s.req.outputLen) {
        reserved -= reservation(s.req);
        running.splice(i, 1);
        finished++;
      }
    }
    while (queue.length > 0) {
      const r = queue[0]!;
      if (reservation(r) > budget && running.length === 0)
        throw new ArgumentError(
          'budget',
          `room for one request's reservation (${reservation(r)} tokens)`,
          budget,
        );
      if (reserved + reservation(r) > budget) break;
      queue.shift();
      reserved += reservation(r);
      const width = Math.max(r.n, r.beamWidth);
      running.push({ req: r, width, length: r.prompt.length, generated: 0 });
      acc.tokens += r.prompt.length * width;
    }
    // without sharing, each of the request's sequences holds its own copy of the prompt
    const used = running.reduce((sum, s) => sum + s.length * s.width, 0);
    const seqs = running.reduce((sum, s) => sum + s.width, 0);
    acc.record(step, reserved, used, seqs);
  }
  return acc.stats('contiguous', finished, 0, 0);
}

/** (b) Paged: the Scheduler over a BlockManager with the same budget in tokens. */
function runPaged(
  trace: readonly TraceRequest[],
  options: SimulationOptions,
  every: number,
  maxSteps: number,
): RunStats {
  const bs = options.blockSize;
  const budget = options.numBlocks * bs;
  const acc = new Accumulator(budget, every);
  const manager = new BlockManager({
    numBlocks: options.numBlocks,
    blockSize: bs,
    numHostBlocks: options.numHostBlocks ?? options.numBlocks,
    prefixCaching: options.prefixCaching ?? true,
  });
  const scheduler = new Scheduler(manager, { preemption: options.preemption ?? 'recompute' });
  const random = seededRandom((options.seed ?? 1) + 17);
  const sample = () => Math.floor(random() * 32000);
  // beams mostly continue themselves; about one in five is replaced by a fork of another
  const selectBeams = (_id: number, seqIds: readonly number[]) =>
    seqIds.map((_, i) => (random() < 0.8 ? i : Math.floor(random() * seqIds.length)));
  let next = 0;
  let finished = 0;
  let preemptions = 0;
  let cached = 0;
  const byId = new Map(trace.map((r) => [r.id, r]));
  for (let step = 0; step < maxSteps && (next < trace.length || !scheduler.idle); step++) {
    while (next < trace.length && trace[next]!.arrival <= step) {
      const r = trace[next++]!;
      scheduler.add({
        id: r.id,
        prompt: r.prompt,
        maxNewTokens: r.outputLen,
        n: r.n,
        beamWidth: r.beamWidth,
      });
    }
    const result = scheduler.step(sample, selectBeams);
    acc.tokens += result.tokens;
    finished += result.finished.length;
    preemptions += result.preempted.length;
    cached += result.cachedTokens;
    for (const id of result.finished) byId.delete(id);
    // reserved: physical slots of referenced blocks; used: slots holding a token; logical:
    // blocks the sequences would need without sharing
    const fill = new Map<number, number>();
    let logical = 0;
    for (const id of manager.sequenceIds()) {
      if (manager.isSwapped(id)) continue;
      const table = manager.blockTable(id);
      const length = manager.length(id);
      logical += table.length;
      table.forEach((b, i) => {
        const filled = Math.min(bs, length - i * bs);
        fill.set(b, Math.max(fill.get(b) ?? 0, filled));
      });
    }
    let used = 0;
    for (const f of fill.values()) used += f;
    acc.record(step, fill.size * bs, used, scheduler.runningSequences, logical, fill.size);
  }
  return acc.stats('paged', finished, preemptions, cached);
}

/** Replays one trace through both allocation schemes under the same budget. */
export function simulateServing(
  trace: readonly TraceRequest[],
  options: SimulationOptions,
): SimulationReport {
  if (!Number.isInteger(options.numBlocks) || options.numBlocks < 1)
    throw new ArgumentError('numBlocks', 'an integer >= 1', options.numBlocks);
  if (!Number.isInteger(options.blockSize) || options.blockSize < 1)
    throw new ArgumentError('blockSize', 'an integer >= 1', options.blockSize);
  const maxSteps = options.maxSteps ?? 1_000_000;
  const lastArrival = trace.length > 0 ? trace[trace.length - 1]!.arrival : 0;
  const every = options.sampleEvery ?? Math.max(1, Math.round((lastArrival + 400) / 400));
  const budget = options.numBlocks * options.blockSize;
  const contiguous = runContiguous(trace, budget, every, maxSteps);
  const paged = runPaged(trace, options, every, maxSteps);
  return {
    budgetTokens: budget,
    requests: trace.length,
    contiguous,
    paged,
    concurrencyGain: paged.maxConcurrent / Math.max(contiguous.maxConcurrent, 1),
    throughputGain: paged.requestsPerKStep / Math.max(contiguous.requestsPerKStep, 1e-9),
  };
}
