import { parseArgs as nodeParseArgs } from 'node:util';
import { UsageError } from './errors';

export type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

/** node:util parseArgs, strict, with its errors turned into UsageErrors (exit code 2). */
export function parseFlags(args: string[], flags: FlagSpec, command: string): Parsed {
  try {
    const { values, positionals } = nodeParseArgs({
      args,
      options: flags,
      strict: true,
      allowPositionals: true,
    });
    return { values: values as Parsed['values'], positionals };
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new UsageError(`${command}: ${message}. Run 'longseq help' for usage.`);
  }
}

export function stringFlag(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function boolFlag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** A positive integer flag; `fallback` when absent. */
export function intFlag(p: Parsed, name: string, fallback: number, min = 1): number {
  const v = stringFlag(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name}: expected an integer >= ${min}, got '${v}'`);
  return n;
}

/** A comma-separated list of positive integers, e.g. `--lengths 256,1024,4096`. */
export function intListFlag(p: Parsed, name: string, fallback: number[]): number[] {
  const v = stringFlag(p, name);
  if (v === undefined) return fallback;
  const items = v.split(',').map((s) => s.trim());
  const out = items.map(Number);
  if (items.length === 0 || out.some((n, i) => items[i] === '' || !Number.isInteger(n) || n < 1)) {
    throw new UsageError(`--${name}: expected comma-separated positive integers, got '${v}'`);
  }
  return out;
}
