import { LongseqError } from '@longseq/backend';

/** A mistake in how the command was called (unknown command, bad flag). Exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The file given to `verify` is in a format this CLI cannot check (yet). Exit code 2. */
export class UnsupportedFormatError extends Error {
  override readonly name = 'UnsupportedFormatError';
}

/**
 * Exit code for an error that ends a command: 2 when the user asked for something that
 * cannot be done as asked (usage, an unknown or unavailable backend, a bad option value,
 * an unsupported file), 1 for failures while doing it.
 */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof UnsupportedFormatError) return 2;
  if (err instanceof LongseqError && (err.code === 'BACKEND_UNAVAILABLE' || err.code === 'INVALID_ARGUMENT'))
    return 2;
  return 1;
}

export function messageOf(err: unknown): string {
  if (err instanceof LongseqError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}
