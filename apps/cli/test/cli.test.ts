import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jambaCheckpointReader, jambaConfigFromHf, jambaRef } from '@longseq/jamba';
import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { preprocessImage, vimConfigFromJson, vimRef } from '@longseq/vision-mamba';
import { afterAll, describe, expect, it } from 'vitest';
import { encodePng } from '../src/png';
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
    const dir = mkdtempSync(path.join(tmpdir(), 'longseq-cli-unknown-'));
    try {
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ architectures: ['RwkvForCausalLM'] }));
      writeFileSync(path.join(dir, 'expected.json'), '{}');
      const { code, stderr } = await runCli(['verify', dir, '--backend', 'gpujs-cpu']);
      expect(code).toBe(2);
      expect(stderr).toMatch(/not supported yet/);
      expect(stderr).toMatch(/RwkvForCausalLM/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a missing file with exit 2', async () => {
    const { code, stderr } = await runCli(['verify', path.join(repoRoot, 'no-such-golden.json')]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/no such file/);
  });
});

describe('longseq with a Jamba folder (golden/jamba-tiny)', () => {
  const jambaDir = path.join(goldenDir, 'jamba-tiny');
  const expected = JSON.parse(readFileSync(path.join(jambaDir, 'expected.json'), 'utf8'));

  /** Worst |a - e| / max|e| of one row. */
  const relativeError = (a: number[], e: number[]) => {
    const scale = Math.max(...e.map(Math.abs));
    return Math.max(...a.map((v, i) => Math.abs(v - e[i]!) / scale));
  };

  it('verify passes its logits, greedy ids and step logits on webgpu', async () => {
    const { code, stdout, stderr } = await runCli(['verify', jambaDir, '--backend', 'webgpu', '--json']);
    const doc = JSON.parse(stdout || '{}');
    expect({ code, pass: doc.pass }, stderr).toEqual({ code: 0, pass: true });
    expect(doc.format).toBe('checkpoint');
    const cases = doc.results[0].cases;
    expect(cases.map((c: { name: string }) => c.name)).toEqual([
      'forward logits [2, 20, 128]',
      'greedy 8 tokens after 6',
    ]);
    for (const c of cases)
      for (const check of c.checks) expect(check.maxError).toBeLessThanOrEqual(check.allowed);
  }, 300_000);

  it("run --ids --all-logits --generate --json: every position's logits as the float64 reference, transformers' greedy ids", async () => {
    const g = expected.generate;
    const run = await runCli([
      'run',
      jambaDir,
      '--ids',
      g.prompt_ids.join(','),
      '--all-logits',
      '--generate',
      String(g.new_ids.length),
      '--backend',
      'webgpu',
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc.logits).toHaveLength(g.prompt_ids.length);
    const config = jambaConfigFromHf(JSON.parse(readFileSync(path.join(jambaDir, 'config.json'), 'utf8')));
    const read = jambaCheckpointReader(await loadCheckpoint(nodeFileSource(jambaDir)));
    const ref = jambaRef(config, read, [g.prompt_ids]).logits[0]!;
    doc.logits.forEach((row: number[], t: number) => {
      const e = Array.from(ref.subarray(t * 128, (t + 1) * 128));
      expect(relativeError(row, e), `position ${t}`).toBeLessThan(1e-4);
    });
    expect(relativeError(doc.logits.at(-1), g.step_logits[0])).toBeLessThan(1e-4);
    expect(doc.generated).toEqual(g.new_ids);
  }, 300_000);
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

describe('longseq with a Vision Mamba folder (golden/vim-tiny)', () => {
  const vimDir = path.join(goldenDir, 'vim-tiny');
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('verify passes its features and logits on webgpu', async () => {
    const { code, stdout, stderr } = await runCli(['verify', vimDir, '--backend', 'webgpu', '--json']);
    const doc = JSON.parse(stdout || '{}');
    expect({ code, pass: doc.pass }, stderr).toEqual({ code: 0, pass: true });
    expect(doc.format).toBe('checkpoint');
    const cases = doc.results[0].cases;
    expect(cases.map((c: { name: string }) => c.name)).toEqual(['features [2, 32]', 'logits [2, 10]']);
    for (const c of cases) {
      expect(Number.isFinite(c.checks[0].maxError)).toBe(true);
      expect(c.checks[0].maxError).toBeLessThanOrEqual(1e-4);
    }
  });

  it('run --image classifies a PNG written here, as the float64 reference does', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'longseq-cli-vim-'));
    dirs.push(dir);
    // A 40 x 28 RGBA picture with a pattern, resized by the CLI to the model's 32 x 32.
    const [width, height] = [40, 28];
    const data = Uint8Array.from({ length: width * height * 4 }, (_, i) =>
      i % 4 === 3 ? 255 : (i * 37 + (i >> 6)) % 256,
    );
    const file = path.join(dir, 'picture.png');
    writeFileSync(file, encodePng({ width, height, channels: 4, data }));
    const { code, stdout, stderr } = await runCli([
      'run',
      vimDir,
      '--image',
      file,
      '--backend',
      'webgpu',
      '--json',
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.logits).toHaveLength(10);
    const image = preprocessImage({ width, height, channels: 4, data }, { size: 32, channels: 3 });
    const checkpoint = await loadCheckpoint(nodeFileSource(vimDir));
    const config = vimConfigFromJson(JSON.parse(readFileSync(path.join(vimDir, 'config.json'), 'utf8')));
    const ref = vimRef(config, (n, s) => checkpoint.read(n, s), {
      data: image,
      shape: [1, 3, 32, 32],
    }).logits;
    const scale = Math.max(...Array.from(ref, Math.abs));
    for (let i = 0; i < 10; i++) expect(Math.abs(doc.logits[i] - ref[i]!) / scale).toBeLessThan(1e-4);
    expect(doc.top[0].class).toBe(Array.from(ref).indexOf(Math.max(...ref)));

    const text = await runCli(['run', vimDir, '--image', file, '--backend', 'webgpu', '--top', '3']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/picture\.png \(40 x 28, 4 channels\) resized to 32 x 32, 3 channels/);
    expect(text.stdout).toMatch(/top 3 of 10 classes:/);
    expect(text.stdout.match(/^ {2}class /gm)).toHaveLength(3);
  });

  it('run --random prints the top classes of a seeded random image (the same for the same seed)', async () => {
    const a = await runCli(['run', vimDir, '--random', '--seed', '7', '--backend', 'webgpu', '--json']);
    const b = await runCli(['run', vimDir, '--random', '--seed', '7', '--backend', 'webgpu', '--json']);
    const c = await runCli(['run', vimDir, '--random', '--seed', '8', '--backend', 'webgpu', '--json']);
    expect(a.code, a.stderr).toBe(0);
    const [la, lb, lc] = [a, b, c].map((r) => JSON.parse(r.stdout).logits as number[]);
    expect(la).toHaveLength(10);
    expect(la!.every(Number.isFinite)).toBe(true);
    expect(lb).toEqual(la);
    expect(lc).not.toEqual(la);
  });

  it('run without --image or --random, with --ids, or with a PNG it cannot read exits 2', async () => {
    const none = await runCli(['run', vimDir]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--image file\.png or --random/);
    const ids = await runCli(['run', vimDir, '--ids', '1,2']);
    expect(ids.code).toBe(2);
    expect(ids.stderr).toMatch(/--ids is for language models/);
    const dir = mkdtempSync(path.join(tmpdir(), 'longseq-cli-vim-'));
    dirs.push(dir);
    const bad = path.join(dir, 'not.png');
    writeFileSync(bad, 'GIF89a not a png');
    const r = await runCli(['run', vimDir, '--image', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not a PNG file/);
  });

  it('bench vim with tiny sizes: images/s at two batches, checks passed', async () => {
    const args = ['bench', 'vim', '--img-size', '32', '--patch', '8', '--embed', '16', '--depth', '2'];
    const { code, stdout, stderr } = await runCli([
      ...args,
      '--batch',
      '1,3',
      '--repeats',
      '2',
      '--warmup',
      '1',
      '--json',
    ]);
    expect(code, stderr + stdout).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.sanity.pass).toBe(true);
    expect(doc.tokens).toBe(17);
    expect(doc.results.map((r: { batch: number }) => r.batch)).toEqual([1, 3]);
    for (const r of doc.results) {
      expect(r.check.pass, r.check.reason).toBe(true);
      expect(r.samplesMs).toHaveLength(2);
      expect(r.imagesPerS).toBeCloseTo((1000 * r.batch) / r.ms, 6);
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
