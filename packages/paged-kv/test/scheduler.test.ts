import { describe, expect, it } from 'vitest';
import {
  BlockManager,
  OutOfBlocksError,
  SHAREGPT_OUTPUT,
  SHAREGPT_PROMPT,
  Scheduler,
  generateTrace,
  simulateServing,
} from '../src';

const counter = () => {
  let t = 100;
  return () => t++;
};

describe('Scheduler', () => {
  it('admits FCFS while blocks last and finishes every request', () => {
    const m = new BlockManager({ numBlocks: 8, blockSize: 4 });
    const s = new Scheduler(m, { watermark: 0 });
    s.add({ id: 1, prompt: [1, 2, 3, 4, 5, 6, 7, 8, 9], maxNewTokens: 3 });
    s.add({ id: 2, prompt: [1, 2, 3], maxNewTokens: 2 });
    s.add({ id: 3, prompt: Array.from({ length: 17 }, (_, i) => i), maxNewTokens: 1 });
    const first = s.step(counter());
    // request 3 needs 5 + 1 blocks; 1 and 2 took 3 + 1 + 1 + 1 of 8
    expect(first.prefilled).toEqual([1, 2]);
    const finished: number[] = [];
    const sample = counter();
    for (let i = 0; i < 20 && !s.idle; i++) {
      finished.push(...s.step(sample).finished);
      m.checkInvariants();
    }
    expect(finished.sort()).toEqual([1, 2, 3]);
    expect(m.device.numReferenced).toBe(0);
  });

  it('preempts the newest request by recompute when blocks run out, and it still completes', () => {
    const m = new BlockManager({ numBlocks: 4, blockSize: 2, prefixCaching: false });
    const s = new Scheduler(m, { preemption: 'recompute', watermark: 0 });
    s.add({ id: 1, prompt: [1, 2], maxNewTokens: 5 });
    s.add({ id: 2, prompt: [4, 5], maxNewTokens: 5 });
    const sample = counter();
    const preempted: { requestId: number; mode: string }[] = [];
    const finished: number[] = [];
    for (let i = 0; i < 30 && !s.idle; i++) {
      const r = s.step(sample);
      preempted.push(...r.preempted);
      finished.push(...r.finished);
      m.checkInvariants();
    }
    expect(preempted.length).toBeGreaterThan(0);
    expect(preempted[0]).toEqual({ requestId: 2, mode: 'recompute' });
    expect(finished.sort()).toEqual([1, 2]);
  });

  it('preempts by swapping to host blocks, returns the copy lists, and swaps back in', () => {
    const m = new BlockManager({ numBlocks: 4, blockSize: 2, numHostBlocks: 4, prefixCaching: false });
    const s = new Scheduler(m, { preemption: 'swap', watermark: 0 });
    s.add({ id: 1, prompt: [1, 2], maxNewTokens: 5 });
    s.add({ id: 2, prompt: [4, 5], maxNewTokens: 5 });
    const sample = counter();
    let swapOut = 0;
    let swapIn = 0;
    const finished: number[] = [];
    for (let i = 0; i < 30 && !s.idle; i++) {
      const r = s.step(sample);
      swapOut += r.swapOut.length;
      swapIn += r.swapIn.length;
      if (r.preempted.length > 0) expect(r.preempted[0]!.mode).toBe('swap');
      finished.push(...r.finished);
      m.checkInvariants();
    }
    expect(swapOut).toBeGreaterThan(0);
    expect(swapIn).toBe(swapOut);
    expect(finished.sort()).toEqual([1, 2]);
    expect(m.host.numReferenced).toBe(0);
  });

  it("with preemption 'none', running out of blocks throws OutOfBlocksError and changes nothing", () => {
    const m = new BlockManager({ numBlocks: 2, blockSize: 2 });
    const s = new Scheduler(m, { preemption: 'none', watermark: 0 });
    s.add({ id: 1, prompt: [1], maxNewTokens: 10 });
    const sample = counter();
    let thrown: unknown;
    for (let i = 0; i < 10; i++) {
      const before = m.snapshot();
      try {
        s.step(sample);
      } catch (err) {
        thrown = err;
        expect(m.snapshot()).toEqual(before);
        break;
      }
    }
    expect(thrown).toBeInstanceOf(OutOfBlocksError);
  });

  it('parallel samples fork from the prompt and share its blocks', () => {
    const m = new BlockManager({ numBlocks: 16, blockSize: 4 });
    const s = new Scheduler(m);
    s.add({ id: 1, prompt: Array.from({ length: 10 }, (_, i) => i), maxNewTokens: 4, n: 3 });
    s.step(counter());
    const ids = m.sequenceIds();
    expect(ids).toHaveLength(3);
    expect(m.blockTable(ids[1]!)).toEqual(m.blockTable(ids[0]!));
    const r = s.step(counter());
    // the shared partial last block is copied for two of the three samples
    expect(r.copies).toHaveLength(2);
  });
});

describe('serving simulation', () => {
  it('the trace follows its stated distributions', () => {
    const trace = generateTrace({ requests: 4000, rate: 2, seed: 7, maxModelLen: 100000 });
    const meanPrompt = trace.reduce((a, r) => a + r.prompt.length, 0) / trace.length;
    const meanOutput = trace.reduce((a, r) => a + r.outputLen, 0) / trace.length;
    const expectedPrompt = Math.exp(SHAREGPT_PROMPT.mu + SHAREGPT_PROMPT.sigma ** 2 / 2);
    const expectedOutput = Math.exp(SHAREGPT_OUTPUT.mu + SHAREGPT_OUTPUT.sigma ** 2 / 2);
    expect(Math.abs(meanPrompt / expectedPrompt - 1)).toBeLessThan(0.1);
    expect(Math.abs(meanOutput / expectedOutput - 1)).toBeLessThan(0.1);
    expect(trace[trace.length - 1]!.arrival / trace.length).toBeGreaterThan(0.45);
    expect(trace[trace.length - 1]!.arrival / trace.length).toBeLessThan(0.55);
  });

  it('paged allocation wastes under 4% and serves at least 2x the sequences of contiguous reservation', () => {
    const trace = generateTrace({ requests: 150, rate: 0.5, seed: 3 });
    const report = simulateServing(trace, { numBlocks: 600, blockSize: 16 });
    expect(report.contiguous.finished).toBe(150);
    expect(report.paged.finished).toBe(150);
    expect(report.paged.wastePct).toBeLessThan(4);
    expect(report.contiguous.wastePct).toBeGreaterThan(50);
    expect(report.concurrencyGain).toBeGreaterThanOrEqual(2);
    expect(report.paged.steps).toBeLessThan(report.contiguous.steps);
  });

  it('parallel sampling and beams share blocks', () => {
    for (const [n, beamWidth] of [
      [4, 1],
      [1, 4],
    ] as const) {
      const trace = generateTrace({ requests: 40, rate: 0.2, seed: 5, n, beamWidth });
      const report = simulateServing(trace, { numBlocks: 800, blockSize: 16, preemption: 'swap' });
      expect(report.paged.finished).toBe(40);
      expect(report.paged.sharingSavedPct).toBeGreaterThan(10);
    }
  });
});
