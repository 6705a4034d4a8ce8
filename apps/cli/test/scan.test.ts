import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanBytes } from '../src/bench/scan';
import { runCli } from './helpers';

describe('longseq bench scan', () => {
  it('--json with tiny sizes times copy, sequential and parallel, and checks them', async () => {
    const svg = path.join(os.tmpdir(), `scan-${process.pid}.svg`);
    const { code, stdout, stderr } = await runCli([
      'bench',
      'scan',
      '--backend',
      'webgpu',
      '--batch',
      '2',
      '--d',
      '6',
      '--lengths',
      '33,64',
      '--n',
      '8',
      '--repeats',
      '2',
      '--dispatches',
      '1',
      '--json',
      '--svg',
      svg,
    ]);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.benchmark).toBe('scan');
    // SwiftShader's exp2 is far outside 3 ulp, so 'auto' runs the accurate exp there.
    expect(doc.exp.autoUsesFast).toBe(doc.exp.fastExpError <= 3 * 2 ** -23);
    expect(doc.exp.used).toBe(doc.exp.autoUsesFast ? 'fast' : 'accurate');
    expect(doc.skipped.filter((s: { error: boolean }) => s.error)).toEqual([]);
    for (const L of [33, 64]) {
      const labels = doc.results
        .filter((r: { n: number }) => r.n === L)
        .map((r: { label: string }) => r.label);
      // SwiftShader offers subgroups, so the parallel kernel runs both ways.
      expect(labels).toEqual(['copy', 'sequential', 'sequential-thread', 'parallel', 'parallel-tree']);
    }
    for (const r of doc.results) {
      expect(r.bytes).toBe(scanBytes(2, 6, r.n, 8));
      expect(r.medianMs).toBeGreaterThan(0);
      // The copy moves the same bytes, rounded up to whole floats read and written.
      const moved = r.kernel === 'copy' ? 8 * Math.ceil(r.bytes / 8) : r.bytes;
      expect(r.gbps).toBeCloseTo(moved / (r.medianMs * 1e6), 6);
      expect(r.pctOfCopy).toBeGreaterThan(0);
      if (r.kernel === 'scan') {
        expect(r.check.pass).toBe(true);
        expect(r.check.channelsChecked).toBe(3);
      }
    }
    const plot = readFileSync(svg, 'utf8');
    expect(plot).toMatch(/<svg/);
    expect(plot).toMatch(/webgpu sequential/);
    expect(plot).toMatch(/webgpu parallel/);
    rmSync(svg, { force: true });
  });

  it('prints a table without --json, on gpu.js too', async () => {
    const { code, stdout, stderr } = await runCli([
      'bench',
      'scan',
      '--backend',
      'gpujs-cpu',
      '--batch',
      '1',
      '--d',
      '3',
      '--lengths',
      '20',
      '--n',
      '2',
      '--repeats',
      '1',
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/selective scan, batch 1, d 3, n 2/);
    expect(stdout).toMatch(/gpujs-cpu\s+20\s+parallel/);
    expect(stdout).toMatch(/gpujs-cpu\s+20\s+sequential/);
    expect(stdout).toMatch(/skipped: gpujs-cpu L=20 parallel-tree: gpu.js has no workgroups or subgroups/);
    expect(stdout).toMatch(
      /skipped: gpujs-cpu L=20 sequential-thread: gpu.js has no workgroups or subgroups/,
    );
  });

  it('a bad --algorithms value exits 2', async () => {
    const { code, stderr } = await runCli(['bench', 'scan', '--algorithms', 'tree']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--algorithms/);
  });
});
