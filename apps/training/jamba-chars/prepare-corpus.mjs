#!/usr/bin/env node
// Prepares the character-level corpus for train.py: the King James Version of the Bible from
// Debian's `bible-kjv-text` package (the text is in the public domain; the package's copyright
// file says so), decoded by the `bible` program of Debian's `bible-kjv` package (its data file
// is compressed in its own format). Both packages are fetched with `apt-get download` and
// unpacked with `dpkg -x` into a temporary folder; nothing is installed.
//
// Writes .devcarry/corpus/{train,valid}.txt (git-ignored) at the repository root, one verse per
// line without its number, chapters separated by an empty line. The split is fixed: every 20th
// chapter (chapters 0, 20, 40, ... in book order) is validation, the rest training.
//
// Usage: node apps/training/jamba-chars/prepare-corpus.mjs   (needs apt-get and dpkg)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const outDir = join(root, '.devcarry', 'corpus');
const VALID_EVERY = 20;

const tmp = mkdtempSync(join(tmpdir(), 'kjv-'));
try {
  execFileSync('apt-get', ['download', 'bible-kjv-text', 'bible-kjv'], { cwd: tmp, stdio: 'ignore' });
  for (const deb of readdirSync(tmp).filter((f) => f.endsWith('.deb')))
    execFileSync('dpkg', ['-x', join(tmp, deb), join(tmp, 'x')]);
  const raw = execFileSync(
    join(tmp, 'x/usr/bin/bible'),
    ['-p', join(tmp, 'x/usr/lib'), '-l1000', 'gen1:1-rev22:21'],
    { maxBuffer: 64 << 20, encoding: 'utf8' },
  );
  const chapters = parseChapters(raw);
  const train = [];
  const valid = [];
  for (const [i, verses] of chapters.entries())
    (i % VALID_EVERY === 0 ? valid : train).push(verses.join('\n'));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'train.txt'), `${train.join('\n\n')}\n`);
  writeFileSync(join(outDir, 'valid.txt'), `${valid.join('\n\n')}\n`);
  const chars = new Set([...train.join('\n'), ...valid.join('\n')]);
  console.log(
    `${chapters.length} chapters: train ${train.length}, valid ${valid.length}; ${chars.size} distinct characters; written to ${outDir}`,
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/**
 * `bible` prints "Genesis 1" headers and verses as "  N text", a verse possibly wrapped over
 * several lines. Returns the chapters, each a list of verse texts.
 */
function parseChapters(text) {
  const chapters = [];
  let verses = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const verse = /^\s+\d+ (.*)$/.exec(line);
    if (verse) {
      if (!verses) throw new Error(`verse before any chapter header: ${line}`);
      verses.push(verse[1].trim());
    } else if (/^\S.* \d+$/.test(line)) {
      verses = [];
      chapters.push(verses);
    } else if (verses && verses.length > 0) {
      verses[verses.length - 1] += ` ${line.trim()}`;
    } else {
      throw new Error(`unexpected line: ${line}`);
    }
  }
  return chapters;
}
