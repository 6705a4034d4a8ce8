export {
  type AllocatorSnapshot,
  BlockAllocator,
  type KvBudget,
  blocksForBudget,
  bytesPerBlock,
} from './allocator';
export {
  type AddResult,
  type AppendResult,
  type BlockCopy,
  BlockManager,
  type BlockManagerOptions,
  type BlockManagerSnapshot,
  type SequenceSnapshot,
  type SwapResult,
  blockHash,
} from './block-manager';
export { FreedBlockError, OutOfBlocksError, UnknownSequenceError } from './errors';
export {
  type BeamSelector,
  type KvWrite,
  type PreemptionMode,
  type Request,
  type Sampler,
  Scheduler,
  type SchedulerOptions,
  type StepResult,
} from './scheduler';
