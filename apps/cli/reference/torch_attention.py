"""The PyTorch reference for `longseq bench attention` on a CUDA GPU, measured in the same run.

Times, in float32 with CUDA events (median of repeats, after warm-up):
  - sdpa:  F.scaled_dot_product_attention restricted to the memory-efficient backend
           (torch.nn.attention.sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION)); flash-attn's own
           backend takes no float32, so this is PyTorch's float32 FlashAttention-style kernel.
  - naive: softmax(q k^T * scale + mask) v with the scores materialized.
forward and (with --backward) forward + backward minus forward, causal and not, for
batch x heads = --batch-heads at head dim --d. TFLOP/s are counted as `longseq bench
attention` counts them: 4 N^2 d per head forward (half when causal), backward 2.5x forward.
Causal is bottom-right aligned; with nq = nk, as here, that is the usual lower triangle.

Prints a table, or JSON with --json:
  {"device": ..., "torch": ..., "results": [{"n", "causal", "impl", "pass", "ms", "tflops"}]}
"""
import argparse
import json
import math
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, repeats, inner):
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def flops(batch_heads, n, d, causal, backward):
    forward = 4 * n * n * d * batch_heads * (0.5 if causal else 1)
    return 2.5 * forward if backward else forward


def sdpa(q, k, v, causal):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def naive(q, k, v, causal):
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, device=q.device, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-heads", type=int, default=16)
    parser.add_argument("--n", default="1024,2048,4096")
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--causal", default="both", choices=["both", "true", "false"])
    parser.add_argument("--impl", default="sdpa,naive")
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    causals = [False, True] if args.causal == "both" else [args.causal == "true"]
    impls = {"sdpa": sdpa, "naive": naive}
    results = []
    for n in [int(x) for x in args.n.split(",")]:
        shape = (1, args.batch_heads, n, args.d)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float32, requires_grad=True) for _ in range(3))
        grad = torch.randn(shape, device="cuda", dtype=torch.float32)
        for causal in causals:
            for name in args.impl.split(","):
                fn = impls[name]
                try:
                    with torch.no_grad():
                        time_ms(lambda: fn(q, k, v, causal), 2, 2)
                        fwd = time_ms(lambda: fn(q, k, v, causal), args.repeats, args.inner)
                    results.append(
                        {"n": n, "causal": causal, "impl": name, "pass": "forward", "ms": fwd,
                         "tflops": flops(args.batch_heads, n, args.d, causal, False) / (fwd * 1e-3) / 1e12}
                    )
                    if args.backward:
                        def step():
                            out = fn(q, k, v, causal)
                            out.backward(grad)
                        time_ms(step, 2, 2)
                        both = time_ms(step, args.repeats, args.inner)
                        bwd = max(both - fwd, 1e-9)
                        results.append(
                            {"n": n, "causal": causal, "impl": name, "pass": "backward", "ms": bwd,
                             "tflops": flops(args.batch_heads, n, args.d, causal, True) / (bwd * 1e-3) / 1e12}
                        )
                except RuntimeError as err:  # out of memory for naive at large N, or no kernel
                    results.append({"n": n, "causal": causal, "impl": name, "error": str(err).splitlines()[0]})
                    torch.cuda.empty_cache()
    doc = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "batch_heads": args.batch_heads, "d": args.d, "results": results}
    if args.json:
        print(json.dumps(doc))
        return
    print(f"{doc['device']}, torch {doc['torch']}, batch x heads {args.batch_heads}, d {args.d}, float32")
    print(f"{'N':>6} {'causal':>6} {'impl':>6} {'pass':>8} {'ms':>9} {'TFLOP/s':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['n']:>6} {str(r['causal']):>6} {r['impl']:>6} {'':>8} error: {r['error']}")
        else:
            print(f"{r['n']:>6} {str(r['causal']):>6} {r['impl']:>6} {r['pass']:>8} {r['ms']:>9.3f} {r['tflops']:>8.2f}")


if __name__ == "__main__":
    main()
