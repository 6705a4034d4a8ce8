export {
  type ScanAlgorithm,
  type ScanOperandLayout,
  SelectiveScan,
  type SelectiveScanAttrs,
  type ScanInputs,
  type ScanOutputs,
  allocateScanOutputs,
  packScanInputs,
} from './contract';
export {
  MAX_STATES,
  type SelectiveScanOptions,
  type SelectiveScanResult,
  registerSelectiveScanKernels,
  selectiveScan,
} from './selective-scan';
export {
  type ScanPair,
  type SelectiveScanRefOptions,
  type SelectiveScanRefResult,
  chunkedScanRef,
  combineScanPairs,
  hillisSteeleLevels,
  mambaDiscretize,
  scanOperandIndexer,
  selectiveScanRef,
  sequentialScanRef,
  siluRef,
  softplusRef,
} from './reference';
export { parallelChunkLength } from './webgpu/selective-scan';
export { GPUJS_CHUNK } from './gpujs/selective-scan';
