/**
 * The model registry of `longseq run` and `longseq verify <checkpoint>`: config.json's
 * architecture (transformers' `architectures[0]`, or hustvl/Vim's `architecture`) -> a loader.
 * A model package plugs in with one entry here.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backend, Tensor } from '@longseq/backend';
import { JambaModel } from '@longseq/jamba';
import { MambaModel } from '@longseq/mamba';
import { VisionMamba } from '@longseq/vision-mamba';
import { UnsupportedFormatError } from './errors';

/** What the CLI needs of a causal language model. */
export interface CausalLm {
  readonly vocabSize: number;
  /** Logits `[B, L, V]` for ids `[B][L]`. */
  forward(ids: readonly (readonly number[])[]): Promise<Tensor>;
  /** New ids `[B][n]` (and with returnLogits the logits `[n][B * V]` that chose them). */
  generate(
    prompt: readonly (readonly number[])[],
    options: {
      maxNewTokens: number;
      returnLogits?: boolean;
      temperature?: number;
      topK?: number;
      topP?: number;
      seed?: number;
    },
  ): Promise<{ ids: number[][]; logits?: Float32Array[] }>;
  dispose(): void;
}

/** What the CLI needs of an image classifier (e.g. Vision Mamba). */
export interface ImageClassifier {
  /** `[C, H, W]` of one input image. */
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  /** Logits `[B, classes]` for images `[B, C, H, W]` (flat). */
  classify(images: Float32Array): Promise<Tensor>;
  /** Final features `[B, embed]`. */
  features(images: Float32Array): Promise<Tensor>;
  dispose(): void;
}

export type ModelEntry =
  | {
      readonly architecture: string;
      readonly kind: 'causal-lm';
      readonly package: string;
      load(backend: Backend, folder: string): Promise<CausalLm>;
    }
  | {
      readonly architecture: string;
      readonly kind: 'image-classifier';
      readonly package: string;
      load(backend: Backend, folder: string): Promise<ImageClassifier>;
    };

async function loadVisionMamba(backend: Backend, folder: string): Promise<ImageClassifier> {
  const model = await VisionMamba.load(backend, folder);
  return {
    imageShape: model.imageShape,
    numClasses: model.config.numClasses,
    classify: (images) => model.classify(images),
    features: (images) => model.features(images),
    dispose: () => model.dispose(),
  };
}

async function loadJamba(backend: Backend, folder: string): Promise<CausalLm> {
  const model = await JambaModel.load(backend, folder);
  return {
    vocabSize: model.config.vocabSize,
    forward: async (ids) => (await model.forward(ids)).logits,
    generate: (prompt, options) => model.generate(prompt, options),
    dispose: () => model.dispose(),
  };
}

async function loadMamba(backend: Backend, folder: string): Promise<CausalLm> {
  const model = await MambaModel.load(backend, folder);
  return {
    vocabSize: model.config.vocabSize,
    forward: async (ids) => (await model.forward(ids)).logits,
    generate: (prompt, options) => model.generate(prompt, options),
    dispose: () => model.dispose(),
  };
}

export const MODELS: readonly ModelEntry[] = [
  { architecture: 'MambaForCausalLM', kind: 'causal-lm', package: '@longseq/mamba', load: loadMamba },
  { architecture: 'JambaForCausalLM', kind: 'causal-lm', package: '@longseq/jamba', load: loadJamba },
  {
    architecture: 'VisionMamba',
    kind: 'image-classifier',
    package: '@longseq/vision-mamba',
    load: loadVisionMamba,
  },
];

/** Architectures the project knows of but whose package has not landed in the CLI yet. */
const PLANNED: Record<string, string> = {};

/** The architecture a config.json names, if any. */
export function architectureOf(config: Record<string, unknown>): string | undefined {
  const list = config.architectures;
  if (Array.isArray(list) && typeof list[0] === 'string') return list[0];
  return typeof config.architecture === 'string' ? config.architecture : undefined;
}

/** Reads `<folder>/config.json`; a missing or unreadable one is an UnsupportedFormatError (exit 2). */
export async function readFolderConfig(folder: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path.join(folder, 'config.json'), 'utf8');
  } catch {
    throw new UnsupportedFormatError(`${folder}: no config.json (expected a Hugging Face checkpoint folder)`);
  }
  try {
    const config = JSON.parse(text);
    if (config === null || typeof config !== 'object' || Array.isArray(config))
      throw new Error('not an object');
    return config;
  } catch (err) {
    throw new UnsupportedFormatError(
      `${folder}/config.json is not a JSON object: ${err instanceof Error ? err.message : err}`,
    );
  }
}

/** The registry entry for a config; UnsupportedFormatError (exit 2) naming the architecture when there is none. */
export function modelEntryFor(config: Record<string, unknown>, folder: string): ModelEntry {
  const architecture = architectureOf(config);
  const supported = MODELS.map((m) => m.architecture).join(', ');
  if (architecture === undefined) {
    throw new UnsupportedFormatError(`${folder}: config.json names no architecture; supported: ${supported}`);
  }
  const entry = MODELS.find((m) => m.architecture === architecture);
  if (!entry) {
    const planned = PLANNED[architecture];
    throw new UnsupportedFormatError(
      `${folder}: architecture not supported yet: ${architecture}${planned ? ` (${planned} is not wired into the CLI yet)` : ''}; supported: ${supported}`,
    );
  }
  return entry;
}
