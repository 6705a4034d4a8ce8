import type { Backend, Comparison } from '@longseq/backend';

/** One comparison inside a case (e.g. `out` or `lse`), by the test rule. */
export interface CheckResult {
  readonly name: string;
  readonly pass: boolean;
  /** max |actual - expected| over finite entries (NaN when a non-finite value mismatched). */
  readonly maxError: number;
  /** The error of a straightforward float32 computation of the same function. */
  readonly baselineError: number;
  /** factor x baselineError + atol. */
  readonly allowed: number;
  readonly reason?: string;
}

export interface CaseResult {
  readonly index: number;
  readonly name: string;
  readonly pass: boolean;
  readonly checks: CheckResult[];
}

/** What `verify` found at the path it was given. */
export interface GoldenTarget {
  readonly path: string;
  readonly basename: string;
  readonly isDirectory: boolean;
  /** File names in the folder, when `isDirectory`. */
  readonly entries: readonly string[];
  /** The parsed JSON, for a .json file that parsed. */
  readonly json?: unknown;
}

export interface VerifyContext {
  readonly backend: Backend;
  /** Called after each case, for progress output. */
  readonly onCase?: (result: CaseResult, total: number) => void;
}

/**
 * A golden-file format: how to recognise it and how to check it. A format without
 * `verify` is recognised but not supported yet (verify says so instead of guessing).
 */
export interface GoldenFormat {
  readonly name: string;
  readonly description: string;
  matches(target: GoldenTarget): boolean;
  verify?(target: GoldenTarget, context: VerifyContext): Promise<CaseResult[]>;
}

export function checkFrom(name: string, c: Comparison): CheckResult {
  return {
    name,
    pass: c.pass,
    maxError: c.maxError,
    baselineError: c.baselineError,
    allowed: c.allowed,
    ...(c.reason ? { reason: c.reason } : {}),
  };
}
