import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { goldenDir, runCli } from './helpers';

const mambaTiny = path.join(goldenDir, 'mamba-tiny');
const expected = JSON.parse(readFileSync(path.join(mambaTiny, 'expected.json'), 'utf8')) as {
  input_ids: number[][];
  logits: number[][][];
  generate: { prompt_ids: number[]; new_ids: number[] };
};

/** Worst |a - e| / max|e| of a row. */
function relativeError(actual: number[], row: number[]): number {
  const scale = Math.max(...row.map(Math.abs));
  return Math.max(...row.map((e, i) => Math.abs(actual[i]! - e) / scale));
}

describe('longseq run', () => {
  it("--json --all-logits gives transformers' logits at every position, and --generate its greedy ids", async () => {
    const ids = expected.input_ids[0]!;
    const { code, stdout, stderr } = await runCli([
      'run',
      mambaTiny,
      '--ids',
      ids.join(','),
      '--all-logits',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout) as { logits: number[][]; generated: number[] };
    expect(doc.logits).toHaveLength(ids.length);
    doc.logits.forEach((row, t) => {
      expect(row).toHaveLength(128);
      expect(relativeError(row, expected.logits[0]![t]!), `position ${t}`).toBeLessThan(1e-4);
    });
    expect(doc.generated).toEqual([]);

    const g = expected.generate;
    const gen = await runCli([
      'run',
      mambaTiny,
      '--ids',
      g.prompt_ids.join(','),
      '--generate',
      String(g.new_ids.length),
      '--json',
      '--backend',
      'gpujs-cpu',
    ]);
    expect(gen.code, gen.stderr).toBe(0);
    const genDoc = JSON.parse(gen.stdout) as { logits: number[][]; generated: number[] };
    expect(genDoc.logits).toHaveLength(1);
    expect(genDoc.generated).toEqual(g.new_ids);
  });

  it('prints the last position and the generated ids as text', async () => {
    const args = [
      'run',
      mambaTiny,
      '--ids',
      '3,17,42',
      '--generate',
      '3',
      '--temperature',
      '0.8',
      '--seed',
      '5',
      '--backend',
      'gpujs-cpu',
    ];
    const { code, stdout } = await runCli(args);
    expect(code).toBe(0);
    expect(stdout).toMatch(/MambaForCausalLM from .*mamba-tiny on gpujs-cpu/);
    expect(stdout).toMatch(/logits at position 2 \(token 42\), 128 values, argmax \d+:/);
    expect(stdout).toMatch(/generated: \d+,\d+,\d+\n/);
    const again = await runCli(args);
    expect(again.stdout).toBe(stdout);
  });

  it('bad usage and bad ids exit 2 with a message naming the problem', async () => {
    expect((await runCli(['run', mambaTiny])).stderr).toMatch(/--ids is required/);
    const bad = await runCli(['run', mambaTiny, '--ids', '3,x']);
    expect(bad.code).toBe(2);
    const range = await runCli(['run', mambaTiny, '--ids', '3,128']);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/ids\[0\]: expected token ids in \[0, 128\), got 128/);
    const none = await runCli(['run', path.join(goldenDir, 'nothing-here'), '--ids', '1']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no config\.json/);
  });
});

describe('longseq verify <checkpoint>', () => {
  for (const backend of ['webgpu', 'gpujs-cpu']) {
    it(`mamba-tiny passes on ${backend}: forward logits, greedy ids and each step's logits`, async () => {
      const { code, stdout, stderr } = await runCli(['verify', mambaTiny, '--backend', backend, '--json']);
      expect(code, stderr).toBe(0);
      const doc = JSON.parse(stdout);
      expect(doc.format).toBe('checkpoint');
      expect(doc.pass).toBe(true);
      const [forward, greedy] = doc.results[0].cases;
      expect(forward.name).toBe('forward logits [2, 24, 128]');
      expect(forward.checks[0].maxError).toBeLessThanOrEqual(1e-4);
      expect(greedy.checks.map((c: { name: string }) => c.name)).toEqual([
        'ids',
        ...Array.from({ length: 8 }, (_, t) => `step${t}`),
      ]);
      for (const c of greedy.checks) expect(c.pass).toBe(true);
    });
  }
});

describe('longseq bench mamba-decode', () => {
  it('--json reports prefill and decode tokens/s for both decode paths on a small model', async () => {
    const args = [
      'bench',
      'mamba-decode',
      '--layers',
      '2',
      '--d-model',
      '32',
      '--vocab',
      '300',
      '--prompt',
      '5',
      '--tokens',
      '3',
      '--repeats',
      '1',
      '--warmup',
      '0',
      '--json',
    ];
    const { code, stdout, stderr } = await runCli(args);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.benchmark).toBe('mamba-decode');
    expect(doc.model).toMatchObject({
      dModel: 32,
      nLayer: 2,
      vocabSize: 300,
      dState: 16,
      dConv: 4,
      dInner: 64,
      dtRank: 2,
    });
    // embeddings 300 x 32 + 2 layers + norm_f, counted from the config
    expect(doc.parameters).toBe(
      300 * 32 + 2 * (32 + 2 * 64 * 32 + 64 * 4 + 64 + 34 * 64 + 64 * 2 + 64 + 64 * 16 + 64 + 32 * 64) + 32,
    );
    expect(doc.prefill.tokensPerS).toBeGreaterThan(0);
    expect(doc.decode.map((d: { path: string }) => d.path)).toEqual(['fused', 'composed']);
    for (const d of doc.decode) {
      expect(d.decodeTokensPerS).toBeGreaterThan(0);
      expect(d.deviceOnlyMsPerToken).toBeGreaterThan(0);
    }
  });

  it('rejects an unknown --path', async () => {
    const { code, stderr } = await runCli(['bench', 'mamba-decode', '--path', 'fast']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--path: expected fused, composed or both/);
  });
});
