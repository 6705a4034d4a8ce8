/**
 * The language-model pieces that do not depend on the model's layers, shared with the models
 * built on this package (@longseq/jamba): checks of token ids and of generate()'s arguments,
 * the rows of each sequence's last position, the argmax of each row of a step's logits (on
 * the GPU where WebGPU has the kernel) and generate()'s loop that picks the new tokens.
 */
import { ArgumentError, ShapeError, type Tensor, gather, hasKernel, runKernel } from '@longseq/backend';
import { type Sampler, argmax } from './sampler';
import { registerMambaKernels } from './ssm-step';
import { MambaArgmax } from './webgpu/fused-decode';

/**
 * Checks token ids on the host, before any GPU work: a non-empty batch `[B][L]` of equal-length
 * rows (L >= 1 unless `allowEmptyRows`) of integers in [0, vocabSize). Throws ArgumentError or
 * ShapeError naming `argument` (and the row).
 */
export function checkTokenIds(
  ids: readonly (readonly number[])[],
  argument: string,
  vocabSize: number,
  allowEmptyRows = false,
): void {
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((row) => Array.isArray(row))) {
    throw new ArgumentError(argument, 'a non-empty array of token id arrays ([B][L])', ids);
  }
  const length = ids[0]!.length;
  if (!allowEmptyRows && length === 0) throw new ShapeError(argument, '[B, L] with L >= 1', [ids.length, 0]);
  for (let b = 0; b < ids.length; b++) {
    const row = ids[b]!;
    if (row.length !== length)
      throw new ShapeError(argument, `rows of equal length ${length}`, `row ${b} of length ${row.length}`);
    for (const id of row) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new ArgumentError(`${argument}[${b}]`, `token ids in [0, ${vocabSize})`, id);
      }
    }
  }
}

/**
 * Each sequence's last position of hidden states `[B, L, M]`: the rows b * L + L - 1 of hidden
 * viewed as `[B * L, M]`, gathered into a new `[B, 1, M]` tensor (what an LM head needs after
 * a prompt).
 */
export async function lastPositions(hidden: Tensor, batch: number, length: number): Promise<Tensor> {
  const width = hidden.shape[hidden.rank - 1]!;
  const rows = hidden.backend.tensor(
    Array.from({ length: batch }, (_, b) => b * length + length - 1),
    [batch, 1],
    'i32',
  );
  const view = hidden.reshape([batch * length, width]);
  try {
    return await gather(view, rows);
  } finally {
    view.dispose();
    rows.dispose();
  }
}

/** generate()'s prompt as rows: one prompt `[L]` becomes `[1][L]`, a batch `[B][L]` stays (ids are the model's to check). */
export function promptRows(
  prompt: readonly number[] | readonly (readonly number[])[],
): readonly (readonly number[])[] {
  return (Array.isArray(prompt[0]) ? prompt : [prompt]) as readonly (readonly number[])[];
}

/** Checks generate()'s options are an object with `maxNewTokens` an integer >= 0, and returns it (ArgumentError naming the field). */
export function checkMaxNewTokens(options: { readonly maxNewTokens: number }): number {
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const { maxNewTokens } = options;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new ArgumentError('options.maxNewTokens', 'an integer >= 0', maxNewTokens);
  return maxNewTokens;
}

/**
 * The argmax of each row of logits `[B, V]` (first index on ties, as torch.argmax). With
 * `onGpu` and a backend that has `MambaArgmax` (WebGPU), it runs on the GPU and only B ids are
 * read back; otherwise the logits are read and the argmax taken on the host. `logits` stays
 * the caller's.
 */
export async function argmaxRows(
  logits: Tensor,
  batch: number,
  vocab: number,
  onGpu = true,
): Promise<number[]> {
  registerMambaKernels();
  if (onGpu && hasKernel(MambaArgmax, logits.backend.kind)) {
    const chosen = (await runKernel(MambaArgmax, logits.backend, [logits], { batch, vocab })) as Tensor;
    try {
      return Array.from(await chosen.read());
    } finally {
      chosen.dispose();
    }
  }
  const values = await logits.read();
  return Array.from({ length: batch }, (_, b) => argmax(values, b * vocab, (b + 1) * vocab));
}

export interface GenerateTokensOptions {
  readonly sampler: Sampler;
  /** Sequences decoded together. */
  readonly rows: number;
  readonly vocab: number;
  /** New tokens per row (>= 0). */
  readonly maxNewTokens: number;
  /** The logits that follow the prompts, `[rows * vocab]`: they choose the first new tokens. */
  readonly first: Float32Array;
  /** Keep the logits that chose each new token. */
  readonly returnLogits?: boolean;
  /** Appends one token per row and returns the next logits `[rows, vocab]` (read back, then disposed here). */
  readonly step: (ids: number[]) => Promise<Tensor>;
  /**
   * Appends one token per row and returns the next ids (greedy), for instance through
   * `argmaxRows`. Used instead of `step` when the sampler is greedy and no logits are kept.
   */
  readonly stepGreedy?: (ids: number[]) => Promise<number[]>;
}

/**
 * The token loop of `generate()`: picks a token per row from `first` with the sampler, then
 * (until each row has `maxNewTokens`) feeds the chosen ids through `step` and picks again
 * from the logits it returns. Sampling draws from the sampler's seeded generator row by row,
 * token by token, so a seed replays the same tokens. Returns the new ids `[rows][maxNewTokens]`
 * and, with `returnLogits`, the logits that chose each token.
 */
export async function generateTokens(
  options: GenerateTokensOptions,
): Promise<{ ids: number[][]; logits?: Float32Array[] }> {
  const { sampler, rows, vocab, maxNewTokens, step, stepGreedy } = options;
  const out: number[][] = Array.from({ length: rows }, () => []);
  const logitsOut: Float32Array[] = [];
  const result = () => ({ ids: out, ...(options.returnLogits ? { logits: logitsOut } : {}) });
  if (maxNewTokens === 0) return result();
  // Greedy decoding without the logits asked for needs only the ids: stepGreedy (the argmax
  // on the GPU where it can, B ids read back instead of B x V logits).
  const idsOnly = sampler.greedy && !options.returnLogits && stepGreedy !== undefined;
  let last = options.first;
  const pick = () => Array.from({ length: rows }, (_, r) => sampler.next(last, r * vocab, vocab));
  let chosen = pick();
  for (let i = 0; i < maxNewTokens; i++) {
    for (let r = 0; r < rows; r++) out[r]!.push(chosen[r]!);
    if (options.returnLogits) logitsOut.push(last);
    if (i === maxNewTokens - 1) break;
    if (idsOnly) {
      chosen = await stepGreedy(chosen);
    } else {
      const logits = await step(chosen);
      try {
        last = (await logits.read()) as Float32Array;
      } finally {
        logits.dispose();
      }
      chosen = pick();
    }
  }
  return result();
}
