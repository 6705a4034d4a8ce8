import path from 'node:path';
import { boolFlag, intFlag, parseFlags, stringFlag } from '../args';
import { createBackend, parseBackends } from '../backends';
import { UsageError } from '../errors';
import type { Io } from '../io';
import { modelEntryFor, readFolderConfig } from '../models';
import { jsonNumbers } from './verify';

/**
 * `longseq run <checkpoint-dir> --ids 3,17,42 [--generate N] [--backend NAME] [--json]
 * [--all-logits] [--temperature T] [--top-k K] [--top-p P] [--seed S]`: loads the checkpoint
 * (dispatching on config.json's architecture), prints the logits of the last position (every
 * position with --all-logits) and, with --generate, the new ids (greedy unless a temperature is given).
 */
export async function runCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      ids: { type: 'string' },
      generate: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'boolean' },
      'all-logits': { type: 'boolean' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
    },
    'run',
  );
  if (p.positionals.length !== 1) {
    throw new UsageError(
      'run: expected one checkpoint folder, e.g. longseq run golden/mamba-tiny --ids 3,17,42',
    );
  }
  const idsText = stringFlag(p, 'ids');
  if (idsText === undefined) throw new UsageError('run: --ids is required, e.g. --ids 3,17,42');
  const items = idsText.split(',').map((s) => s.trim());
  const ids = items.map(Number);
  if (items.some((s, i) => s === '' || !Number.isInteger(ids[i]) || ids[i]! < 0)) {
    throw new UsageError(`--ids: expected comma-separated token ids (integers >= 0), got '${idsText}'`);
  }
  const generate = intFlag(p, 'generate', 0, 0);
  const number = (name: string): number | undefined => {
    const v = stringFlag(p, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n))
      throw new UsageError(`--${name}: expected a number, got '${v}'`);
    return n;
  };
  const sampling = {
    ...(number('temperature') !== undefined ? { temperature: number('temperature')! } : {}),
    ...(number('top-k') !== undefined ? { topK: number('top-k')! } : {}),
    ...(number('top-p') !== undefined ? { topP: number('top-p')! } : {}),
    ...(number('seed') !== undefined ? { seed: number('seed')! } : {}),
  };
  const [backendName] = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  const json = boolFlag(p, 'json');
  const allLogits = boolFlag(p, 'all-logits');
  const folder = path.resolve(io.cwd ?? process.cwd(), p.positionals[0]!);
  // Dispatch on the architecture before starting a device, so an unsupported folder fails at once.
  const entry = modelEntryFor(await readFolderConfig(folder), folder);

  const backend = await createBackend(backendName!);
  try {
    const model = await entry.load(backend, folder);
    try {
      const logitsTensor = await model.forward([ids]);
      const all = await logitsTensor.read();
      logitsTensor.dispose();
      const vocab = model.vocabSize;
      const positions = allLogits ? ids.map((_, t) => t) : [ids.length - 1];
      const logits = positions.map((t) => Array.from(all.subarray(t * vocab, (t + 1) * vocab)));
      const generated =
        generate > 0 ? (await model.generate([ids], { maxNewTokens: generate, ...sampling })).ids[0]! : [];
      if (json) {
        io.stdout.write(`${JSON.stringify({ logits, generated }, jsonNumbers)}\n`);
      } else {
        io.stdout.write(`${entry.architecture} from ${folder} on ${backend.name}\n`);
        positions.forEach((t, i) => {
          const row = logits[i]!;
          let best = 0;
          for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
          io.stdout.write(
            `logits at position ${t} (token ${ids[t]}), ${vocab} values, argmax ${best}:\n  ${row.map((v) => v.toPrecision(6)).join(' ')}\n`,
          );
        });
        if (generate > 0) io.stdout.write(`generated: ${generated.join(',')}\n`);
      }
    } finally {
      model.dispose();
    }
  } finally {
    backend.dispose();
  }
  return 0;
}
