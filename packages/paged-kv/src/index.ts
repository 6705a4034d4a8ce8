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
export { type BlockTablesInput, PagedKvCache, type PagedKvCacheOptions } from './cache';
export {
  CopyBlocks,
  type CopyBlocksAttrs,
  PagedAttention,
  type PagedAttentionAttrs,
  WriteKv,
  type WriteKvAttrs,
} from './contract';
export {
  type PagedAttentionOptions,
  type PagedAttentionVariant,
  copyBlocks,
  defaultPartitionSize,
  pagedAttention,
  registerPagedKvKernels,
  writeKv,
} from './ops';
export {
  type PagedAttentionRefInputs,
  type PagedAttentionRefOptions,
  contiguousAttentionRef,
  copyBlocksRef,
  pagedAttentionRef,
  writeKvRef,
} from './reference';
export {
  type LogNormal,
  type RunStats,
  SHAREGPT_OUTPUT,
  SHAREGPT_PROMPT,
  type SeriesPoint,
  type SimulationOptions,
  type SimulationReport,
  type TraceOptions,
  type TraceRequest,
  generateTrace,
  seededRandom,
  simulateServing,
} from './simulate';
