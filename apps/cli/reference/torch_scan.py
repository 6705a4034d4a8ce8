"""The PyTorch reference for `longseq bench scan` on a CUDA GPU, measured in the same run.

Times the selective scan of transformers' PyTorch path: the part of `MambaMixer.slow_forward`
(transformers/models/mamba/modeling_mamba.py) from the discretization to the gate, i.e.

    discrete_A = exp(A[None, :, None, :] * dt[:, :, :, None])        # [batch, d, L, n]
    deltaB_u   = dt[:, :, :, None] * B[:, None, :, :] * u[:, :, :, None]
    for i in range(seq_len):                                          # the recurrence
        ssm_state = discrete_A[:, :, i, :] * ssm_state + deltaB_u[:, :, i, :]
        scan_outputs.append(torch.matmul(ssm_state, C[:, i, :].unsqueeze(-1))[:, :, 0])
    y = (stack(scan_outputs, -1) + u * D[None, :, None]) * silu(z)

on CUDA in float32, with dt = softplus(delta + dt_bias) (transformers adds the bias inside
dt_proj; here it is added explicitly so both sides get the same inputs). The loop is
written out in plain torch, line for line, rather than imported: slow_forward is a method
that also runs in_proj, the convolution, x_proj, dt_proj and out_proj, and building a
MambaMixer only to time its middle would time those too. Shapes follow longseq: u, delta,
z [batch, d, L]; B, C [batch, n, L] (transposed to transformers' [batch, L, n] before
timing); A [d, n] negative; D, dt_bias [d].

Also times, where installed, mamba_ssm's CUDA `selective_scan_fn` (the fused kernel), and a
copy (clone) of the same number of bytes, all with CUDA events, median of repeats.

    python torch_scan.py --batch 8 --d 2048 --lengths 4096 --n 16 [--json]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def slow_forward_scan(u, delta, A, B_t, C_t, D, z, dt_bias):
    """transformers' MambaMixer.slow_forward from discretization to gate. B_t, C_t: [batch, L, n]."""
    batch, d, seq_len = u.shape
    n = A.shape[1]
    dt = F.softplus(delta + dt_bias[None, :, None])
    ssm_state = torch.zeros((batch, d, n), device=u.device, dtype=torch.float32)
    discrete_A = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    discrete_B = dt[:, :, :, None] * B_t[:, None, :, :].float()
    deltaB_u = discrete_B * u[:, :, :, None].float()
    scan_outputs = []
    for i in range(seq_len):
        ssm_state = discrete_A[:, :, i, :] * ssm_state + deltaB_u[:, :, i, :]
        scan_output = torch.matmul(ssm_state, C_t[:, i, :].unsqueeze(-1))
        scan_outputs.append(scan_output[:, :, 0])
    y = torch.stack(scan_outputs, dim=-1)
    y = y + (u * D[None, :, None])
    return y * F.silu(z)


def time_ms(fn, repeats, inner=1):
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


def scan_bytes(batch, d, seq_len, n):
    """Each input read once and y written once (the count `longseq bench scan` uses)."""
    return 4 * (3 * batch * d * seq_len + 2 * batch * n * seq_len + d * n + 2 * d + batch * d * seq_len)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--lengths", default="4096")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed (or not built for this GPU): report null
        selective_scan_fn = None

    results = []
    for seq_len in [int(v) for v in args.lengths.split(",")]:
        batch, d, n = args.batch, args.d, args.n
        dev = "cuda"
        u = torch.rand(batch, d, seq_len, device=dev) * 2 - 1
        delta = torch.rand(batch, d, seq_len, device=dev) * 5 - 4
        z = torch.rand(batch, d, seq_len, device=dev) * 6 - 3
        A = -(torch.rand(d, n, device=dev) * 7.5 + 0.5)
        B = torch.rand(batch, n, seq_len, device=dev) * 2 - 1
        C = torch.rand(batch, n, seq_len, device=dev) * 2 - 1
        D = torch.rand(d, device=dev) * 2 - 1
        dt_bias = torch.rand(d, device=dev) * 2 - 1
        B_t = B.transpose(1, 2).contiguous()
        C_t = C.transpose(1, 2).contiguous()
        nbytes = scan_bytes(batch, d, seq_len, n)

        with torch.no_grad():
            slow = lambda: slow_forward_scan(u, delta, A, B_t, C_t, D, z, dt_bias)  # noqa: E731
            y_slow = slow()
            time_ms(slow, 1)  # warm-up
            slow_ms = time_ms(slow, args.repeats)

            fused_ms = None
            fused_max_diff = None
            if selective_scan_fn is not None:
                fused = lambda: selective_scan_fn(  # noqa: E731
                    u, delta, A, B, C, D, z=z, delta_bias=dt_bias, delta_softplus=True
                )
                fused_max_diff = (fused() - y_slow).abs().max().item()
                time_ms(fused, 2)
                fused_ms = time_ms(fused, args.repeats, inner=5)

            half = (nbytes + 7) // 8
            src = torch.rand(half, device=dev)
            time_ms(lambda: src.clone(), 2)
            copy_ms = time_ms(lambda: src.clone(), args.repeats, inner=10)
        del y_slow
        torch.cuda.empty_cache()
        results.append(
            {
                "batch": batch,
                "d": d,
                "L": seq_len,
                "n": n,
                "bytes": nbytes,
                "slow_forward_scan_ms": slow_ms,
                "slow_forward_scan_gbps": nbytes / slow_ms / 1e6,
                "mamba_ssm_selective_scan_ms": fused_ms,
                "mamba_ssm_max_abs_diff": fused_max_diff,
                "copy_ms": copy_ms,
                "copy_gbps": 8 * half / copy_ms / 1e6,
            }
        )
    doc = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": results}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"{doc['device']}, torch {doc['torch']}")
        for r in results:
            fused = "n/a" if r["mamba_ssm_selective_scan_ms"] is None else f"{r['mamba_ssm_selective_scan_ms']:.3f} ms"
            print(
                f"batch {r['batch']} d {r['d']} L {r['L']} n {r['n']}: slow_forward scan {r['slow_forward_scan_ms']:.3f} ms"
                f" ({r['slow_forward_scan_gbps']:.0f} GB/s), mamba_ssm selective_scan_fn {fused},"
                f" copy of the same bytes {r['copy_ms']:.3f} ms ({r['copy_gbps']:.0f} GB/s)"
            )


if __name__ == "__main__":
    main()
