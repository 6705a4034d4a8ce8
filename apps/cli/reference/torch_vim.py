"""The PyTorch reference for `longseq bench vim`, measured on the same GPU in the same run.

Times the training script's Vision Mamba (apps/training/vim-mnist/vim_model.py: plain PyTorch,
hustvl/Vim's layout, bimamba v2; its selective scan is ordinary tensor operations with a loop
over the sequence, since mamba_ssm's CUDA kernels are not on these machines) at Vim-tiny's
shape: 224 x 224 RGB images, patch 16 (196 patches + a middle class token = 197 tokens), embed
192, depth 24, d_state 16, expand 2, 1000 classes, random initialization, float32 on CUDA,
under torch.inference_mode(). For each batch: warmup calls, then the median of timed calls
(CUDA events around `model(images)`, images already on the GPU), as images per second.

vim_model.py is imported from this script's own directory (scripts/pack-device.sh copies it
into .devcarry next to this file) or, in the repository, from apps/training/vim-mnist.

    python3 torch_vim.py --batch 1,64 [--repeats 5] [--warmup 2] [--json FILE]

Prints a table, and with --json writes {"device", "torch", "model", "results": [{"batch", "ms",
"images_per_s", "samples_ms"}]} for `longseq bench vim --torch FILE`.
"""
import argparse
import json
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for candidate in (HERE, os.path.join(HERE, "..", "..", "training", "vim-mnist")):
    if os.path.exists(os.path.join(candidate, "vim_model.py")):
        sys.path.insert(0, candidate)
        break
from vim_model import VisionMamba  # noqa: E402

VIM_TINY = {
    "img_size": 224,
    "patch_size": 16,
    "stride": 16,
    "channels": 3,
    "embed_dim": 192,
    "depth": 24,
    "num_classes": 1000,
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "bimamba_type": "v2",
    "if_devide_out": True,
    "if_cls_token": True,
    "use_middle_cls_token": True,
    "if_abs_pos_embed": True,
    "final_pool_type": "mean",
    "norm_epsilon": 1e-5,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_vim.py: CUDA is not available")
    torch.manual_seed(args.seed)
    device = torch.device("cuda")
    model = VisionMamba(dict(VIM_TINY)).to(device=device, dtype=torch.float32).eval()
    results = []
    for batch in [int(b) for b in args.batch.split(",")]:
        images = torch.randn(batch, 3, 224, 224, device=device, dtype=torch.float32)
        samples = []
        with torch.inference_mode():
            for i in range(args.warmup + args.repeats):
                start = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                logits = model(images)
                stop.record()
                torch.cuda.synchronize()
                if i >= args.warmup:
                    samples.append(start.elapsed_time(stop))
            if not torch.isfinite(logits).all():
                sys.exit(f"torch_vim.py: non-finite logits at batch {batch}")
        ms = statistics.median(samples)
        results.append({"batch": batch, "ms": ms, "images_per_s": 1000.0 * batch / ms, "samples_ms": samples})
        print(f"batch {batch:4d}: {ms:10.2f} ms  {1000.0 * batch / ms:10.1f} images/s", flush=True)
    doc = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "model": VIM_TINY,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
