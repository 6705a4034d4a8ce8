export { argmax as argmaxOf } from '@longseq/mamba';
export * from '../src';
