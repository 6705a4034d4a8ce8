/**
 * Node-side helpers for the model packages' tests (no vitest here): the golden folders of
 * ../shared/golden (beside the repository; see its README), their JSON and tensors, temporary
 * checkpoint folders, the golden README's relative-error rule, and greedy decoding through a
 * float64 reference model.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of a golden checkpoint: ../shared/golden/<name> (config.json, model.safetensors, expected.json). */
export function goldenDir(name: string): string {
  return fileURLToPath(new URL(`../../../../shared/golden/${name}`, import.meta.url));
}

/** A JSON file of a folder, parsed. */
export function readJson<T = Record<string, unknown>>(dir: string, file: string): T {
  return JSON.parse(readFileSync(join(dir, file), 'utf8')) as T;
}

/** expected.json of the language-model goldens (mamba-tiny, jamba-tiny): transformers' outputs. */
export interface LanguageModelGolden {
  /** [B, L] token ids. */
  readonly input_ids: number[][];
  /** [B, L, V] logits of `input_ids`. */
  readonly logits: number[][][];
  /** Greedy generation from `prompt_ids`: the new ids and the logits each was chosen from. */
  readonly generate: {
    prompt_ids: number[];
    new_ids: number[];
    step_logits: number[][];
    min_top2_margin: number;
  };
}

/** What these helpers use of @longseq/nn's SafetensorsFile (the harness does not depend on nn). */
export interface ParsedSafetensors {
  readonly names: readonly string[];
  readonly entries: ReadonlyMap<string, { readonly shape: readonly number[] }>;
  read(name: string): Float32Array;
}

/** A tensor to encode, as @longseq/nn's `encodeSafetensors` takes it. */
export interface TensorInput {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** @longseq/nn's safetensors parser and writer, passed in (the harness does not depend on nn). */
export interface SafetensorsCodec<T extends TensorInput = TensorInput> {
  parse(bytes: Uint8Array): ParsedSafetensors;
  encode(tensors: Readonly<Record<string, T>>): Uint8Array;
}

const tempDirs: string[] = [];

/**
 * A fresh temporary checkpoint folder: `config` as config.json, and `files` (name -> bytes or
 * text: model.safetensors, shards, an index). Removed by `cleanTempDirs`.
 */
export function writeCheckpointFolder(
  prefix: string,
  config: unknown,
  files: Readonly<Record<string, Uint8Array | string>>,
): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return dir;
}

/** A golden checkpoint folder and what tests build from it (see `goldenCheckpoint`). */
export interface GoldenCheckpoint<G, T extends TensorInput> {
  /** ../shared/golden/<name>. */
  readonly GOLDEN: string;
  /** expected.json. */
  readGolden(): G;
  /** config.json. */
  goldenConfig(): Record<string, unknown>;
  /** model.safetensors' tensors as encodable inputs, to build broken copies from. */
  goldenTensors(): Record<string, { shape: readonly number[]; data: Float32Array }>;
  /**
   * A temporary checkpoint folder with this config and these tensors (or ready safetensors
   * bytes), in one model.safetensors or, with `shards` (tensor names per file), in shards
   * listed by a model.safetensors.index.json. Removed by `cleanTempDirs`.
   */
  writeCheckpoint(
    config: Record<string, unknown>,
    tensors: Readonly<Record<string, T>> | Uint8Array,
    shards?: readonly (readonly string[])[],
  ): string;
}

/** The helpers a model package's tests need around its golden folder ../shared/golden/<name>. */
export function goldenCheckpoint<G, T extends TensorInput = TensorInput>(
  name: string,
  codec: SafetensorsCodec<T>,
): GoldenCheckpoint<G, T> {
  const dir = goldenDir(name);
  const prefix = `longseq-${name}-`;
  return {
    GOLDEN: dir,
    readGolden: () => readJson<G>(dir, 'expected.json'),
    goldenConfig: () => readJson(dir, 'config.json'),
    goldenTensors: () => {
      const file = codec.parse(new Uint8Array(readFileSync(join(dir, 'model.safetensors'))));
      const out: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
      for (const n of file.names) out[n] = { shape: file.entries.get(n)!.shape, data: file.read(n) };
      return out;
    },
    writeCheckpoint: (config, tensors, shards) => {
      if (tensors instanceof Uint8Array || !shards)
        return writeCheckpointFolder(prefix, config, {
          'model.safetensors': tensors instanceof Uint8Array ? tensors : codec.encode(tensors),
        });
      const files: Record<string, Uint8Array | string> = {};
      const weightMap: Record<string, string> = {};
      shards.forEach((names, i) => {
        const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
        const part: Record<string, T> = {};
        for (const n of names) {
          part[n] = tensors[n]!;
          weightMap[n] = file;
        }
        files[file] = codec.encode(part);
      });
      files['model.safetensors.index.json'] = JSON.stringify({ weight_map: weightMap });
      return writeCheckpointFolder(prefix, config, files);
    },
  };
}

/** Removes every folder `writeCheckpointFolder` made (call it in afterAll). */
export function cleanTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** The golden README's tolerance for float32 kernels against a float64 model. */
export const REL_TOL = 1e-4;

/**
 * The golden README's rule for float32 kernels against a float64 model: the error of each
 * value relative to the largest |expected| of its row of `row` values (so values near zero are
 * compared at the row's scale). Returns the worst over the rows; Infinity for NaN or a length
 * mismatch.
 */
export function maxRelativeError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  row: number,
): number {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let start = 0; start < expected.length; start += row) {
    let scale = 0;
    for (let i = start; i < start + row; i++) scale = Math.max(scale, Math.abs(expected[i]!));
    for (let i = start; i < start + row; i++) {
      const err = Math.abs(actual[i]! - expected[i]!) / scale;
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    }
  }
  return worst;
}

/**
 * A language model's float64 reference against its golden (transformers' outputs): `run(ids)`
 * runs a batch of sequences from the start and `next(ids, state)` continues one from a state,
 * each returning every sequence's logits `[L * V]` and the state after them. Returns the worst
 * `maxRelativeError` of the logits of `input_ids`; the ids of greedy generation from
 * `generate.prompt_ids` (the prompt once, then one chosen token at a time, by `argmax`), and the
 * worst error of the logits each was chosen from against `generate.step_logits`.
 */
export function referenceAgainstGolden<S>(
  run: (ids: number[][]) => { logits: readonly Float64Array[]; state: S },
  next: (ids: number[][], state: S) => { logits: readonly Float64Array[]; state: S },
  golden: LanguageModelGolden,
  argmax: (logits: Float64Array) => number,
): { logitsError: number; ids: number[]; worstStepError: number } {
  const vocab = golden.logits[0]![0]!.length;
  const all = run(golden.input_ids).logits;
  const logitsError = maxRelativeError(
    Float64Array.from(all.flatMap((l) => Array.from(l))),
    golden.logits.flat(2),
    vocab,
  );
  const g = golden.generate;
  let { logits, state } = run([g.prompt_ids]);
  let last = logits[0]!.subarray(logits[0]!.length - vocab);
  const ids: number[] = [];
  let worstStepError = 0;
  for (let i = 0; i < g.new_ids.length; i++) {
    worstStepError = Math.max(worstStepError, maxRelativeError(last, g.step_logits[i]!, vocab));
    const id = argmax(last);
    ids.push(id);
    ({ logits, state } = next([[id]], state));
    last = logits[0]!;
  }
  return { logitsError, ids, worstStepError };
}
