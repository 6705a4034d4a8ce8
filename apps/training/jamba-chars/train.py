#!/usr/bin/env python3
"""Trains one character-level language model on the KJV corpus with Hugging Face transformers.

Three models of about the same stored parameter count (see README.md):
  jamba        JambaForCausalLM: 4 layers [mamba+MLP, mamba+MoE, attention+MLP, mamba+MoE],
               4 experts top-2 (Jamba's layout scaled down: attention 1 in 4, experts every other layer)
  mamba        MambaForCausalLM: 8 Mamba blocks
  transformer  JambaForCausalLM with attn_layer_period=1 and one expert: a Transformer without
               positional encoding (NoPE, as Jamba's attention layers), 6 layers, SwiGLU MLPs

Training stops by wall clock (--seconds), so the three models get the same time on the GPU. The
Mamba layers run transformers' slow path (no CUDA kernels: use_mamba_kernels=False for Jamba; the
mamba_ssm package is not installed for Mamba), with the sequential scan (use_associative_scan=False).

Writes into --out/<model>/:
  config.json, model.safetensors   save_pretrained, weights stored as float16
  vocab.json                       the characters, index = token id
  loss.json                        train loss per step, validation loss at checkpoints, timings
  sample.txt                       text sampled from the float16-rounded model (temperature 0.8, top-k 20)
  expected.json                    float64 forward of the float16-rounded weights: logits of a prompt
                                   and greedy continuation ids with each step's logits (recomputed
                                   without cache), in the format of ../shared/golden/jamba-tiny/expected.json

Usage:
  python3 train.py --model jamba --corpus .devcarry/corpus --out /tmp/out --seconds 200
  python3 train.py --smoke --out /tmp/smoke      # all three models, tiny sizes, a few steps
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

import transformers
from transformers import JambaConfig, JambaForCausalLM, MambaConfig, MambaForCausalLM

PROMPT = "And God said, "
SAMPLE_PROMPT = "In the beginning "
GREEDY_STEPS = 16


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def model_config(name, vocab, smoke):
    """transformers config for `name`; `smoke` gives tiny sizes of the same layout."""
    hidden = 32 if smoke else 128
    common = dict(vocab_size=vocab, pad_token_id=0, bos_token_id=None, eos_token_id=None)
    if name == "jamba":
        return JambaConfig(
            **common,
            hidden_size=hidden,
            intermediate_size=hidden,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_layer_period=4,
            attn_layer_offset=2,
            expert_layer_period=2,
            expert_layer_offset=1,
            num_experts=4,
            num_experts_per_tok=2,
            mamba_d_state=16,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_dt_rank=8,
            use_mamba_kernels=False,
            use_associative_scan=False,
            tie_word_embeddings=False,
            max_position_embeddings=4096,
        )
    if name == "transformer":
        return JambaConfig(
            **common,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2 if smoke else 6,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_layer_period=1,
            attn_layer_offset=0,
            expert_layer_period=1,
            expert_layer_offset=0,
            num_experts=1,
            num_experts_per_tok=1,
            use_mamba_kernels=False,
            use_associative_scan=False,
            tie_word_embeddings=False,
            max_position_embeddings=4096,
        )
    if name == "mamba":
        return MambaConfig(
            **common,
            hidden_size=hidden,
            state_size=16,
            num_hidden_layers=2 if smoke else 8,
            expand=2,
            conv_kernel=4,
            time_step_rank=8,
            use_mambapy=False,
            use_associative_scan=False,
            tie_word_embeddings=True,
        )
    raise ValueError(f"unknown model {name!r}")


def build(name, vocab, smoke):
    config = model_config(name, vocab, smoke)
    cls = MambaForCausalLM if name == "mamba" else JambaForCausalLM
    return cls(config)


def layer_kinds(model):
    """Per layer: what the mixer and the feed-forward are, read from the built modules."""
    kinds = []
    layers = model.backbone.layers if hasattr(model, "backbone") else model.model.layers
    for layer in layers:
        mixer = "attention" if hasattr(layer, "self_attn") else "mamba"
        ff = getattr(layer, "feed_forward", None)
        if ff is None:
            kinds.append(mixer)
        else:
            kinds.append(f"{mixer}+{'moe' if hasattr(ff, 'router') else 'mlp'}")
    return kinds


def logits_of(model, ids):
    return model(input_ids=ids, use_cache=False).logits


def evaluate(model, valid, seq, batches, batch):
    """Mean cross-entropy (nats/char) over fixed validation windows."""
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(1234)
    starts = torch.randint(0, valid.numel() - seq - 1, (batches * batch,), generator=g)
    total = 0.0
    with torch.no_grad():
        for i in range(batches):
            s = starts[i * batch : (i + 1) * batch].to(valid.device)
            idx = s[:, None] + torch.arange(seq + 1, device=valid.device)[None, :]
            w = valid[idx]
            out = logits_of(model, w[:, :-1])
            total += F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), w[:, 1:].reshape(-1)).item()
    model.train()
    return total / batches


def expected_of(model, chars, device):
    """Float64 forward on the CPU of the model as it is (float16-rounded weights): prompt logits and
    greedy steps. (On CUDA, transformers' grouped_mm experts reject float64; the golden files were
    made on the CPU too.) Falls back to float32 on `device` if the CPU float64 forward fails."""
    try:
        cpu = copy.deepcopy(model).to("cpu", torch.float64)
        if hasattr(cpu, "set_experts_implementation"):  # grouped_mm experts take no float64
            cpu.set_experts_implementation("eager")
        return expected_in(cpu, chars, torch.device("cpu"), "float64, CPU")
    except Exception as e:
        log(f"float64 CPU forward failed ({type(e).__name__}: {e}); expected.json in float32 on {device}")
        torch.backends.cuda.matmul.allow_tf32 = False  # plain float32, not TF32, for the stored logits
        try:
            return expected_in(copy.deepcopy(model).to(device, torch.float32), chars, device, f"float32, {device}")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = True


def expected_in(model, chars, device, how):
    stoi = {c: i for i, c in enumerate(chars)}
    prompt = [stoi[c] for c in PROMPT]
    model = model.eval()
    with torch.no_grad():
        ids = torch.tensor([prompt], device=device)
        prompt_logits = logits_of(model, ids)[0]
        new_ids, step_logits, margins = [], [], []
        for _ in range(GREEDY_STEPS):
            last = logits_of(model, ids)[0, -1]
            top2 = torch.topk(last, 2).values
            margins.append((top2[0] - top2[1]).item())
            nxt = int(torch.argmax(last).item())
            new_ids.append(nxt)
            step_logits.append([float(f"{v:.9g}") for v in last.tolist()])
            ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
    return {
        "about": (
            f"{how} forward by Hugging Face transformers (slow path, no cache) of the weights in "
            "model.safetensors (float16, converted exactly). logits: [batch, seq, vocab] for input_ids. "
            "generate: greedy decoding; step_logits[t] are the logits that chose new_ids[t]."
        ),
        "transformers_version": transformers.__version__,
        "prompt": PROMPT,
        "input_ids": [prompt],
        "logits": [[[float(f"{v:.9g}") for v in row] for row in prompt_logits.tolist()]],
        "generate": {
            "prompt_ids": prompt,
            "new_ids": new_ids,
            "new_text": "".join(chars[i] for i in new_ids),
            "step_logits": step_logits,
            "min_top2_margin": min(margins),
        },
    }


def sample_text(model, chars, device, length, seed):
    """Sampled continuation (temperature 0.8, top-k 20) through transformers' generate with its cache."""
    stoi = {c: i for i, c in enumerate(chars)}
    model = model.to(torch.float32).eval()
    ids = torch.tensor([[stoi[c] for c in SAMPLE_PROMPT]], device=device)
    torch.manual_seed(seed)
    with torch.no_grad():
        try:
            out = model.generate(
                ids, max_new_tokens=length, do_sample=True, temperature=0.8, top_k=20,
                pad_token_id=0, eos_token_id=None, use_cache=True,
            )[0].tolist()
            how = "transformers generate() with its cache"
        except Exception as e:  # a generate() problem must not lose the trained weights
            log(f"generate() failed ({type(e).__name__}: {e}); sampling without cache")
            out = ids[0].tolist()
            for _ in range(min(length, 200)):
                last = logits_of(model, torch.tensor([out], device=device))[0, -1] / 0.8
                v, i = torch.topk(last, 20)
                out.append(int(i[torch.multinomial(torch.softmax(v, -1), 1)].item()))
            how = "a plain loop without cache (generate() failed)"
    return "".join(chars[i] for i in out), how


def train_one(name, args, chars, train, valid, device):
    out_dir = os.path.join(args.out, name)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    model = build(name, len(chars), args.smoke).to(device)
    params = sum(p.numel() for p in model.parameters())
    kinds = layer_kinds(model)
    log(f"{name}: {params} parameters, layers {kinds}")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    seq, batch = args.seq, args.batch
    train_loss, val = [], []
    g = torch.Generator(device=device).manual_seed(args.seed)
    start = time.time()
    next_eval = 0.0
    step = 0
    model.train()
    while True:
        elapsed = time.time() - start
        done = step >= args.max_steps or elapsed >= args.seconds
        if elapsed >= next_eval or done:
            v = evaluate(model, valid, seq, args.eval_batches, batch)
            val.append({"step": step, "seconds": round(elapsed, 2), "loss": round(v, 5)})
            log(f"{name} step {step} {elapsed:.0f}s val {v:.4f}" + (f" train {train_loss[-1]:.4f}" if train_loss else ""))
            next_eval = elapsed + args.eval_every
        if done:
            break
        # learning rate: linear warmup, then cosine over the wall-clock budget down to 10%
        frac = min(1.0, elapsed / args.seconds)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        s = torch.randint(0, train.numel() - seq - 1, (batch,), device=device, generator=g)
        w = train[s[:, None] + torch.arange(seq + 1, device=device)[None, :]]
        out = logits_of(model, w[:, :-1])
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_loss.append(round(loss.item(), 5))
        step += 1
    train_seconds = time.time() - start

    # Ship float16 weights; everything after this point sees exactly those weights.
    model = model.to(torch.float16)
    model.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "vocab.json"), "w") as f:
        json.dump({"about": "character-level vocabulary: chars[id] is the character of token id", "chars": chars}, f)

    final_val = evaluate(model.to(torch.float32), valid, seq, args.eval_batches, batch)
    expected = expected_of(model, chars, device)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f)
    text, how = sample_text(model, chars, device, args.sample_length, args.seed)
    with open(os.path.join(out_dir, "sample.txt"), "w") as f:
        f.write(text + "\n")

    summary = {
        "model": name,
        "architecture": type(model).__name__,
        "parameters": params,
        "layers": kinds,
        "seq": seq,
        "batch": batch,
        "lr": args.lr,
        "steps": step,
        "tokens": step * seq * batch,
        "train_seconds": round(train_seconds, 1),
        "final_val_loss_f16": round(final_val, 5),
        "final_val_bits_per_char": round(final_val / math.log(2), 4),
        "sample_how": how,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "train_loss": train_loss,
        "val": val,
    }
    with open(os.path.join(out_dir, "loss.json"), "w") as f:
        json.dump(summary, f)
    log(f"{name}: {step} steps in {train_seconds:.0f}s, val {final_val:.4f} nats/char (f16 weights)")
    log(f"{name} greedy: {PROMPT!r} -> {expected['generate']['new_text']!r}")
    log(f"{name} sample: {text[:300]!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["jamba", "mamba", "transformer"], help="the model to train")
    p.add_argument("--corpus", default=".devcarry/corpus", help="folder with train.txt and valid.txt")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=200.0, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=10**9)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=float, default=20.0, help="seconds between validation checks")
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--sample-length", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="all three models, tiny sizes, 3 steps")
    args = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    with open(os.path.join(args.corpus, "train.txt")) as f:
        train_text = f.read()
    with open(os.path.join(args.corpus, "valid.txt")) as f:
        valid_text = f.read()
    chars = sorted(set(train_text) | set(valid_text))
    if len(chars) > 128:
        sys.exit(f"vocabulary of {len(chars)} characters; at most 128 expected")
    stoi = {c: i for i, c in enumerate(chars)}
    train = torch.tensor([stoi[c] for c in train_text], dtype=torch.long, device=device)
    valid = torch.tensor([stoi[c] for c in valid_text], dtype=torch.long, device=device)
    log(f"transformers {transformers.__version__}, torch {torch.__version__}, {device}; "
        f"{len(chars)} characters; train {train.numel()}, valid {valid.numel()}")

    if args.smoke:
        args.max_steps, args.seq, args.batch, args.eval_batches, args.sample_length = 3, 32, 4, 2, 20
        for name in ["jamba", "mamba", "transformer"]:
            train_one(name, args, chars, train, valid, device)
        log("smoke ok")
        return
    if not args.model:
        p.error("--model is required unless --smoke")
    train_one(args.model, args, chars, train, valid, device)


if __name__ == "__main__":
    main()
