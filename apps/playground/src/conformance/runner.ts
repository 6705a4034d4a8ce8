import { type Backend, scope } from '@longseq/backend';
import type { Check, ConformanceCase } from './cases';
import { caseSeed, rng } from '@longseq/test-harness/random';

/** One case's outcome, as the browser test reads it from `window.__conformance`. */
export interface CaseResult {
  readonly name: string;
  readonly pass: boolean;
  /** The worst check's max error (NaN when the case threw or a NaN/infinity mismatched). */
  readonly maxError: number;
  /** That check's allowance by the test rule. */
  readonly allowed: number;
  /** Why it failed: the check's reason, a leak, or the message of what the case threw. */
  readonly reason?: string;
  readonly ms: number;
}

/** The worst of a case's checks: the first failing one, else the one closest to its allowance. */
function worst(checks: readonly Check[]): Check | undefined {
  const failing = checks.find((c) => !c.pass);
  if (failing) return failing;
  let best: Check | undefined;
  for (const c of checks) if (!best || c.maxError / c.allowed > best.maxError / best.allowed) best = c;
  return best;
}

const errorMessage = (err: unknown) =>
  (err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${String(err)}`).trim();

/**
 * Runs one case on fresh data drawn from (seed, case name) inside a scope, then checks that
 * memory() is back where it started. A case that throws is a failing case with the message.
 */
export async function runCase(backend: Backend, seed: number, c: ConformanceCase): Promise<CaseResult> {
  const before = backend.memory();
  const t0 = performance.now();
  let result: Omit<CaseResult, 'ms'>;
  try {
    const checks = await scope(() => c.run(backend, rng(caseSeed(seed, c.name))));
    const w = worst(checks);
    result = w
      ? {
          name: c.name,
          pass: checks.every((x) => x.pass),
          maxError: w.maxError,
          allowed: w.allowed,
          ...(w.pass ? {} : { reason: `${w.label}: ${w.reason ?? 'failed'}` }),
        }
      : { name: c.name, pass: false, maxError: Number.NaN, allowed: 0, reason: 'the case checked nothing' };
  } catch (err) {
    result = { name: c.name, pass: false, maxError: Number.NaN, allowed: 0, reason: errorMessage(err) };
  }
  const after = backend.memory();
  if (
    after.tensors !== before.tensors ||
    after.allocations !== before.allocations ||
    after.bytes !== before.bytes
  ) {
    const leak = `memory not returned: tensors ${before.tensors} -> ${after.tensors}, allocations ${before.allocations} -> ${after.allocations}, bytes ${before.bytes} -> ${after.bytes}`;
    result = { ...result, pass: false, reason: result.reason ? `${result.reason}; ${leak}` : leak };
  }
  return { ...result, ms: performance.now() - t0 };
}
