/**
 * Float64 references of the nn kernels, written to be read. `precision: 'f32'` rounds every
 * intermediate to float32, the "straightforward float32 computation" of the test rule.
 *
 * Shapes (one meaning per letter): B batch, C channels, L length, K kernel width.
 */
import { type HostTensor, type RefOptions, type RefResult, rounderFor } from '@longseq/backend';

export interface CausalConv1dRefOptions extends RefOptions {
  /** `[C]`, added to every output. */
  readonly bias?: HostTensor;
  /** `[B, C, K - 1]`: the inputs that came before x (zeros when absent). */
  readonly initialState?: HostTensor;
}

export interface CausalConv1dRefResult {
  /** `[B, C, L]`. */
  readonly output: RefResult;
  /** `[B, C, K - 1]`: the last K - 1 inputs (with the initial state in front), to continue with `causalConv1dStepRef`. */
  readonly finalState: RefResult;
}

/**
 * Causal depthwise conv1d, PyTorch `Conv1d(C, C, K, groups=C, padding=K-1)` cut to the first
 * L outputs:
 *
 *   out[b, c, t] = bias[c] + sum_{j=0}^{K-1} weight[c, j] * x[b, c, t - (K - 1) + j]
 *
 * where x at negative times comes from the initial state (zeros without one).
 * x: `[B, C, L]`, weight: `[C, K]`.
 */
export function causalConv1dRef(
  x: HostTensor,
  weight: HostTensor,
  options: CausalConv1dRefOptions = {},
): CausalConv1dRefResult {
  const r = rounderFor(options);
  const [batch, channels, length] = [x.shape[0]!, x.shape[1]!, x.shape[2]!];
  const k = weight.shape[1]!;
  const past = k - 1;
  // x with its past in front: padded[b, c, p] = x[b, c, p - past].
  const input = (b: number, c: number, p: number): number => {
    if (p >= past) return x.data[(b * channels + c) * length + p - past]!;
    return options.initialState ? options.initialState.data[(b * channels + c) * past + p]! : 0;
  };
  const out = new Float64Array(batch * channels * length);
  const state = new Float64Array(batch * channels * past);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let t = 0; t < length; t++) {
        let acc = options.bias ? options.bias.data[c]! : 0;
        for (let j = 0; j < k; j++) acc = r(acc + r(weight.data[c * k + j]! * input(b, c, t + j)));
        out[(b * channels + c) * length + t] = acc;
      }
      for (let p = 0; p < past; p++) state[(b * channels + c) * past + p] = input(b, c, length + p);
    }
  }
  return {
    output: { shape: [batch, channels, length], data: out },
    finalState: { shape: [batch, channels, past], data: state },
  };
}

/**
 * One step of the causal conv for decoding: x `[B, C]` is the newest input, state
 * `[B, C, K - 1]` the K - 1 before it (oldest first).
 *
 *   out[b, c] = bias[c] + sum_{j<K-1} weight[c, j] * state[b, c, j] + weight[c, K-1] * x[b, c]
 *   newState[b, c] = [state[b, c, 1:], x[b, c]]
 */
export function causalConv1dStepRef(
  x: HostTensor,
  state: HostTensor,
  weight: HostTensor,
  options: { readonly bias?: HostTensor } & RefOptions = {},
): { output: RefResult; state: RefResult } {
  const [batch, channels] = [x.shape[0]!, x.shape[1]!];
  const past = state.shape[2]!;
  const column = (b: number): HostTensor => ({
    shape: [1, channels, 1],
    data: Array.from({ length: channels }, (_, c) => x.data[b * channels + c]!),
  });
  const out = new Float64Array(batch * channels);
  const next = new Float64Array(batch * channels * past);
  for (let b = 0; b < batch; b++) {
    const initialState = {
      shape: [1, channels, past],
      data: Array.from(state.data).slice(b * channels * past, (b + 1) * channels * past),
    };
    const one = causalConv1dRef(column(b), weight, { ...options, initialState });
    out.set(one.output.data, b * channels);
    next.set(one.finalState.data, b * channels * past);
  }
  return {
    output: { shape: [batch, channels], data: out },
    state: { shape: [batch, channels, past], data: next },
  };
}

/** x @ weight^T + bias over the last axis: x `[..., in]`, weight `[out, in]`, bias `[out]`. */
export function linearRef(
  x: HostTensor,
  weight: HostTensor,
  bias?: HostTensor,
  options: RefOptions = {},
): RefResult {
  const r = rounderFor(options);
  const [outFeatures, inFeatures] = [weight.shape[0]!, weight.shape[1]!];
  const rows = inFeatures === 0 ? 0 : x.data.length / inFeatures;
  const data = new Float64Array(rows * outFeatures);
  for (let i = 0; i < rows; i++) {
    for (let o = 0; o < outFeatures; o++) {
      let acc = 0;
      for (let k = 0; k < inFeatures; k++)
        acc = r(acc + r(x.data[i * inFeatures + k]! * weight.data[o * inFeatures + k]!));
      data[i * outFeatures + o] = bias ? r(acc + bias.data[o]!) : acc;
    }
  }
  return { shape: [...x.shape.slice(0, -1), outFeatures], data };
}
