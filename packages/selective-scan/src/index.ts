export {
  allocateScanOutputs,
  packScanInputs,
  type ScanAlgorithm,
  type ScanExp,
  type ScanInputs,
  type ScanOperandLayout,
  type ScanOutputs,
  SelectiveScan,
  type SelectiveScanAttrs,
} from './contract';
export { GPUJS_CHUNK } from './gpujs/selective-scan';
export {
  chunkedScanRef,
  combineScanPairs,
  hillisSteeleLevels,
  mambaDiscretize,
  type ScanPair,
  type SelectiveScanRefOptions,
  type SelectiveScanRefResult,
  scanOperandIndexer,
  selectiveScanRef,
  sequentialScanRef,
  siluRef,
  softplusRef,
} from './reference';
export {
  AUTO_SEQUENTIAL_CHANNELS,
  autoAlgorithm,
  MAX_STATES,
  registerSelectiveScanKernels,
  type SelectiveScanOptions,
  type SelectiveScanResult,
  selectiveScan,
} from './selective-scan';
export {
  exp2IsAccurate,
  FAST_EXP_TOLERANCE,
  measureFastExpError,
  parallelChunkLength,
  parallelSegments,
  type SequentialTuning,
  setSequentialTuning,
} from './webgpu/selective-scan';
