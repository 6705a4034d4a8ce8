"""The PyTorch reference for `longseq bench mamba-decode`, measured on the same GPU in the same run.

Builds transformers' MambaForCausalLM from a MambaConfig of Mamba-130m's shape (hidden 768,
24 layers, vocab 50280, state 16, expand 2, conv 4) with its random initialization, in float32
on CUDA, and forces the slow path (transformers' own PyTorch code, no mamba_ssm /
causal_conv1d CUDA kernels, even where they are installed). Measures, with the cache:

- prefill: a forward over the prompt with use_cache=True (cache filled), tokens/s;
- decode: greedy `model.generate(prompt, min_new_tokens=N, max_new_tokens=N, do_sample=False,
  use_cache=True)` minus the same call with one new token, divided by N - 1: the time per
  token of the recurrent step (the prefill and the first token cancel).

Prints JSON: {"device", "torch", "transformers", "fast_path": false, "prefill_tokens_per_s",
"decode_tokens_per_s", ...}.
"""
import argparse
import json
import statistics
import sys
import time

# The CUDA-kernel packages the mixer can dispatch to (mamba_ssm, causal_conv1d, and the Hub's
# `kernels` loader that transformers 5 uses for them) are made unimportable before transformers
# looks for them: its availability checks then report them missing and the mixer stays on its
# PyTorch code, whatever is installed on the machine.
KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d", "kernels", "selective_scan_cuda", "causal_conv1d_cuda")
for _package in KERNEL_PACKAGES:
    sys.modules[_package] = None

import torch
import transformers
from transformers import MambaConfig, MambaForCausalLM
import transformers.models.mamba.modeling_mamba as modeling_mamba


# Names in modeling_mamba that hold (or load) the CUDA kernels or say whether they are there.
KERNEL_GLOBAL_MARKS = ("causal_conv1d", "mamba_ssm", "selective_", "mamba_inner", "fast_path", "lazy_load_kernel")


def _from_kernel_package(value):
    """Whether a module-level value of modeling_mamba is (or comes from) a Mamba kernel package."""
    import types

    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[0] in KERNEL_PACKAGES
    module = getattr(value, "__module__", None)
    return callable(value) and isinstance(module, str) and module.split(".")[0] in KERNEL_PACKAGES


def force_slow_path():
    """
    Disables every CUDA-kernel entry the mixer could take, across transformers versions:
    kernel functions and modules modeling_mamba got from the kernel packages become None,
    kernel availability flags False, availability checks and the Hub kernel loader
    (`lazy_load_kernel`) answer "missing". transformers 5 instead wraps its own PyTorch
    functions (`causal_conv1d_fn`, ...) to use a package when importable: those are left alone,
    and with the packages blocked (above) they run their PyTorch fallback. Called before the
    model is built (some versions load kernels in the mixer's __init__) and again after.
    """
    import types

    for name, value in list(vars(modeling_mamba).items()):
        lowered = name.lower()
        if _from_kernel_package(value):
            setattr(modeling_mamba, name, None)
        elif isinstance(value, bool) and any(mark in lowered for mark in KERNEL_GLOBAL_MARKS):
            setattr(modeling_mamba, name, False)
        elif isinstance(value, types.FunctionType) and (
            lowered == "lazy_load_kernel"
            or (lowered.startswith("is_") and "available" in lowered and "torch" not in lowered)
        ):
            answer = None if lowered == "lazy_load_kernel" else False
            setattr(modeling_mamba, name, lambda *a, _answer=answer, **k: _answer)


def describe_mixer_forward(mixer_class):
    """The forward's branching lines, printed when the reference fails, to fix this script."""
    import inspect

    try:
        source = inspect.getsource(mixer_class)
    except (OSError, TypeError):
        return "(source unavailable)"
    marks = ("def ", "if ", "kernel", "fast", "_fn", "lazy", "cuda")
    return "\n".join(line for line in source.splitlines() if any(m in line for m in marks))[:3000]


# The mixer's pure-PyTorch method has been renamed across transformers versions; the first of
# these the installed MambaMixer defines is used. (torch.nn.Module's own `_slow_forward` is a
# tracing helper, not the mixer's slow path: only names the mixer class itself defines count.)
SLOW_PATH_CANDIDATES = ("slow_forward", "torch_forward", "naive_forward", "_slow_path_forward")


def find_slow_method(mixer_class):
    """The name of the mixer's PyTorch-only forward, looked up on the class's own methods."""
    own = {}
    for klass in mixer_class.__mro__:
        if klass is torch.nn.Module:
            break
        for name, value in vars(klass).items():
            if callable(value):
                own.setdefault(name, value)
    for name in SLOW_PATH_CANDIDATES:
        if name in own:
            return name
    # A future name: any own *forward* method that is neither forward nor the CUDA-kernel one.
    guesses = [
        n for n in own if "forward" in n and n != "forward" and "cuda" not in n and "kernel" not in n
    ]
    if len(guesses) == 1:
        return guesses[0]
    # transformers 5 has a single forward that picks kernels or PyTorch inside; with the kernel
    # packages blocked it takes PyTorch, which verify_no_kernels checks on the GPU's own record.
    return None


def install_slow_path(model):
    """
    Routes every mixer's forward to its PyTorch-only method (whatever transformers' own
    fast-path check says) and counts the calls, so the caller can verify the slow path ran and
    the CUDA-kernel path never did. Returns (method name, counters).
    """
    mixers = [layer.mixer for layer in model.backbone.layers]
    name = find_slow_method(type(mixers[0]))
    counts = {"slow": 0, "cuda": 0}

    for mixer in mixers:
        slow = getattr(mixer, name or "forward")

        def forward(*args, _slow=slow, **kwargs):
            counts["slow"] += 1
            return _slow(*args, **kwargs)

        mixer.forward = forward  # an instance attribute: nn.Module.__call__ calls it
        if hasattr(mixer, "cuda_kernels_forward"):

            def refuse(*args, **kwargs):
                counts["cuda"] += 1
                raise RuntimeError("the CUDA-kernel path of the mixer was taken")

            mixer.cuda_kernels_forward = refuse
    return name or "forward", counts


# Substrings of the GPU kernel names of mamba_ssm's and causal_conv1d's CUDA/Triton kernels.
KERNEL_NAME_MARKS = ("selective_scan", "selective_state_update", "causal_conv1d", "ssd_", "mamba")


def verify_no_kernels(run):
    """
    Runs `run` under the torch profiler and fails if any GPU kernel that ran belongs to the
    Mamba CUDA/Triton kernels, or if no Python code of those packages is loaded: the proof the
    reference is transformers' PyTorch path. Returns the number of GPU kernels seen.
    """
    loaded = [m for m in sys.modules if m.split(".")[0] in KERNEL_PACKAGES and sys.modules[m] is not None]
    if loaded:
        raise SystemExit(f"Mamba kernel packages were imported ({loaded}); refusing to report")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    names = {e.key for e in prof.key_averages()}
    bad = sorted(n for n in names if any(mark in n.lower() for mark in KERNEL_NAME_MARKS))
    if bad:
        raise SystemExit(f"Mamba CUDA kernels ran ({bad[:5]}); refusing to report")
    return len(names)


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=50280)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", action="store_true", help="print JSON (the default; kept for symmetry with longseq)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    config = MambaConfig(
        hidden_size=args.d_model,
        num_hidden_layers=args.layers,
        vocab_size=args.vocab,
        state_size=args.d_state,
        expand=2,
        conv_kernel=4,
        use_cache=True,
        use_mambapy=False,
        tie_word_embeddings=True,
    )
    force_slow_path()
    model = MambaForCausalLM(config).to(device="cuda", dtype=torch.float32).eval()
    force_slow_path()
    slow_method, slow_counts = install_slow_path(model)
    parameters = sum(p.numel() for p in model.parameters())
    prompt = torch.randint(0, args.vocab, (args.batch, args.prompt), device="cuda")

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

    with torch.inference_mode():
        # The generate path itself must be the slow one: every mixer call is counted.
        try:
            generate(2)  # warm-up (allocator, cuBLAS handles)
        except Exception:
            print(describe_mixer_forward(type(model.backbone.layers[0].mixer)), file=sys.stderr)
            raise
        if slow_counts["slow"] == 0 or slow_counts["cuda"] > 0:
            raise SystemExit(f"the mixer did not take the slow path ({slow_counts}); refusing to report")
        profiled_ops = verify_no_kernels(lambda: generate(2))
        generate(args.tokens)

        prefill_s = timed(lambda: model(prompt, use_cache=True), args.repeats)
        one_s = timed(lambda: generate(1), args.repeats)
        many_s = timed(lambda: generate(args.tokens), args.repeats)
        out = generate(args.tokens)
        assert out.shape[1] == args.prompt + args.tokens, out.shape

    decode_s_per_token = (many_s - one_s) / (args.tokens - 1)
    print(
        json.dumps(
            {
                "benchmark": "mamba-decode",
                "implementation": "transformers MambaForCausalLM (slow path, no CUDA kernels), float32",
                "device": torch.cuda.get_device_name(0),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "fast_path": False,
                "slow_path_method": f"MambaMixer.{slow_method}",
                "slow_path_calls": slow_counts["slow"],
                "profiled_ops_without_mamba_kernels": profiled_ops,
                "parameters": parameters,
                "config": vars(args),
                "prefill_ms": prefill_s * 1e3,
                "prefill_tokens_per_s": args.batch * args.prompt / prefill_s,
                "decode_ms_per_token": decode_s_per_token * 1e3,
                "decode_tokens_per_s": args.batch / decode_s_per_token,
                "generate_1_ms": one_s * 1e3,
                "generate_n_ms": many_s * 1e3,
            }
        )
    )


if __name__ == "__main__":
    main()
