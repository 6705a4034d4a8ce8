import path from 'node:path';
import type { Backend } from '@longseq/backend';
import { boolFlag, parseFlags, stringFlag } from '../args';
import { createBackend, describeAdapter, parseBackends } from '../backends';
import { UsageError } from '../errors';
import { fmtError } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { formatFor, loadTarget } from '../verify/formats';
import type { CaseResult } from '../verify/types';

export async function verifyCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(args, { backend: { type: 'string' }, json: { type: 'boolean' } }, 'verify');
  if (p.positionals.length !== 1) {
    throw new UsageError(
      'verify: expected one golden file or folder, e.g. longseq verify golden/attention.json',
    );
  }
  const json = boolFlag(p, 'json');
  const names = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  const file = path.resolve(io.cwd ?? process.cwd(), p.positionals[0]!);
  // Recognise the format before starting a device, so an unsupported file fails at once.
  const target = await loadTarget(file);
  const format = formatFor(target);

  const reports = [];
  for (const name of names) {
    let backend: Backend | undefined;
    try {
      backend = await createBackend(name);
      if (!json) io.stdout.write(`verify ${target.basename} (${format.name}) on ${backend.name}\n`);
      const cases = await format.verify(target, {
        backend,
        onCase: json ? undefined : (r, total) => io.stdout.write(`${caseLine(r, total)}\n`),
      });
      const passed = cases.filter((c) => c.pass).length;
      if (!json) io.stdout.write(`${passed}/${cases.length} cases passed on ${backend.name}\n`);
      reports.push({
        backend: backend.name,
        adapter: describeAdapter(backend),
        pass: passed === cases.length,
        cases,
      });
    } finally {
      backend?.dispose();
    }
  }
  const pass = reports.every((r) => r.pass);
  if (json) {
    const doc = {
      file,
      format: format.name,
      pass,
      machine: machineInfo(reports[0]?.adapter),
      results: reports,
    };
    io.stdout.write(`${JSON.stringify(doc, jsonNumbers, 2)}\n`);
  }
  return pass ? 0 : 1;
}

function caseLine(r: CaseResult, total: number): string {
  const width = String(total - 1).length;
  const checks = r.checks
    .filter((c) => c.name !== 'semantics' || !c.pass)
    .map((c) => `${c.name} ${fmtError(c.maxError)} ${c.pass ? '<=' : '>'} ${fmtError(c.allowed)}`)
    .join('   ');
  const reasons = r.checks.filter((c) => !c.pass && c.reason).map((c) => `\n      ${c.name}: ${c.reason}`);
  return `  ${r.pass ? 'PASS' : 'FAIL'}  #${String(r.index).padStart(width)} ${r.name.padEnd(46)} ${checks}${reasons.join('')}`;
}

/** JSON has no NaN or Infinity: write them as strings so the report stays parseable and honest. */
export function jsonNumbers(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}
