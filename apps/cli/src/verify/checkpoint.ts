/**
 * Verifier for checkpoint folders (config.json + model weights + expected.json), e.g.
 * golden/mamba-tiny: loads the model through the CLI's model registry (dispatching on the
 * config's architecture) and checks, against transformers' float64 outputs in expected.json:
 * - `forward`: the logits of `input_ids` ([B, L, V]);
 * - `greedy ids`: greedy generation from `generate.prompt_ids` through the recurrent step,
 *   exactly;
 * - `step t`: the logits that chose each new id.
 * Logits pass by the golden README's rule for float32 kernels: relative error (against the
 * row's largest |logit|) at most 1e-4. The reported maxError is that relative error.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UnsupportedFormatError } from '../errors';
import { modelEntryFor, readFolderConfig } from '../models';
import type { CaseResult, CheckResult, GoldenFormat, GoldenTarget, VerifyContext } from './types';
import { verifyImageClassifier } from './vim';

/** Relative tolerance for float32 logits against a float64 model (golden/README.md). */
export const LOGITS_RELATIVE_TOLERANCE = 1e-4;

interface CausalLmExpected {
  readonly input_ids: number[][];
  readonly logits: number[][][];
  readonly generate: { prompt_ids: number[]; new_ids: number[]; step_logits: number[][] };
}

function parseExpected(raw: unknown, file: string): CausalLmExpected {
  const e = raw as Partial<CausalLmExpected> | null;
  const ok =
    e !== null &&
    typeof e === 'object' &&
    Array.isArray(e.input_ids) &&
    Array.isArray(e.logits) &&
    e.generate !== undefined &&
    Array.isArray(e.generate.prompt_ids) &&
    Array.isArray(e.generate.new_ids) &&
    Array.isArray(e.generate.step_logits);
  if (!ok) {
    throw new UnsupportedFormatError(
      `${file}: expected input_ids, logits and generate {prompt_ids, new_ids, step_logits} (a causal LM's expected.json)`,
    );
  }
  return e as CausalLmExpected;
}

/** Worst |a - e| / max|e| over rows of `row` values. */
function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>, row: number): number {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let start = 0; start < expected.length; start += row) {
    let scale = 0;
    for (let i = start; i < start + row; i++) scale = Math.max(scale, Math.abs(expected[i]!));
    for (let i = start; i < start + row; i++) {
      const err = Math.abs(actual[i]! - expected[i]!) / scale;
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.NaN : err;
      if (Number.isNaN(worst)) return worst;
    }
  }
  return worst;
}

export function logitsCheck(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  row: number,
): CheckResult {
  const maxError = relativeError(actual, expected, row);
  const pass = maxError <= LOGITS_RELATIVE_TOLERANCE;
  return {
    name,
    pass,
    maxError,
    baselineError: 0,
    allowed: LOGITS_RELATIVE_TOLERANCE,
    ...(pass ? {} : { reason: `relative error ${maxError} exceeds ${LOGITS_RELATIVE_TOLERANCE}` }),
  };
}

async function verifyCheckpoint(target: GoldenTarget, context: VerifyContext): Promise<CaseResult[]> {
  const entry = modelEntryFor(await readFolderConfig(target.path), target.path);
  if (entry.kind === 'image-classifier') {
    return verifyImageClassifier(target, context, () => entry.load(context.backend, target.path));
  }
  const expectedFile = path.join(target.path, 'expected.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(expectedFile, 'utf8'));
  } catch (err) {
    throw new UnsupportedFormatError(`${expectedFile}: ${err instanceof Error ? err.message : err}`);
  }
  const expected = parseExpected(raw, expectedFile);
  const model = await entry.load(context.backend, target.path);
  const results: CaseResult[] = [];
  const total = 2;
  const push = (r: CaseResult) => {
    results.push(r);
    context.onCase?.(r, total);
  };
  try {
    const vocab = model.vocabSize;
    const [b, l] = [expected.input_ids.length, expected.input_ids[0]?.length ?? 0];
    const logits = await model.forward(expected.input_ids);
    const got = await logits.read();
    logits.dispose();
    const forward = logitsCheck('logits', got, expected.logits.flat(2), vocab);
    push({ index: 0, name: `forward logits [${b}, ${l}, ${vocab}]`, pass: forward.pass, checks: [forward] });

    const g = expected.generate;
    const gen = await model.generate([g.prompt_ids], { maxNewTokens: g.new_ids.length, returnLogits: true });
    const ids = gen.ids[0]!;
    const idsMatch = ids.length === g.new_ids.length && ids.every((id, i) => id === g.new_ids[i]);
    const mismatch = ids.findIndex((id, i) => id !== g.new_ids[i]);
    const checks: CheckResult[] = [
      {
        name: 'ids',
        pass: idsMatch,
        maxError: idsMatch ? 0 : 1,
        baselineError: 0,
        allowed: 0,
        ...(idsMatch
          ? {}
          : { reason: `new id ${mismatch}: got ${ids[mismatch]}, expected ${g.new_ids[mismatch]}` }),
      },
    ];
    g.step_logits.forEach((row, t) => {
      checks.push(logitsCheck(`step${t}`, gen.logits![t] ?? [], row, vocab));
    });
    push({
      index: 1,
      name: `greedy ${g.new_ids.length} tokens after ${g.prompt_ids.length}`,
      pass: checks.every((c) => c.pass),
      checks,
    });
  } finally {
    model.dispose();
  }
  return results;
}

export const checkpointFormat: GoldenFormat = {
  name: 'checkpoint',
  description: 'a model checkpoint folder with config.json and expected.json, e.g. golden/mamba-tiny',
  matches: (t) => t.isDirectory && t.entries.includes('config.json') && t.entries.includes('expected.json'),
  verify: verifyCheckpoint,
};
