export {
  FlashAttention,
  FlashAttentionBackward,
  type FlashAttentionAttrs,
  type FlashTile,
  type FlashVariant,
} from './contract';
export {
  type AttentionAlgorithm,
  type AttentionCommonOptions,
  type AttentionGradients,
  type AttentionOptions,
  type AttentionResult,
  type AttentionVarlenOptions,
  MAX_HEAD_DIM,
  MIN_HEAD_DIM,
  attention,
  attentionBackward,
  attentionVarlen,
  attentionVarlenBackward,
  naiveBias,
  registerAttentionKernels,
} from './attention';
export {
  type AttentionGradRefResult,
  type AttentionMaskOptions,
  type AttentionRefOptions,
  type AttentionRefResult,
  type AttentionVarlenRefOptions,
  attentionBackwardRef,
  attentionRef,
  attentionVarlenBackwardRef,
  attentionVarlenRef,
} from './reference';
export { type AttentionLayout, type SequenceSpan, packedLayout, paddedLayout, visibleKeys } from './layout';
export {
  SUBGROUP_MATRIX_FEATURE,
  type SubgroupMatrixConfig,
  chooseTile,
  pickSubgroupMatrixConfig,
  subgroupMatrixConfigs,
} from './webgpu/attention';
