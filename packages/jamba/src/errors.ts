/**
 * Typed errors of the Jamba cache. They extend the backend's errors, so `instanceof
 * DeviceLimitError` or a switch on `code` works, and each names the argument and the limit.
 */
import { DeviceLimitError } from '@longseq/backend';

/**
 * The hybrid cache cannot hold what was asked (a context beyond its KV blocks, more sequences
 * than it has Mamba state slots) and nothing may be preempted. Thrown before any change: the
 * cache is left exactly as it was.
 */
export class CacheBudgetError extends DeviceLimitError {
  constructor(
    argument: string,
    /** The limit that would be exceeded: 'KV blocks' or 'sequences'. */
    readonly resource: 'KV blocks' | 'sequences',
    readonly needed: number,
    readonly available: number,
    detail: string,
  ) {
    super(argument, `${resource} of the cache (${detail})`, needed, available);
  }
}
