import { SafetensorsFile, encodeSafetensors } from '@longseq/nn';
import { goldenCheckpoint } from '@longseq/test-harness';

export { REL_TOL, cleanTempDirs, maxRelativeError } from '@longseq/test-harness';

/** ../shared/golden/vim-tiny/expected.json: images [B, C, H, W], features [B, M], logits [B, classes]. */
export interface Golden {
  readonly images: number[][][][];
  readonly features: number[][];
  readonly logits: number[][];
}

export const { GOLDEN, readGolden, goldenConfig, goldenTensors, writeCheckpoint } = goldenCheckpoint<Golden>(
  'vim-tiny',
  { parse: (bytes) => SafetensorsFile.parse(bytes), encode: encodeSafetensors },
);
