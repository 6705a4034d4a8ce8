"""The PyTorch reference for `longseq bench paged-attention` on a CUDA GPU, measured in the same run.

Same data layout as the longseq kernel: key and value caches [num_blocks, block_size,
kv_heads, d] in float32, every sequence's blocks scattered at random (a shuffled block
table), one query token per sequence, q [seqs, heads, d], GQA (heads a multiple of kv_heads).
Times with CUDA events (median of repeats, after warm-up):
  - copy:            a clone of the key cache (reads and writes as many bytes as attention
                     reads of K and V): the bandwidth ceiling, as `longseq bench` measures it;
  - contiguous sdpa: F.scaled_dot_product_attention (memory-efficient backend) on K and V
                     already laid out per sequence [seqs, kv_heads, context, d], the
                     contiguous decode path;
  - gather + sdpa:   the paged cache read through the block table with index_select into a
                     contiguous tensor, then the same SDPA: what paging costs without a
                     paged kernel.
GB/s counts the K and V bytes attention must read (2 x seqs x context x kv_heads x d x 4).
Prints a table, or JSON with --json.
"""
import argparse
import json
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seqs", type=int, default=64)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    s, L, h, kvh, d, bs = a.seqs, a.context, a.heads, a.kv_heads, a.head_dim, a.block_size
    per_seq = (L + bs - 1) // bs
    num_blocks = s * per_seq
    key_cache = torch.randn(num_blocks, bs, kvh, d, device=dev)
    value_cache = torch.randn(num_blocks, bs, kvh, d, device=dev)
    tables = torch.randperm(num_blocks, device=dev).view(s, per_seq)
    q = torch.randn(s, h, 1, d, device=dev)
    scale = d ** -0.5

    def gather(cache):
        # [seqs, per_seq, bs, kvh, d] -> [seqs, kvh, context, d]
        blocks = cache.index_select(0, tables.reshape(-1)).view(s, per_seq * bs, kvh, d)[:, :L]
        return blocks.permute(0, 2, 1, 3)

    def attend(k, v):
        k = k.repeat_interleave(h // kvh, dim=1)
        v = v.repeat_interleave(h // kvh, dim=1)
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, scale=scale)

    k_contig = gather(key_cache).contiguous()
    v_contig = gather(value_cache).contiguous()
    kv_bytes = 2 * s * L * kvh * d * 4
    copy_ms = time_ms(lambda: key_cache.clone(), a.repeats, a.inner)
    copy_gbps = 2 * key_cache.numel() * 4 / copy_ms / 1e6
    results = [{"impl": "copy (same bytes)", "ms": copy_ms, "gbps": copy_gbps}]
    for name, fn in [
        ("contiguous sdpa (nq = 1)", lambda: attend(k_contig, v_contig)),
        ("gather + sdpa", lambda: attend(gather(key_cache), gather(value_cache))),
    ]:
        for _ in range(3):
            fn()
        ms = time_ms(fn, a.repeats, a.inner)
        gbps = kv_bytes / ms / 1e6
        results.append({"impl": name, "ms": ms, "gbps": gbps, "pct_of_copy": 100 * gbps / copy_gbps})
    doc = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "config": vars(a),
        "kv_bytes": kv_bytes,
        "note": "SDPA repeats K/V per query head (GQA) before attending; its GB/s counts the K/V bytes once",
        "results": results,
    }
    if a.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{doc['device']}, torch {doc['torch']}: {s} seqs x {L} context, {h}/{kvh} heads, d {d}, f32")
    for r in results:
        pct = f"{r['pct_of_copy']:.0f}%" if "pct_of_copy" in r else ""
        print(f"{r['impl']:28s} {r['ms']:9.3f} ms {r['gbps']:8.0f} GB/s {pct:>6s}")


if __name__ == "__main__":
    main()
