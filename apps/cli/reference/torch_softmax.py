"""The PyTorch reference for `longseq bench softmax` on a CUDA GPU, measured in the same run.

Times torch.softmax (dim=-1) and a plain copy (clone) of a rows x n float32 tensor with CUDA
events, median of repeats, inputs rotated through several buffers larger than L2, and prints
JSON: {"device": ..., "results": [{"n": ..., "softmax_ms": ..., "copy_ms": ..., ...}]}.
"""
import argparse
import json
import statistics

import torch


def time_ms(fn, inputs, repeats, inner):
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(inner):
            fn(inputs[i % len(inputs)])
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--lengths", default="4096")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    args = parser.parse_args()
    results = []
    for n in [int(v) for v in args.lengths.split(",")]:
        bytes_moved = 2 * args.rows * n * 4
        copies = max(2, int(2 * 64e6 // (args.rows * n * 4)) + 1)
        inputs = [torch.randn(args.rows, n, device="cuda", dtype=torch.float32) for _ in range(copies)]
        for fn in (lambda t: torch.softmax(t, dim=-1), lambda t: t.clone()):
            time_ms(fn, inputs, 3, 5)  # warm-up
        softmax_ms = time_ms(lambda t: torch.softmax(t, dim=-1), inputs, args.repeats, args.inner)
        copy_ms = time_ms(lambda t: t.clone(), inputs, args.repeats, args.inner)
        results.append(
            {
                "rows": args.rows,
                "n": n,
                "softmax_ms": softmax_ms,
                "softmax_gbps": bytes_moved / softmax_ms / 1e6,
                "copy_ms": copy_ms,
                "copy_gbps": bytes_moved / copy_ms / 1e6,
            }
        )
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
