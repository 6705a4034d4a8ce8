"""Vision Mamba (Vim) in plain PyTorch, with hustvl/Vim's parameter names and config fields.

No CUDA extension is needed: the selective scan is written with ordinary tensor operations
(discretization for the whole sequence at once, then a loop over the sequence that does one
fused multiply-add per step on the [batch, 2 * d_inner, d_state] state of both directions,
and one einsum for the read-out). It runs on the CPU and on CUDA, in float32 and float64.

Layout (the golden checkpoint ../shared/golden/vim-tiny shows both names and fields):
  patch_embed.proj          Conv2d(channels, embed_dim, kernel=patch_size, stride=stride)
  cls_token [1, 1, D]       inserted in the middle of the patch sequence (use_middle_cls_token)
                            or at its head
  pos_embed [1, M + 1, D]   absolute position embedding (if_abs_pos_embed)
  layers.{i}.norm           RMSNorm; the block adds its input to the residual (kept in float32
                            when residual_in_fp32) and normalizes the sum ("fused add norm")
  layers.{i}.mixer          bimamba v2: shared in_proj/out_proj; a forward scan with conv1d,
                            x_proj, dt_proj, A_log, D and a backward scan of the flipped
                            sequence with conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b;
                            (forward + flipped backward) / 2 when if_devide_out
  norm_f                    final add + RMSNorm
  head                      Linear(embed_dim, num_classes) on the class token's features

Usage:
  model = VisionMamba(json.load(open("config.json")))
  logits = model(images)                  # images: [B, C, H, W] float
  feats = model.forward_features(images)  # final-normed class token, [B, D]
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

REQUIRED_FIELDS = ("img_size", "patch_size", "channels", "embed_dim", "depth", "num_classes", "d_state")


def config_defaults(config):
    """The config with hustvl/Vim's defaults filled in (stride = patch_size, dt_rank = ceil(D/16), ...)."""
    for field in REQUIRED_FIELDS:
        if field not in config:
            raise ValueError(f"config: missing field {field!r}")
    c = dict(config)
    c.setdefault("stride", c["patch_size"])
    c.setdefault("d_conv", 4)
    c.setdefault("expand", 2)
    if c.get("dt_rank") in (None, "auto"):
        c["dt_rank"] = math.ceil(c["embed_dim"] / 16)
    c.setdefault("rms_norm", True)
    c.setdefault("residual_in_fp32", True)
    c.setdefault("fused_add_norm", True)
    c.setdefault("bimamba_type", "v2")
    c.setdefault("if_devide_out", True)
    c.setdefault("if_cls_token", True)
    c.setdefault("use_middle_cls_token", True)
    c.setdefault("if_abs_pos_embed", True)
    c.setdefault("final_pool_type", "mean")
    c.setdefault("norm_epsilon", 1e-5)
    if c["bimamba_type"] != "v2":
        raise ValueError(f"config: bimamba_type {c['bimamba_type']!r} is not supported (only 'v2')")
    if not c["rms_norm"]:
        raise ValueError("config: only rms_norm = true is supported")
    return c


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def selective_scan(u, delta, A, B, C, D, z):
    """Mamba's selective scan, delta already softplus'ed, for g groups of channels at once.

    u, delta, z: [b, d, l]; A: [d, n]; B, C: [b, g, n, l] (channel group k of d / g channels
    uses B[:, k], C[:, k]); D: [d]. Returns y * silu(z), [b, d, l], where
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t  and  y_t = C_t . h_t + D u_t.
    The discretization is done for all steps at once; the loop then does one fused
    multiply-add per step on the [b, d, n] state, and the read-out is one einsum.
    """
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    dA = torch.exp(delta.unsqueeze(-1) * A.view(1, d, 1, n))  # [b, d, l, n]
    dBu = ((delta * u).view(b, g, d // g, l, 1) * B.transpose(2, 3).unsqueeze(2)).view(b, d, l, n)
    h = u.new_zeros(b, d, n)
    states = []
    for dA_t, dBu_t in zip(dA.unbind(2), dBu.unbind(2)):
        h = torch.addcmul(dBu_t, dA_t, h)
        states.append(h)
    hs = torch.stack(states, dim=2).view(b, g, d // g, l, n)
    y = torch.einsum("bgcln,bgnl->bgcl", hs, C).reshape(b, d, l) + u * D.view(1, d, 1)
    return y * F.silu(z)


class BiMambaMixer(nn.Module):
    """hustvl/Vim's Mamba with bimamba_type = "v2" (no in/out projection biases, conv bias on)."""

    def __init__(self, d_model, d_state, d_conv, expand, dt_rank, if_devide_out):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank
        self.if_devide_out = if_devide_out
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.out_proj = nn.Linear(di, d_model, bias=False)
        a_init = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1)
        for suffix in ("", "_b"):
            self.add_module("conv1d" + suffix, nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True))
            self.add_module("x_proj" + suffix, nn.Linear(di, dt_rank + 2 * d_state, bias=False))
            dt_proj = nn.Linear(dt_rank, di, bias=True)
            # Mamba's initialization: dt_proj.weight ~ U(+-dt_rank^-0.5); softplus(bias) ~ logU(1e-3, 1e-1).
            std = dt_rank**-0.5
            nn.init.uniform_(dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            with torch.no_grad():
                dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.add_module("dt_proj" + suffix, dt_proj)
        self.A_log = nn.Parameter(a_init.clone())
        self.A_b_log = nn.Parameter(a_init.clone())
        self.D = nn.Parameter(torch.ones(di))
        self.D_b = nn.Parameter(torch.ones(di))

    def _prepare(self, x, conv, x_proj, dt_proj):
        l = x.shape[-1]
        x = F.silu(conv(x)[..., :l])  # causal depthwise convolution
        x_dbl = x_proj(x.transpose(1, 2))  # [b, l, dt_rank + 2n]
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(dt_proj(dt)).transpose(1, 2)  # [b, d, l]
        return x, delta, B.transpose(1, 2), C.transpose(1, 2)

    def forward(self, hidden):  # [b, l, d_model]
        xz = self.in_proj(hidden).transpose(1, 2)  # [b, 2 di, l]
        x, z = xz.chunk(2, dim=1)
        # The forward path scans the sequence, the backward path the flipped sequence with its own
        # parameters; both scans run in one loop (channels stacked, one B/C group per direction).
        u_f, delta_f, B_f, C_f = self._prepare(x, self.conv1d, self.x_proj, self.dt_proj)
        u_b, delta_b, B_b, C_b = self._prepare(x.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b)
        y = selective_scan(
            torch.cat([u_f, u_b], 1),
            torch.cat([delta_f, delta_b], 1),
            torch.cat([-torch.exp(self.A_log), -torch.exp(self.A_b_log)], 0),
            torch.stack([B_f, B_b], 1),
            torch.stack([C_f, C_b], 1),
            torch.cat([self.D, self.D_b], 0),
            torch.cat([z, z.flip(-1)], 1),
        )
        out, out_b = y.chunk(2, dim=1)
        y = (out + out_b.flip(-1)).transpose(1, 2)
        if self.if_devide_out:
            y = y / 2
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = RMSNorm(c["embed_dim"], c["norm_epsilon"])
        self.mixer = BiMambaMixer(
            c["embed_dim"], c["d_state"], c["d_conv"], c["expand"], c["dt_rank"], c["if_devide_out"]
        )
        self.residual_in_fp32 = c["residual_in_fp32"]

    def forward(self, hidden, residual):
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32 and residual.dtype in (torch.float16, torch.bfloat16):
            residual = residual.float()
        hidden = self.norm(residual.to(self.norm.weight.dtype))
        return self.mixer(hidden), residual


class PatchEmbed(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.proj = nn.Conv2d(c["channels"], c["embed_dim"], kernel_size=c["patch_size"], stride=c["stride"])

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [b, M, D], patches row-major


class VisionMamba(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config_defaults(config)
        self.config = c
        if not c["if_cls_token"]:
            raise ValueError("config: only if_cls_token = true is supported")
        grid = (c["img_size"] - c["patch_size"]) // c["stride"] + 1
        self.grid = grid
        self.num_patches = grid * grid
        d = c["embed_dim"]
        self.patch_embed = PatchEmbed(c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if c["if_abs_pos_embed"]:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, d))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.layers = nn.ModuleList([Block(c) for _ in range(c["depth"])])
        self.norm_f = RMSNorm(d, c["norm_epsilon"])
        self.head = nn.Linear(d, c["num_classes"])
        self.token_position = self.num_patches // 2 if c["use_middle_cls_token"] else 0

    def forward_features(self, images):
        c = self.config
        if images.dim() != 4 or images.shape[1:] != (c["channels"], c["img_size"], c["img_size"]):
            raise ValueError(
                f"images: expected [B, {c['channels']}, {c['img_size']}, {c['img_size']}], got {list(images.shape)}"
            )
        x = self.patch_embed(images)
        b = x.shape[0]
        p = self.token_position
        x = torch.cat([x[:, :p], self.cls_token.expand(b, -1, -1), x[:, p:]], dim=1)
        if c["if_abs_pos_embed"]:
            x = x + self.pos_embed
        residual = None
        hidden = x
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = residual + hidden
        hidden = self.norm_f(residual.to(self.norm_f.weight.dtype))
        return hidden[:, p]

    def forward(self, images, return_features=False):
        feats = self.forward_features(images)
        return feats if return_features else self.head(feats)


# --- safetensors without the safetensors package: 8-byte little-endian header length, JSON header,
# raw little-endian tensor bytes. Only the dtypes these scripts need.
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}
_NAMES = {v: k for k, v in _DTYPES.items()}


def load_safetensors(path):
    import json
    import struct

    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, stop = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:stop]), dtype=_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def save_safetensors(tensors, path, metadata=None):
    import json
    import struct

    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # keep the tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in chunks:
            f.write(raw)


def load_model(folder, dtype=torch.float32):
    """VisionMamba from a checkpoint folder (config.json + model.safetensors)."""
    import json
    import os

    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = VisionMamba(config)
    state = load_safetensors(os.path.join(folder, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: missing tensors {missing}, unexpected tensors {unexpected}")
    return model.to(dtype).eval()
