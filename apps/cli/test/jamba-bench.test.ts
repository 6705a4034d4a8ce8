import { describe, expect, it } from 'vitest';
import { benchModelConfig, JAMBA_BENCH_DEFAULTS, jambaParameterCount } from '../src/bench/jamba';
import { runCli } from './helpers';

describe('longseq bench jamba', () => {
  it('builds issue 9 shape: width 1024, 8 layers with one attention layer, 16 experts top-2', () => {
    const c = benchModelConfig(JAMBA_BENCH_DEFAULTS);
    expect(c.layerTypes.filter((t) => t === 'attention')).toHaveLength(1);
    expect(c.layerExperts.filter((e) => e === 16)).toHaveLength(4);
    expect(c.topK).toBe(2);
    expect(c.headDim).toBe(128);
    // embeddings + head 2 x 65536 x 1024, four MoE layers of 16 SwiGLU experts 3 x 1024 x 3584
    expect(jambaParameterCount(c)).toBeGreaterThan(2 * 65536 * 1024 + 4 * 16 * 3 * 1024 * 3584);
  });

  it('times a small model on WebGPU: prefill, decode at two batches, cache equals recomputation', async () => {
    const { code, stdout, stderr } = await runCli([
      'bench',
      'jamba',
      '--backend',
      'webgpu',
      '--hidden',
      '64',
      '--heads',
      '4',
      '--kv-heads',
      '2',
      '--layers',
      '4',
      '--attn-period',
      '4',
      '--attn-offset',
      '1',
      '--experts',
      '4',
      '--intermediate',
      '48',
      '--vocab',
      '40',
      '--prefill',
      '24',
      '--prompt',
      '5',
      '--tokens',
      '3',
      '--batches',
      '1,3',
      '--repeats',
      '1',
      '--prefill-repeats',
      '1',
      '--warmup',
      '0',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.benchmark).toBe('jamba');
    expect(doc.cacheMatchesRecompute).toBe(true);
    expect(doc.prefill.tokensPerS).toBeGreaterThan(0);
    expect(doc.decode.map((d: { batch: number }) => d.batch)).toEqual([1, 3]);
    // WebGPU counts its dispatches: a decode step of 4 layers takes dozens of them
    for (const d of doc.decode) expect(d.dispatchesPerStep).toBeGreaterThan(4);
    expect(doc.model.layerTypes).toEqual(['mamba', 'attention', 'mamba', 'mamba']);
  }, 300_000);

  it('rejects an inconsistent shape before any GPU work', async () => {
    const { code, stderr } = await runCli(['bench', 'jamba', '--experts', '2', '--top-k', '3']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/num_experts_per_tok/);
    const path = await runCli(['bench', 'jamba', '--path', 'fast']);
    expect(path.code).toBe(2);
    expect(path.stderr).toMatch(/--path: expected auto or composed/);
  });
});
