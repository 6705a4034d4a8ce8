/**
 * Verifier for image-classifier checkpoint folders (e.g. golden/vim-tiny: config.json,
 * model.safetensors, expected.json with images [B, C, H, W], features [B, M], logits
 * [B, classes]): loads the model through the CLI's registry and checks its features and
 * logits against the float64 ones by the golden README's rule for float32 kernels (relative
 * error against each row's largest |value| at most 1e-4).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UnsupportedFormatError } from '../errors';
import type { ImageClassifier } from '../models';
import { logitsCheck } from './checkpoint';
import type { CaseResult, GoldenTarget, VerifyContext } from './types';

interface ImageClassifierExpected {
  readonly images: number[][][][];
  readonly features: number[][];
  readonly logits: number[][];
}

function parseExpected(raw: unknown, file: string): ImageClassifierExpected {
  const e = raw as Partial<ImageClassifierExpected> | null;
  const ok =
    e !== null &&
    typeof e === 'object' &&
    Array.isArray(e.images) &&
    e.images.length > 0 &&
    Array.isArray(e.features) &&
    Array.isArray(e.logits);
  if (!ok) {
    throw new UnsupportedFormatError(
      `${file}: expected images [B, C, H, W], features and logits (an image classifier's expected.json)`,
    );
  }
  return e as ImageClassifierExpected;
}

export async function verifyImageClassifier(
  target: GoldenTarget,
  context: VerifyContext,
  load: () => Promise<ImageClassifier>,
): Promise<CaseResult[]> {
  const expectedFile = path.join(target.path, 'expected.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(expectedFile, 'utf8'));
  } catch (err) {
    throw new UnsupportedFormatError(`${expectedFile}: ${err instanceof Error ? err.message : err}`);
  }
  const expected = parseExpected(raw, expectedFile);
  const model = await load();
  const results: CaseResult[] = [];
  const total = 2;
  try {
    const [C, H, W] = model.imageShape;
    const batch = expected.images.length;
    const images = Float32Array.from(expected.images.flat(3));
    if (images.length !== batch * C * H * W) {
      throw new UnsupportedFormatError(
        `${expectedFile}: images are not [B, ${C}, ${H}, ${W}] (the model's input), got ${images.length} values for ${batch} images`,
      );
    }
    const features = await model.features(images);
    const embed = features.shape[1]!;
    const gotFeatures = await features.read();
    features.dispose();
    const f = logitsCheck('features', gotFeatures, expected.features.flat(), embed);
    results.push({ index: 0, name: `features [${batch}, ${embed}]`, pass: f.pass, checks: [f] });
    context.onCase?.(results[0]!, total);
    const logits = await model.classify(images);
    const gotLogits = await logits.read();
    logits.dispose();
    const l = logitsCheck('logits', gotLogits, expected.logits.flat(), model.numClasses);
    results.push({ index: 1, name: `logits [${batch}, ${model.numClasses}]`, pass: l.pass, checks: [l] });
    context.onCase?.(results[1]!, total);
  } finally {
    model.dispose();
  }
  return results;
}
