/**
 * Typed errors of the block manager. Each names the argument and what was expected, like
 * the errors of @longseq/backend (and extends them, so `instanceof ArgumentError` or a switch
 * on `code` works). Every operation that throws one leaves the manager's state unchanged.
 */
import { ArgumentError, DeviceLimitError } from '@longseq/backend';

/** A sequence id that was never added, or has been freed (or is swapped out where it must be resident). */
export class UnknownSequenceError extends ArgumentError {
  constructor(
    argument: string,
    readonly seqId: unknown,
    readonly reason = 'a live sequence id',
  ) {
    super(argument, reason, seqId);
  }
}

/** More KV blocks are needed than the budget has free (and nothing may be preempted). */
export class OutOfBlocksError extends DeviceLimitError {
  constructor(
    argument: string,
    readonly needed: number,
    readonly available: number,
    pool = 'free KV blocks',
  ) {
    super(argument, pool, needed, available);
  }
}

/** A block table names a block that is not allocated (freed, or out of range). */
export class FreedBlockError extends ArgumentError {
  constructor(
    argument: string,
    readonly block: number,
  ) {
    super(argument, 'blocks that are allocated (reference count > 0)', `block ${block}, which is free`);
  }
}
