/**
 * The layers models share, composed from the backend's primitive ops (matmul with a
 * transposed weight, rmsNorm, gather, unary activations): no kernels of their own.
 */
import {
  ShapeError,
  type Tensor,
  add,
  checkDType,
  checkRank,
  checkTensor,
  gather,
  matmul,
  rmsNorm as rmsNormOp,
  scope,
  silu as siluOp,
  softplus as softplusOp,
} from '@longseq/backend';

/**
 * `x @ weight^T + bias` over the last axis, PyTorch's `nn.Linear`: x `[..., in]`, weight
 * `[out, in]` (the checkpoint layout, never copied or transposed), bias `[out]`.
 * Returns `[..., out]`.
 */
export async function linear(x: Tensor, weight: Tensor, bias?: Tensor): Promise<Tensor> {
  checkTensor(x, 'x');
  checkTensor(weight, 'weight');
  checkDType(x, 'x', ['f32']);
  checkRank(x, 'x', 1, 8, 'of rank >= 1 ([..., in])');
  checkRank(weight, 'weight', 2, 2, '[out, in]');
  const inFeatures = x.shape[x.rank - 1]!;
  const outFeatures = weight.shape[0]!;
  if (weight.shape[1] !== inFeatures)
    throw new ShapeError('weight', `[out, ${inFeatures}] (x's last dim)`, weight.shape);
  if (bias !== undefined) {
    checkTensor(bias, 'bias');
    if (bias.rank !== 1 || bias.shape[0] !== outFeatures)
      throw new ShapeError('bias', `[${outFeatures}]`, bias.shape);
  }
  return scope(async () => {
    const rows = x.rank === 1 ? x.reshape([1, inFeatures]) : x;
    const product = await matmul(rows, weight, { transposeB: true });
    const withBias = bias === undefined ? product : await add(product, bias);
    return x.rank === 1 ? withBias.reshape([outFeatures]) : withBias;
  });
}

/** RMSNorm over the last axis, `x / sqrt(mean(x^2) + eps) * weight` (Mamba's and Llama's norm). */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-5): Promise<Tensor> {
  return rmsNormOp(x, weight, { eps });
}

/**
 * Embedding lookup: table `[vocab, dim]`, ids i32/u32 of any shape; returns `[...ids.shape, dim]`.
 * Ids outside [0, vocab) give zero rows (ids live on the device; models check them on the host).
 */
export function embedding(table: Tensor, ids: Tensor): Promise<Tensor> {
  return gather(table, ids);
}

/** `x * sigmoid(x)`. */
export const silu = (x: Tensor): Promise<Tensor> => siluOp(x);
/** `log(1 + e^x)`, computed without overflow. */
export const softplus = (x: Tensor): Promise<Tensor> => softplusOp(x);
