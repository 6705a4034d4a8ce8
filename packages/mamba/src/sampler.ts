/**
 * Choosing the next token from logits: greedy (argmax), or sampling with temperature,
 * top-k and top-p (nucleus), from a seeded generator so a seed replays the same text.
 */
import { ArgumentError, checkPositiveNumber } from '@longseq/backend';

export interface SamplingOptions {
  /** Take the most likely token (the default when no temperature is given). */
  readonly greedy?: boolean;
  /** Logits are divided by it before the softmax; > 0. Setting it turns sampling on. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens (>= 1). */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (0 < p <= 1). */
  readonly topP?: number;
  /** Seed of the sampler's generator (default 0). */
  readonly seed?: number;
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value; the first one on ties (as torch.argmax). NaN never wins. */
export function argmax(values: ArrayLike<number>, from = 0, to = values.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (values[i]! > values[best]! || Number.isNaN(values[best]!)) best = i;
  return best - from;
}

export class Sampler {
  readonly greedy: boolean;
  private readonly temperature: number;
  private readonly topK: number | undefined;
  private readonly topP: number | undefined;
  private readonly random: () => number;

  constructor(options: SamplingOptions = {}) {
    if (options.temperature !== undefined) checkPositiveNumber(options.temperature, 'options.temperature');
    if (options.topK !== undefined && (!Number.isInteger(options.topK) || options.topK < 1)) {
      throw new ArgumentError('options.topK', 'an integer >= 1', options.topK);
    }
    if (
      options.topP !== undefined &&
      !(typeof options.topP === 'number' && options.topP > 0 && options.topP <= 1)
    ) {
      throw new ArgumentError('options.topP', 'a number in (0, 1]', options.topP);
    }
    if (options.seed !== undefined && !Number.isInteger(options.seed)) {
      throw new ArgumentError('options.seed', 'an integer', options.seed);
    }
    if (
      options.greedy === true &&
      (options.temperature !== undefined || options.topK !== undefined || options.topP !== undefined)
    ) {
      throw new ArgumentError('options.greedy', 'greedy without temperature, topK or topP', 'both');
    }
    this.greedy = options.greedy ?? options.temperature === undefined;
    this.temperature = options.temperature ?? 1;
    this.topK = options.topK;
    this.topP = options.topP;
    this.random = seededRandom(options.seed ?? 0);
  }

  /** The next token from one row of logits (`values[from..from + vocab)`). */
  next(values: ArrayLike<number>, from = 0, vocab = values.length - from): number {
    if (this.greedy) return argmax(values, from, from + vocab);
    // Candidates by descending logit; stable on ties (lower id first).
    const order = Array.from({ length: vocab }, (_, i) => i).sort(
      (a, b) => values[from + b]! - values[from + a]! || a - b,
    );
    const kept = order.slice(0, this.topK ?? vocab);
    const max = values[from + kept[0]!]!;
    let weights = kept.map((i) => Math.exp((values[from + i]! - max) / this.temperature));
    let total = weights.reduce((a, b) => a + b, 0);
    if (this.topP !== undefined) {
      let cumulative = 0;
      let cut = kept.length;
      for (let i = 0; i < kept.length; i++) {
        cumulative += weights[i]! / total;
        if (cumulative >= this.topP) {
          cut = i + 1;
          break;
        }
      }
      kept.length = cut;
      weights = weights.slice(0, cut);
      total = weights.reduce((a, b) => a + b, 0);
    }
    let target = this.random() * total;
    for (let i = 0; i < kept.length; i++) {
      target -= weights[i]!;
      if (target < 0) return kept[i]!;
    }
    return kept[kept.length - 1]!;
  }
}
