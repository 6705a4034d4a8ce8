import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { goldenDir, runCli } from './helpers';

describe('longseq verify discretize.json', () => {
  it('passes every case and method on webgpu, with the JSON shape of the attention verifier', async () => {
    const file = path.join(goldenDir, 'discretize.json');
    const { code, stdout, stderr } = await runCli(['verify', file, '--backend', 'webgpu', '--json']);
    const doc = JSON.parse(stdout || '{}');
    const failures = (doc.results?.[0]?.cases ?? []).filter((c: { pass: boolean }) => !c.pass);
    expect({ code, failures }, stderr).toEqual({ code: 0, failures: [] });
    expect(doc.format).toBe('discretize');
    expect(doc.pass).toBe(true);
    const cases = doc.results[0].cases;
    expect(cases.length).toBe(2);
    for (const c of cases) {
      const names = c.checks.map((k: { name: string }) => k.name);
      for (const method of ['zoh', 'bilinear', 'euler', 'backward_diff'])
        for (const key of ['A', 'B', 'C', 'D']) expect(names).toContain(`${method}.${key}`);
      expect(names).toEqual(expect.arrayContaining(['impulse', 'kernel', 'impulse.conv']));
      for (const k of c.checks) {
        expect(Number.isFinite(k.maxError)).toBe(true);
        expect(k.maxError).toBeLessThanOrEqual(k.allowed);
      }
    }
  });

  it('fails a case whose expected matrices were altered (exit 1)', async () => {
    const golden = JSON.parse(readFileSync(path.join(goldenDir, 'discretize.json'), 'utf8'));
    golden.cases[0].bilinear.C[0][0] += 1e-6;
    const file = path.join(os.tmpdir(), `discretize-altered-${process.pid}.json`);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, JSON.stringify(golden));
    try {
      const { code, stdout } = await runCli(['verify', file, '--backend', 'webgpu', '--json']);
      const doc = JSON.parse(stdout);
      expect(code).toBe(1);
      const failed = doc.results[0].cases[0].checks.filter((k: { pass: boolean }) => !k.pass);
      expect(failed.map((k: { name: string }) => k.name)).toEqual(['bilinear.C']);
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('longseq bench ssm-conv', () => {
  it('--json and --svg with tiny sizes: three forms per L, checks pass, a crossover entry per form', async () => {
    const svg = path.join(os.tmpdir(), `ssm-conv-${process.pid}.svg`);
    const { code, stdout, stderr } = await runCli([
      'bench',
      'ssm-conv',
      '--backend',
      'webgpu',
      '--channels',
      '2',
      '--lengths',
      '100,512',
      '--states',
      '4',
      '--fft',
      'global',
      '--repeats',
      '2',
      '--warmup',
      '0',
      '--json',
      '--svg',
      svg,
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.benchmark).toBe('ssm-conv');
    expect(doc.skipped).toEqual([]);
    for (const L of [100, 512]) {
      const labels = doc.results
        .filter((r: { n: number }) => r.n === L)
        .map((r: { label: string }) => r.label);
      expect(labels).toEqual(['recurrence', 'fft conv', 'kernel + fft conv']);
    }
    for (const r of doc.results) {
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.check.pass).toBe(true);
      expect(r.check.maxError).toBeLessThanOrEqual(r.check.allowed);
    }
    expect(doc.crossover.map((c: { form: string }) => c.form)).toEqual(['fft conv', 'kernel + fft conv']);
    const plot = readFileSync(svg, 'utf8');
    expect(plot).toContain('<svg');
    expect(plot).toContain('c L log L');
    expect(plot).toContain('webgpu recurrence');
    rmSync(svg, { force: true });
  });

  it('rejects a bad --fft value (exit 2)', async () => {
    const { code, stderr } = await runCli(['bench', 'ssm-conv', '--fft', 'radix8']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--fft: expected auto, workgroup or global/);
  });
});
