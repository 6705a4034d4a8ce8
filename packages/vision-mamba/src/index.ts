export {
  VIM_ARCHITECTURE,
  VIM_REQUIRED_FIELDS,
  VIM_SCANS,
  type VimConfig,
  type VimPool,
  type VimScan,
  type VimTensorPresence,
  vimConfig,
  vimConfigFromJson,
  vimConfigToJson,
  vimGrid,
} from './config';
export {
  VimGather,
  type VimGatherAttrs,
  VimScanMerge,
  type VimScanMergeAttrs,
  VimTokens,
  type VimTokensAttrs,
} from './contract';
export { type VimTokensOptions, registerVimKernels, vimGather, vimScanMerge, vimTokens } from './ops';
export {
  DIRECTION_SUFFIX,
  SCAN_DIRECTIONS,
  type ScanDirection,
  type ScanOrder,
  clsIndexOf,
  gridScanOrder,
  inverseOrder,
  scanOrder,
} from './scan-order';
export { type PreprocessOptions, type RawImage, preprocessImage, preprocessImages } from './preprocess';
export { type VimRefResult, vimGatherRef, vimRef, vimScanMergeRef, vimTokensRef } from './reference';
export {
  type TensorReader,
  type VimLayerWeights,
  type VimWeights,
  checkVimTensorNames,
  patchIndices,
  uploadVimWeights,
  vimRandomReader,
  vimTensorShapes,
  vimWeightTensors,
} from './weights';
export { type VimImages, VisionMamba } from './model';
