"""The PyTorch reference for `longseq bench ssm-conv` on a CUDA GPU, measured in the same run.

Times the causal long convolution y = K * u of S4 (`fftconv` in the state-spaces repository):

    k_f = torch.fft.rfft(K, n=2 * L)          # [H, L + 1] complex
    u_f = torch.fft.rfft(u, n=2 * L)
    y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]

on CUDA in float32, for H channels (default 1024) and each L, with CUDA events (median of
repeats). It is the same function as longseq's `causalConv(u, K)` ('fft conv' in the bench);
longseq pads to the power of two >= 2L, which equals 2L for the power-of-two lengths here.
Also checks one channel against a float64 direct sum on the CPU for small L.

    python torch_ssm_conv.py --channels 1024 --lengths 1024,2048,4096,8192,16384,32768,65536 [--json]
"""
import argparse
import json
import statistics

import torch


def fft_conv(u, K):
    L = u.shape[-1]
    k_f = torch.fft.rfft(K, n=2 * L)
    u_f = torch.fft.rfft(u, n=2 * L)
    return torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]


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
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768,65536")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda")
    results = []
    for L in [int(x) for x in args.lengths.split(",")]:
        u = torch.rand(args.channels, L, device=device) * 2 - 1
        K = torch.rand(args.channels, L, device=device) * 2 - 1
        check = None
        if L <= 4096:
            y = fft_conv(u[:1], K[:1]).double().cpu()[0]
            uu = u[0].double().cpu()
            kk = K[0].double().cpu()
            ref = torch.stack([torch.dot(kk[: t + 1], uu[: t + 1].flip(0)) for t in range(L)])
            check = float((y - ref).abs().max())
        for _ in range(args.warmup):
            fft_conv(u, K)
        torch.cuda.synchronize()
        samples = time_ms(lambda: fft_conv(u, K), args.repeats, args.inner)
        results.append(
            {
                "L": L,
                "channels": args.channels,
                "label": "torch fft conv",
                "medianMs": statistics.median(samples),
                "minMs": min(samples),
                "samplesMs": samples,
                "maxErrorVsFloat64": check,
            }
        )
        if not args.json:
            print(f"L={L:6d}  torch fft conv  {statistics.median(samples):9.4f} ms" + (f"  max err {check:.2e}" if check is not None else ""))
    if args.json:
        doc = {
            "benchmark": "ssm-conv (torch reference)",
            "device": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "results": results,
        }
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
