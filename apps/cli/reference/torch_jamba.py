"""The PyTorch reference for `longseq bench jamba`, measured on the same GPU in the same device call.

Builds transformers' JambaForCausalLM with its random initialization, float32 on CUDA, without
the Mamba CUDA kernels (use_mamba_kernels=False, and the kernel packages mamba_ssm,
causal_conv1d and the Hub `kernels` loader made unimportable, so the mixer runs transformers'
PyTorch code), of the shape `longseq bench jamba` uses by default: hidden 1024, 8 layers with one
attention layer (period 8, offset 4), 16 experts top-2 every other layer (offset 1), 8 heads of
128 with 2 KV heads, intermediate 3584 (Jamba's 14336 / 4096 ratio), vocab 65536, Mamba
d_state 16, d_conv 4, expand 2, dt_rank 64.

Measures:
- prefill: one forward over a prompt of --prefill tokens (batch 1, use_cache=False, the last
  position's logits only), tokens/s;
- decode at each --batches: greedy `generate(min_new_tokens=N, max_new_tokens=N)` minus the same
  with one new token, over N - 1 tokens: the time per token of the cached step (prefill and
  first token cancel), tokens/s counting every sequence of the batch.

Prints JSON: {"benchmark": "jamba", "device", "torch", "transformers", "prefill": {...},
"decode": [{"batch", "tokens_per_s", "ms_per_token"}], ...}.
"""
import argparse
import json
import statistics
import sys
import time

KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d", "kernels", "selective_scan_cuda", "causal_conv1d_cuda")
for _package in KERNEL_PACKAGES:
    sys.modules[_package] = None

import torch
import transformers
from transformers import JambaConfig, JambaForCausalLM

KERNEL_NAME_MARKS = ("selective_scan", "selective_state_update", "causal_conv1d", "ssd_", "mamba")


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def kernels_that_ran(run):
    """Profiler events whose names look like the Mamba CUDA/Triton kernels while `run` runs (expected: none)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    names = {e.key for e in prof.key_averages()}
    return sorted(n for n in names if any(mark in n.lower() for mark in KERNEL_NAME_MARKS))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=3584)
    p.add_argument("--experts", type=int, default=16)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--vocab", type=int, default=65536)
    p.add_argument("--attn-period", type=int, default=8)
    p.add_argument("--attn-offset", type=int, default=4)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--prefill", type=int, default=4096)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prefill-repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    torch.manual_seed(args.seed)
    config = JambaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        attn_layer_period=args.attn_period,
        attn_layer_offset=args.attn_offset,
        expert_layer_period=2,
        expert_layer_offset=1,
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
        mamba_d_state=args.d_state,
        mamba_d_conv=4,
        mamba_expand=2,
        mamba_dt_rank="auto",
        use_mamba_kernels=False,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
    )
    with torch.device("cuda"):
        model = JambaForCausalLM(config)
    model = model.to(torch.float32).eval()
    parameters = sum(t.numel() for t in model.parameters())
    g = torch.Generator(device="cuda").manual_seed(args.seed)

    def prompt_of(batch, length):
        return torch.randint(0, args.vocab, (batch, length), device="cuda", generator=g)

    result = {
        "benchmark": "jamba",
        "implementation": "transformers JambaForCausalLM, use_mamba_kernels=False (PyTorch Mamba path), float32",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "parameters": parameters,
        "layers": list(getattr(config, "layers_block_type", [])),
        "config": vars(args),
    }
    with torch.inference_mode():
        long_prompt = prompt_of(1, args.prefill)
        model(prompt_of(1, 256), use_cache=False, logits_to_keep=1)  # warm-up
        result["mamba_cuda_kernels_seen"] = kernels_that_ran(
            lambda: model(prompt_of(1, 64), use_cache=False, logits_to_keep=1)
        )
        result["mamba_packages_loaded"] = sorted(
            m for m in sys.modules if m.split(".")[0] in KERNEL_PACKAGES and sys.modules[m] is not None
        )
        prefill_s, samples = timed(
            lambda: model(long_prompt, use_cache=False, logits_to_keep=1).logits.float().cpu(),
            args.prefill_repeats,
        )
        result["prefill"] = {
            "tokens": args.prefill,
            "ms": prefill_s * 1e3,
            "tokens_per_s": args.prefill / prefill_s,
            "samples_ms": [s * 1e3 for s in samples],
        }
        print(f"torch prefill {args.prefill}: {prefill_s * 1e3:.0f} ms", file=sys.stderr, flush=True)

        result["decode"] = []
        for batch in batches:
            prompt = prompt_of(batch, args.prompt)

            def generate(n):
                return model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    min_new_tokens=n,
                    max_new_tokens=n,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                )

            generate(2)  # warm-up
            one_s, _ = timed(lambda: generate(1), args.repeats)
            many_s, _ = timed(lambda: generate(args.tokens), args.repeats)
            out = generate(args.tokens)
            assert out.shape == (batch, args.prompt + args.tokens), out.shape
            per_token = (many_s - one_s) / (args.tokens - 1)
            result["decode"].append(
                {
                    "batch": batch,
                    "prompt": args.prompt,
                    "tokens": args.tokens,
                    "ms_per_token": per_token * 1e3,
                    "tokens_per_s": batch / per_token,
                    "generate_1_ms": one_s * 1e3,
                    "generate_n_ms": many_s * 1e3,
                }
            )
            print(f"torch decode batch {batch}: {per_token * 1e3:.1f} ms/token", file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
