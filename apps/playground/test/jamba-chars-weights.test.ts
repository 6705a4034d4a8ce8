/**
 * The character-level models the playground ships (public/models/jamba-chars, trained by
 * apps/training/jamba-chars/train.py with transformers) run the same in longseq as in
 * transformers: each folder's expected.json holds the logits transformers computed for a
 * prompt and its greedy continuation with each step's logits, from the float16 weights shipped.
 *
 * - transformer: expected.json is transformers' float64 forward on the CPU. longseq's float64
 *   reference and every backend match it within the golden README's rule (relative 1e-4 of
 *   each row's largest |value|).
 * - jamba: transformers' grouped-mm experts refused float64, so train.py fell back to float32
 *   on the GPU with TF32 matmuls on (it now turns TF32 off there): those logits carry about
 *   2e-4 relative error of their own. longseq's float64 reference must match them within
 *   TF32_TOL, and every backend must match longseq's float64 reference within the rule.
 * - mamba: expected.json is transformers' float64 forward on the CPU; @longseq/mamba's
 *   MambaModel on every backend matches it within the rule.
 * Greedy ids must be exact everywhere (the smallest top-2 gap is far above these tolerances).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  JambaModel,
  jambaCheckpointReader,
  jambaConfigFromHf,
  jambaRef,
  jambaRefState,
} from '@longseq/jamba';
import { MambaModel } from '@longseq/mamba';
import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { describeEachBackend } from '@longseq/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../public/models/jamba-chars/', import.meta.url));
const MODELS = ['jamba', 'transformer'] as const;
const REL_TOL = 1e-4;
/** PyTorch float32 with TF32 matmuls against float64: measured 1.6e-4 to 2e-4 on these logits. */
const TF32_TOL = 5e-4;

interface Expected {
  readonly about: string;
  readonly prompt: string;
  readonly input_ids: number[][];
  readonly logits: number[][][];
  readonly generate: {
    readonly prompt_ids: number[];
    readonly new_ids: number[];
    readonly new_text: string;
    readonly step_logits: number[][];
    readonly min_top2_margin: number;
  };
}

const read = (model: string, file: string) => JSON.parse(readFileSync(join(ROOT, model, file), 'utf8'));
const expectedOf = (model: string) => read(model, 'expected.json') as Expected;
/** How close transformers' stored logits are to exact: the rule for float64 ones, TF32's error otherwise. */
const torchTol = (e: Expected) => (e.about.startsWith('float64') ? REL_TOL : TF32_TOL);

/** longseq's float64 reference: prompt logits `[L * V]` and the greedy continuation with each step's logits. */
async function reference(model: string, e: Expected) {
  const config = jambaConfigFromHf(read(model, 'config.json'));
  const reader = jambaCheckpointReader(await loadCheckpoint(nodeFileSource(join(ROOT, model))));
  const V = config.vocabSize;
  const prompt = jambaRef(config, reader, e.input_ids, { state: jambaRefState(config, 1) });
  let state = prompt.state;
  let last = prompt.logits[0]!.subarray((e.input_ids[0]!.length - 1) * V);
  const ids: number[] = [];
  const steps: Float64Array[] = [];
  for (let t = 0; t < e.generate.new_ids.length; t++) {
    steps.push(last);
    ids.push(argmax(last, 0, V));
    const next = jambaRef(config, reader, [[ids[t]!]], { state });
    state = next.state;
    last = next.logits[0]!;
  }
  return { V, logits: prompt.logits[0]!, ids, steps };
}
const chars = (read('jamba', 'vocab.json') as { chars: string[] }).chars;

/** Worst |actual - expected| over each row, divided by the row's largest |expected|. */
function maxRelativeError(actual: ArrayLike<number>, want: ArrayLike<number>, row: number): number {
  let worst = 0;
  for (let start = 0; start < want.length; start += row) {
    let scale = 0;
    for (let i = start; i < start + row; i++) scale = Math.max(scale, Math.abs(want[i]!));
    for (let i = start; i < start + row; i++) {
      const err = Math.abs(actual[i]! - want[i]!) / scale;
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    }
  }
  return worst;
}

function argmax(values: ArrayLike<number>, from: number, to: number): number {
  let best = from;
  for (let i = from; i < to; i++) if (values[i]! > values[best]!) best = i;
  return best - from;
}

describe('the shipped jamba-chars checkpoints', () => {
  it('share one character vocabulary; jamba is the hybrid layout, transformer all attention', () => {
    for (const model of [...MODELS, 'mamba']) {
      expect((read(model, 'vocab.json') as { chars: string[] }).chars).toEqual(chars);
      expect(read(model, 'config.json').vocab_size).toBe(chars.length);
    }
    expect(new Set(chars).size).toBe(chars.length);
    expect(chars.length).toBeLessThanOrEqual(128);
    const jamba = jambaConfigFromHf(read('jamba', 'config.json'));
    expect(jamba.layerTypes).toEqual(['mamba', 'mamba', 'attention', 'mamba']);
    expect(jamba.layerExperts).toEqual([1, 4, 1, 4]);
    const transformer = jambaConfigFromHf(read('transformer', 'config.json'));
    expect(new Set(transformer.layerTypes)).toEqual(new Set(['attention']));
    for (const model of MODELS) {
      const e = expectedOf(model);
      expect(e.generate.prompt_ids.map((i) => chars[i]).join('')).toBe(e.prompt);
      expect(e.generate.new_ids.map((i) => chars[i]).join('')).toBe(e.generate.new_text);
    }
  });

  for (const model of MODELS) {
    it(`${model}: longseq's float64 reference reproduces transformers' logits and greedy ids`, async () => {
      const e = expectedOf(model);
      const ref = await reference(model, e);
      const err = maxRelativeError(ref.logits, e.logits.flat(2), ref.V);
      expect(err, `prompt logits: max relative error ${err}`).toBeLessThan(torchTol(e));
      for (let t = 0; t < ref.steps.length; t++) {
        const stepErr = maxRelativeError(ref.steps[t]!, e.generate.step_logits[t]!, ref.V);
        expect(stepErr, `step ${t}: max relative error ${stepErr}`).toBeLessThan(torchTol(e));
      }
      expect(ref.ids).toEqual(e.generate.new_ids);
    });
  }
});

for (const name of MODELS) {
  describeEachBackend(`JambaModel on the shipped ${name} char model`, (ctx) => {
    const e = expectedOf(name);
    let model: JambaModel;
    let ref: Awaited<ReturnType<typeof reference>>;
    beforeAll(async () => {
      model = await JambaModel.load(ctx.backend, join(ROOT, name));
      ref = await reference(name, e);
    });
    afterAll(() => model?.dispose());

    it("forward logits of the prompt match longseq's float64 reference and transformers'", async () => {
      const V = model.config.vocabSize;
      const { logits } = await model.forward(e.input_ids);
      const got = await logits.read();
      logits.dispose();
      const err = maxRelativeError(got, ref.logits, V);
      expect(err, `against the float64 reference: max relative error ${err}`).toBeLessThan(REL_TOL);
      const torchErr = maxRelativeError(got, e.logits.flat(2), V);
      expect(torchErr, `against transformers: max relative error ${torchErr}`).toBeLessThan(
        torchTol(e) + REL_TOL,
      );
    });

    it('greedy generation through the hybrid cache gives the stored continuation and its logits', async () => {
      const g = e.generate;
      const V = model.config.vocabSize;
      const result = await model.generate(g.prompt_ids, {
        maxNewTokens: g.new_ids.length,
        returnLogits: true,
      });
      expect(result.ids[0]!.map((i) => chars[i]).join('')).toBe(g.new_text);
      expect(result.ids).toEqual([g.new_ids]);
      for (let t = 0; t < g.step_logits.length; t++) {
        const err = maxRelativeError(result.logits![t]!, ref.steps[t]!, V);
        expect(err, `step ${t}: max relative error ${err}`).toBeLessThan(REL_TOL);
      }
    });
  });
}

describeEachBackend('MambaModel on the shipped mamba char model', (ctx) => {
  const e = expectedOf('mamba');
  let model: MambaModel;
  beforeAll(async () => {
    model = await MambaModel.load(ctx.backend, join(ROOT, 'mamba'));
  });
  afterAll(() => model?.dispose());

  it("forward logits and the greedy continuation match transformers' float64 values", async () => {
    const V = model.config.vocabSize;
    const { logits } = await model.forward(e.input_ids);
    const err = maxRelativeError(await logits.read(), e.logits.flat(2), V);
    logits.dispose();
    expect(err, `prompt logits: max relative error ${err}`).toBeLessThan(REL_TOL);
    const g = e.generate;
    const result = await model.generate(g.prompt_ids, { maxNewTokens: g.new_ids.length, returnLogits: true });
    expect(result.ids).toEqual([g.new_ids]);
    for (let t = 0; t < g.step_logits.length; t++) {
      const stepErr = maxRelativeError(result.logits![t]!, g.step_logits[t]!, V);
      expect(stepErr, `step ${t}: max relative error ${stepErr}`).toBeLessThan(REL_TOL);
    }
  });
});
