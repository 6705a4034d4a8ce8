/**
 * Hugging Face checkpoint folders: `config.json` plus `model.safetensors`, or shards listed
 * in `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`).
 */
import { type Backend, ShapeError, type Tensor, formatShape, shapesEqual } from '@longseq/backend';
import { ConfigError, MissingTensorError, SafetensorsFormatError } from './errors';
import { SafetensorsFile } from './safetensors';
import { type FileSource, readText } from './source';

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX = 'model.safetensors.index.json';

/** A checkpoint's tensors by name, across one file or several shards. */
export class Checkpoint {
  constructor(
    readonly source: FileSource,
    /** Tensor name -> the parsed file holding it. */
    private readonly files: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  get names(): string[] {
    return [...this.files.keys()];
  }

  has(name: string): boolean {
    return this.files.has(name);
  }

  /** Stored dtype and shape, or undefined when absent. */
  info(name: string): { dtype: string; shape: readonly number[]; file: string } | undefined {
    const file = this.files.get(name);
    const entry = file?.entries.get(name);
    return file && entry ? { dtype: entry.dtype, shape: entry.shape, file: file.file } : undefined;
  }

  /**
   * A tensor's values as f32. With `expectedShape`, a tensor of another shape throws
   * ShapeError naming it; a missing one MissingTensorError; an unknown dtype DTypeError.
   */
  read(name: string, expectedShape?: readonly number[]): Float32Array {
    const file = this.files.get(name);
    if (!file) throw new MissingTensorError(name, this.source.description);
    const entry = file.entries.get(name)!;
    if (expectedShape && !shapesEqual(entry.shape, expectedShape)) {
      throw new ShapeError(name, formatShape(expectedShape), entry.shape);
    }
    return file.read(name);
  }

  /** `read`, then upload to `backend` as an f32 tensor of the stored (or expected) shape. */
  upload(backend: Backend, name: string, expectedShape?: readonly number[]): Tensor {
    const data = this.read(name, expectedShape);
    return backend.tensor(data, expectedShape ?? this.info(name)!.shape);
  }
}

/** Loads the tensors of a checkpoint: the sharded index when there is one, else model.safetensors. */
export async function loadCheckpoint(source: FileSource): Promise<Checkpoint> {
  const files = new Map<string, SafetensorsFile>();
  if (await source.exists(SAFETENSORS_INDEX)) {
    let index: { weight_map?: unknown };
    try {
      index = JSON.parse(await readText(source, SAFETENSORS_INDEX));
    } catch (err) {
      throw new SafetensorsFormatError(
        SAFETENSORS_INDEX,
        `not JSON (${err instanceof Error ? err.message : err})`,
      );
    }
    const map = index?.weight_map;
    if (map === null || typeof map !== 'object' || Array.isArray(map)) {
      throw new SafetensorsFormatError(SAFETENSORS_INDEX, 'no weight_map object');
    }
    const shards = new Map<string, SafetensorsFile>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string')
        throw new SafetensorsFormatError(SAFETENSORS_INDEX, `weight_map.${name} is not a file name`);
      let file = shards.get(shard);
      if (!file) {
        file = SafetensorsFile.parse(await source.read(shard), shard);
        shards.set(shard, file);
      }
      if (!file.entries.has(name))
        throw new MissingTensorError(name, `${shard} (listed in ${SAFETENSORS_INDEX})`);
      files.set(name, file);
    }
  } else {
    const file = SafetensorsFile.parse(await source.read(SAFETENSORS_FILE), SAFETENSORS_FILE);
    for (const name of file.names) files.set(name, file);
  }
  return new Checkpoint(source, files);
}

/** A parsed config.json. */
export type HfConfig = Readonly<Record<string, unknown>>;

/** Reads and parses `config.json`. */
export async function loadConfig(source: FileSource, file = 'config.json'): Promise<HfConfig> {
  const text = await readText(source, file);
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(file)', 'valid JSON', err instanceof Error ? err.message : String(err));
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ConfigError('(file)', 'a JSON object', config);
  }
  return config as HfConfig;
}

/** The first of `fields` present in the config (HF models use several names for one thing). */
function pick(config: HfConfig, fields: readonly string[]): { field: string; value: unknown } | undefined {
  for (const field of fields)
    if (config[field] !== undefined && config[field] !== null) return { field, value: config[field] };
  return undefined;
}

/** An integer field (first of its aliases present), >= min; `fallback` when absent, else ConfigError. */
export function configInt(config: HfConfig, fields: readonly string[], fallback?: number, min = 1): number {
  const found = pick(config, fields);
  if (!found) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(fields.join(' / '), `an integer >= ${min}`, undefined);
  }
  if (typeof found.value !== 'number' || !Number.isInteger(found.value) || found.value < min) {
    throw new ConfigError(found.field, `an integer >= ${min}`, found.value);
  }
  return found.value;
}

/** A finite number field > 0. */
export function configNumber(config: HfConfig, fields: readonly string[], fallback?: number): number {
  const found = pick(config, fields);
  if (!found) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(fields.join(' / '), 'a number > 0', undefined);
  }
  if (typeof found.value !== 'number' || !Number.isFinite(found.value) || found.value <= 0) {
    throw new ConfigError(found.field, 'a number > 0', found.value);
  }
  return found.value;
}

export function configBool(config: HfConfig, fields: readonly string[], fallback: boolean): boolean {
  const found = pick(config, fields);
  if (!found) return fallback;
  if (typeof found.value !== 'boolean') throw new ConfigError(found.field, 'true or false', found.value);
  return found.value;
}

/** `architectures` (HF lists one class name, e.g. MambaForCausalLM); [] when absent. */
export function configArchitectures(config: HfConfig): string[] {
  const a = config.architectures;
  if (a === undefined || a === null) return [];
  if (!Array.isArray(a) || !a.every((x) => typeof x === 'string')) {
    throw new ConfigError('architectures', 'a list of class names', a);
  }
  return a as string[];
}
