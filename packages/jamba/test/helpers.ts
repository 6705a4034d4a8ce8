import { SafetensorsFile, encodeSafetensors } from '@longseq/nn';
import { type LanguageModelGolden, goldenCheckpoint } from '@longseq/test-harness';

export { REL_TOL, cleanTempDirs, maxRelativeError } from '@longseq/test-harness';

/** ../shared/golden/jamba-tiny/expected.json: transformers' logits and greedy generation. */
export type Golden = LanguageModelGolden;

export const { GOLDEN, readGolden, goldenConfig, goldenTensors, writeCheckpoint } = goldenCheckpoint<Golden>(
  'jamba-tiny',
  { parse: (bytes) => SafetensorsFile.parse(bytes), encode: encodeSafetensors },
);
