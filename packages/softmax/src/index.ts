export {
  Softmax,
  type SoftmaxAttrs,
  type SoftmaxOptions,
  type SoftmaxVariant,
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
