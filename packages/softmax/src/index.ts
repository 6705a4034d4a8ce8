export {
  Softmax,
  type SoftmaxAttrs,
  type SoftmaxOutputs,
  type SoftmaxVariant,
  allocateSoftmaxOutputs,
} from './contract';
export {
  type SoftmaxOptions,
  logsumexp,
  registerSoftmaxKernels,
  softmax,
  softmaxWithLse,
} from './softmax';
export {
  type SoftmaxAlgorithm,
  type SoftmaxRefOptions,
  type SoftmaxRefResult,
  softmaxRef,
} from './reference';
export { maxFusedRowLength } from './webgpu/softmax';
