import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureBuilt, goldenDir, repoRoot, runCli } from './helpers';

describe('longseq info', () => {
  it('--json parses and lists an available webgpu backend with its adapter and limits', async () => {
    const { code, stdout } = await runCli(['info', '--json']);
    expect(code).toBe(0);
    const doc = JSON.parse(stdout);
    expect(typeof doc.machine.date).toBe('string');
    const names = doc.backends.map((b: { name: string }) => b.name);
    expect(names).toEqual(['webgpu', 'gpujs-webgpu', 'gpujs-webasm', 'gpujs-cpu']);
    const webgpu = doc.backends.find((b: { name: string }) => b.name === 'webgpu');
    expect(webgpu.available, webgpu.reason).toBe(true);
    expect(webgpu.adapter).toBeTypeOf('object');
    expect(webgpu.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(webgpu.kernels).toContain('MatMul');
    expect(webgpu.kernels).toContain('Softmax');
  });
});

describe('longseq verify', () => {
  it('passes every case of golden/attention.json on webgpu', async () => {
    const file = path.join(goldenDir, 'attention.json');
    const { code, stdout, stderr } = await runCli(['verify', file, '--backend', 'webgpu', '--json']);
    const doc = JSON.parse(stdout || '{}');
    const failures = (doc.results?.[0]?.cases ?? []).filter((c: { pass: boolean }) => !c.pass);
    expect({ code, failures }, stderr).toEqual({ code: 0, failures: [] });
    expect(doc.format).toBe('attention');
    expect(doc.pass).toBe(true);
    const cases = doc.results[0].cases;
    expect(cases.length).toBe(9);
    for (const c of cases) {
      const out = c.checks.find((k: { name: string }) => k.name === 'out');
      const lse = c.checks.find((k: { name: string }) => k.name === 'lse');
      // Reported before asserting: the errors are real numbers within the allowance.
      expect(Number.isFinite(out.maxError)).toBe(true);
      expect(out.maxError).toBeLessThanOrEqual(out.allowed);
      expect(lse.maxError).toBeLessThanOrEqual(lse.allowed);
    }
  });

  it('reports a checkpoint of an architecture without a model as not supported yet (exit 2)', async () => {
    const { code, stderr } = await runCli([
      'verify',
      path.join(goldenDir, 'jamba-tiny'),
      '--backend',
      'gpujs-cpu',
    ]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/not supported yet/);
    expect(stderr).toMatch(/JambaForCausalLM/);
  });

  it('rejects a missing file with exit 2', async () => {
    const { code, stderr } = await runCli(['verify', path.join(repoRoot, 'no-such-golden.json')]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/no such file/);
  });
});

describe('longseq bench softmax', () => {
  it('--json with tiny sizes returns sane numbers for every kernel', async () => {
    const args = [
      'bench',
      'softmax',
      '--backend',
      'webgpu',
      '--rows',
      '3',
      '--lengths',
      '33,100',
      '--repeats',
      '2',
    ];
    const { code, stdout, stderr } = await runCli([...args, '--dispatches', '2', '--json']);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.machine.adapter).toBeTypeOf('object');
    expect(doc.skipped.filter((s: { error: boolean }) => s.error)).toEqual([]);
    const labels = doc.results
      .filter((r: { n: number }) => r.n === 33)
      .map((r: { label: string }) => r.label);
    // SwiftShader offers subgroups, so each kernel runs with subgroup and tree reductions.
    const kernels = ['naive', 'safe', 'online'].flatMap((a) =>
      ['+subgroups', '+tree'].flatMap((r) => [`${a} fused ${r}`, `${a} multipass ${r}`]),
    );
    expect(labels).toEqual(['copy', ...kernels]);
    for (const r of doc.results) {
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.medianMs).toBeLessThan(10_000);
      expect(r.gbps).toBeCloseTo((2 * r.rows * r.n * 4) / (r.medianMs * 1e6), 6);
      expect(r.pctOfCopy).toBeGreaterThan(0);
      expect(r.samplesMs.length).toBe(2);
      expect(r.wallMedianMs).toBeGreaterThan(0);
      if (r.kernel === 'softmax') expect(r.check.pass).toBe(true);
    }
  });
});

describe('errors', () => {
  it('an unknown backend prints a clear message and exits 2', async () => {
    const { code, stderr } = await runCli(['bench', 'softmax', '--backend', 'cuda']);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /backend cuda is unavailable: unknown backend; choose one of webgpu, gpujs-webgpu/,
    );
  });

  it('an unknown command exits 2 and names the commands', async () => {
    const { code, stderr } = await runCli(['train']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/unknown command 'train'; commands: info, bench, verify/);
  });

  it('a bad flag value exits 2', async () => {
    const { code, stderr } = await runCli(['bench', 'softmax', '--lengths', '64,x']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--lengths/);
  });
});

describe('the built binary', () => {
  it('runs info --json from dist/bin.js (lazy backend chunks resolve webgpu and gpu.js)', async () => {
    const bin = await ensureBuilt();
    const r = spawnSync(process.execPath, [bin, 'info', '--json'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    const byName = Object.fromEntries(doc.backends.map((b: { name: string }) => [b.name, b]));
    expect(byName.webgpu.available).toBe(true);
    expect(byName['gpujs-cpu'].available).toBe(true);
  });

  it('exits 2 on an unknown backend', async () => {
    const bin = await ensureBuilt();
    const r = spawnSync(process.execPath, [bin, 'verify', 'x.json', '--backend', 'nope'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/backend nope is unavailable/);
  });
});
