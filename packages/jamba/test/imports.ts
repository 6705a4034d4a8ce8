export { argmax as argmaxOf } from '@longseq/mamba';
export * from '../src';
export { JambaMoeDecode } from '../src/webgpu/fused-decode';
