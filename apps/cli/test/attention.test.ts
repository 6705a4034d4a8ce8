import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { attentionFlops } from '../src/bench/attention';
import { runCli } from './helpers';

describe('longseq bench attention', () => {
  it('--json with tiny sizes: flash and naive, forward and backward, checked and counted', async () => {
    const svg = path.join(mkdtempSync(path.join(tmpdir(), 'longseq-attn-')), 'attention.svg');
    const { code, stdout, stderr } = await runCli([
      'bench',
      'attention',
      '--n',
      '16,32',
      '--d',
      '16',
      '--batch-heads',
      '2',
      '--backward',
      '--repeats',
      '1',
      '--json',
      '--svg',
      svg,
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.benchmark).toBe('attention');
    expect(doc.failures).toEqual([]);
    // 2 N x 2 causal x (flash fwd + flash bwd + naive fwd)
    expect(doc.results).toHaveLength(12);
    for (const r of doc.results) {
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.tflops).toBeCloseTo(
        attentionFlops(2, r.n, 16, r.causal, r.pass) / (r.medianMs * 1e-3) / 1e12,
        9,
      );
      // Forward rows and (N <= 512) backward rows are checked against float64.
      expect(r.check.pass, `${r.label} N=${r.n}`).toBe(true);
    }
    expect(doc.results.filter((r: { pass: string }) => r.pass === 'backward')).toHaveLength(4);
    const plot = readFileSync(svg, 'utf8');
    expect(plot.startsWith('<svg')).toBe(true);
    expect(plot).toContain('flash causal');
    expect(plot).toContain('naive');
  });

  it('--fresh-device: every case measured and checked, each on a device of its own', async () => {
    const { code, stdout, stderr } = await runCli([
      'bench',
      'attention',
      '--n',
      '24',
      '--d',
      '16',
      '--batch-heads',
      '2',
      '--repeats',
      '1',
      '--algorithm',
      'naive',
      '--fresh-device',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.config.freshDevice).toBe(true);
    expect(doc.failures).toEqual([]);
    expect(doc.results.map((r: { label: string }) => r.label)).toEqual(['naive', 'naive causal']);
    for (const r of doc.results) expect(r.check.pass, r.label).toBe(true);
  }, 300_000);

  it('--memory: flash extra bytes grow at most linearly, naive quadratically', async () => {
    const { code, stdout, stderr } = await runCli([
      'bench',
      'attention',
      '--memory',
      '--n',
      '32',
      '--max-n',
      '128',
      '--d',
      '16',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    const rows = doc.rows as { n: number; flash: number; naive: number }[];
    expect(rows.map((r) => r.n)).toEqual([32, 64, 128]);
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i]!.flash).toBeLessThanOrEqual(2 * rows[i - 1]!.flash + 256);
      expect(rows[i]!.naive).toBeGreaterThanOrEqual(3.5 * rows[i - 1]!.naive);
    }
  });

  it('counts FLOPs as FlashAttention does', () => {
    expect(attentionFlops(16, 4096, 64, false, 'forward')).toBe(4 * 4096 * 4096 * 64 * 16);
    expect(attentionFlops(16, 4096, 64, true, 'forward')).toBe(2 * 4096 * 4096 * 64 * 16);
    expect(attentionFlops(1, 10, 16, false, 'backward')).toBe(2.5 * 4 * 100 * 16);
  });

  it('rejects a bad --causal value with a usage error (exit 2)', async () => {
    const { code, stderr } = await runCli(['bench', 'attention', '--causal', 'maybe']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--causal: expected both, true or false/);
  });
});
