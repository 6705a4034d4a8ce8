import { add, DeviceLostError, exp } from '@longseq/backend';
import { describe, expect, it } from 'vitest';
import { freshSeed, makeBackend, rng, uniform } from './helpers';

describe('device loss', () => {
  it('throws DeviceLostError after device.destroy(), and recreateDevice() brings it back', async () => {
    const backend = await makeBackend();
    try {
      const rand = rng(freshSeed());
      const start = backend.memory();
      const data = uniform(rand, 100);
      const old = backend.tensor(data, [100]);
      const oldOut = await exp(old);
      await oldOut.read();

      backend.device.destroy();
      // A read in flight when the device goes, and every operation after it, fail typed.
      await expect(oldOut.read()).rejects.toBeInstanceOf(DeviceLostError);
      expect(() => backend.tensor([1, 2], [2])).toThrow(DeviceLostError);
      await expect(exp(old)).rejects.toBeInstanceOf(DeviceLostError);
      await expect(backend.sync()).rejects.toBeInstanceOf(DeviceLostError);

      const lostDevice = backend.device;
      await backend.recreateDevice();
      expect(backend.device).not.toBe(lostDevice);

      // Old tensors stay dead; new ones work, kernels recompile on the new device.
      await expect(old.read()).rejects.toBeInstanceOf(DeviceLostError);
      await expect(add(old, old)).rejects.toBeInstanceOf(DeviceLostError);
      const fresh = backend.tensor(data, [100]);
      const sum = await add(fresh, fresh);
      expect(Array.from(await sum.read())).toEqual(Array.from(data, (v) => Math.fround(v + v)));

      for (const t of [old, oldOut, fresh, sum]) t.dispose();
      expect(backend.memory().bytes).toBe(start.bytes);
      expect(backend.memory().tensors).toBe(start.tensors);
    } finally {
      backend.dispose();
    }
  });
});
