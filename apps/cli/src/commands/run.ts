import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { preprocessImage } from '@longseq/vision-mamba';
import { type Parsed, boolFlag, intFlag, parseFlags, stringFlag } from '../args';
import { createBackend, parseBackends } from '../backends';
import { UsageError } from '../errors';
import type { Io } from '../io';
import { type ImageClassifier, type ModelEntry, modelEntryFor, readFolderConfig } from '../models';
import { decodePng } from '../png';
import { jsonNumbers } from './verify';

/**
 * `longseq run <checkpoint-dir> --ids 3,17,42 [--generate N] [--backend NAME] [--json]
 * [--all-logits] [--temperature T] [--top-k K] [--top-p P] [--seed S]`: loads the checkpoint
 * (dispatching on config.json's architecture), prints the logits of the last position (every
 * position with --all-logits) and, with --generate, the new ids (greedy unless a temperature is given).
 */
export async function runCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      ids: { type: 'string' },
      generate: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'boolean' },
      'all-logits': { type: 'boolean' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      image: { type: 'string' },
      random: { type: 'boolean' },
      top: { type: 'string' },
      mean: { type: 'string' },
      std: { type: 'string' },
    },
    'run',
  );
  if (p.positionals.length !== 1) {
    throw new UsageError(
      'run: expected one checkpoint folder, e.g. longseq run golden/mamba-tiny --ids 3,17,42',
    );
  }
  const folder = path.resolve(io.cwd ?? process.cwd(), p.positionals[0]!);
  // Dispatch on the architecture before starting a device, so an unsupported folder fails at once.
  const config = await readFolderConfig(folder);
  const entry = modelEntryFor(config, folder);
  if (entry.kind === 'image-classifier') return runImageClassifier(p, entry, config, folder, io);
  const idsText = stringFlag(p, 'ids');
  if (idsText === undefined) throw new UsageError('run: --ids is required, e.g. --ids 3,17,42');
  const items = idsText.split(',').map((s) => s.trim());
  const ids = items.map(Number);
  if (items.some((s, i) => s === '' || !Number.isInteger(ids[i]) || ids[i]! < 0)) {
    throw new UsageError(`--ids: expected comma-separated token ids (integers >= 0), got '${idsText}'`);
  }
  const generate = intFlag(p, 'generate', 0, 0);
  const number = (name: string): number | undefined => {
    const v = stringFlag(p, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n))
      throw new UsageError(`--${name}: expected a number, got '${v}'`);
    return n;
  };
  const sampling = {
    ...(number('temperature') !== undefined ? { temperature: number('temperature')! } : {}),
    ...(number('top-k') !== undefined ? { topK: number('top-k')! } : {}),
    ...(number('top-p') !== undefined ? { topP: number('top-p')! } : {}),
    ...(number('seed') !== undefined ? { seed: number('seed')! } : {}),
  };
  const [backendName] = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  const json = boolFlag(p, 'json');
  const allLogits = boolFlag(p, 'all-logits');

  const backend = await createBackend(backendName!);
  try {
    const model = await entry.load(backend, folder);
    try {
      const logitsTensor = await model.forward([ids]);
      const all = await logitsTensor.read();
      logitsTensor.dispose();
      const vocab = model.vocabSize;
      const positions = allLogits ? ids.map((_, t) => t) : [ids.length - 1];
      const logits = positions.map((t) => Array.from(all.subarray(t * vocab, (t + 1) * vocab)));
      const generated =
        generate > 0 ? (await model.generate([ids], { maxNewTokens: generate, ...sampling })).ids[0]! : [];
      if (json) {
        io.stdout.write(`${JSON.stringify({ logits, generated }, jsonNumbers)}\n`);
      } else {
        io.stdout.write(`${entry.architecture} from ${folder} on ${backend.name}\n`);
        positions.forEach((t, i) => {
          const row = logits[i]!;
          let best = 0;
          for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
          io.stdout.write(
            `logits at position ${t} (token ${ids[t]}), ${vocab} values, argmax ${best}:\n  ${row.map((v) => v.toPrecision(6)).join(' ')}\n`,
          );
        });
        if (generate > 0) io.stdout.write(`generated: ${generated.join(',')}\n`);
      }
    } finally {
      model.dispose();
    }
  } finally {
    backend.dispose();
  }
  return 0;
}

function numberList(p: Parsed, name: string): number[] | undefined {
  const v = stringFlag(p, name);
  if (v === undefined) return undefined;
  const items = v.split(',').map((x) => Number(x.trim()));
  if (v.trim() === '' || items.some((x) => !Number.isFinite(x)))
    throw new UsageError(`--${name}: expected comma-separated numbers, got '${v}'`);
  return items;
}

/**
 * `longseq run <image-classifier-dir> --image file.png | --random [--seed S] [--top K]
 * [--mean M[,M,M]] [--std S[,S,S]] [--backend NAME] [--json]`: classifies one image (a PNG,
 * resized bilinearly to the model's input and converted to its channels, scaled to [0, 1],
 * then (v - mean) / std) or a seeded random one, and prints the top classes (`--json`:
 * `{"logits": [...], "top": [...]}`).
 */
async function runImageClassifier(
  p: Parsed,
  entry: Extract<ModelEntry, { kind: 'image-classifier' }>,
  config: Record<string, unknown>,
  folder: string,
  io: Io,
): Promise<number> {
  for (const flag of ['ids', 'generate', 'all-logits', 'temperature', 'top-k', 'top-p']) {
    if (p.values[flag] !== undefined)
      throw new UsageError(
        `run: --${flag} is for language models; ${entry.architecture} takes --image or --random`,
      );
  }
  const imageFile = stringFlag(p, 'image');
  const random = boolFlag(p, 'random');
  if ((imageFile === undefined) === !random) {
    throw new UsageError(
      `run: ${entry.architecture} needs --image file.png or --random (one of them), e.g. longseq run golden/vim-tiny --random`,
    );
  }
  const seed = intFlag(p, 'seed', 0, 0);
  const top = intFlag(p, 'top', 5);
  const mean = numberList(p, 'mean');
  const std = numberList(p, 'std');
  const [backendName] = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  const json = boolFlag(p, 'json');
  // Read and decode the image before starting a device: a bad file fails at once.
  let pixels: { data: Uint8Array; width: number; height: number; channels: 1 | 2 | 3 | 4 } | undefined;
  let imagePath: string | undefined;
  if (imageFile !== undefined) {
    imagePath = path.resolve(io.cwd ?? process.cwd(), imageFile);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(imagePath));
    } catch {
      throw new UsageError(`--image: no such file: ${imagePath}`);
    }
    pixels = decodePng(bytes, imagePath);
  }

  const backend = await createBackend(backendName!);
  try {
    const model: ImageClassifier = await entry.load(backend, folder);
    try {
      const [C, H, W] = model.imageShape;
      let input: Float32Array;
      if (pixels) {
        input = preprocessImage(pixels, {
          size: H,
          channels: C,
          ...(mean ? { mean: mean.length === 1 ? mean[0]! : mean } : {}),
          ...(std ? { std: std.length === 1 ? std[0]! : std } : {}),
        });
      } else {
        let a = seed >>> 0;
        input = Float32Array.from({ length: C * H * W }, () => {
          a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
          return a / 4294967296;
        });
      }
      const logitsTensor = await model.classify(input);
      const logits = Array.from(await logitsTensor.read());
      logitsTensor.dispose();
      const maxLogit = Math.max(...logits);
      const exps = logits.map((v) => Math.exp(v - maxLogit));
      const total = exps.reduce((x, y) => x + y, 0);
      const labels = config.id2label as Record<string, string> | undefined;
      const ranked = logits
        .map((logit, index) => ({
          class: index,
          ...(labels && typeof labels[index] === 'string' ? { label: labels[index] } : {}),
          logit,
          probability: exps[index]! / total,
        }))
        .sort((a, b) => b.logit - a.logit)
        .slice(0, top);
      if (json) {
        io.stdout.write(`${JSON.stringify({ logits, top: ranked }, jsonNumbers)}\n`);
      } else {
        const what = pixels
          ? `${imagePath} (${pixels.width} x ${pixels.height}, ${pixels.channels} channel${pixels.channels > 1 ? 's' : ''}) resized to ${W} x ${H}, ${C} channel${C > 1 ? 's' : ''}`
          : `a random ${C} x ${H} x ${W} image (seed ${seed})`;
        io.stdout.write(
          `${entry.architecture} from ${folder} on ${backend.name}\n${what}\ntop ${ranked.length} of ${logits.length} classes:\n`,
        );
        for (const r of ranked) {
          const name = 'label' in r ? ` ${r.label}` : '';
          io.stdout.write(
            `  class ${String(r.class).padStart(4)}${name}  logit ${r.logit.toPrecision(6).padStart(10)}  p ${r.probability.toFixed(4)}\n`,
          );
        }
      }
    } finally {
      model.dispose();
    }
  } finally {
    backend.dispose();
  }
  return 0;
}
