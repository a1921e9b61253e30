"""PyTorch reference for @tinyllama/attention: a Llama attention block (q/k/v/o projections, no
bias; rotate-half RoPE built exactly as Hugging Face's LlamaRotaryEmbedding builds it in fp32;
causal softmax attention; grouped-query attention by repeat_interleave of K/V, in the reference
only) in plain PyTorch, fp32. Writes inputs, weights, outputs and every gradient of
L = sum(out * dout) to test/fixtures/attention_<name>.safetensors.

Run: /usr/bin/python3 tools/reference/attention_fixtures.py   (PyTorch 1.13, CPU)
"""
import json
import math
import os
import struct

import torch

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures")

CONFIGS = {
    # GQA (NKV < NH); T=70 spans two 64-row tiles and is not a multiple of them; HD=12 has no
    # 16-wide vector part; maxSeqLen > T so the tables are longer than the sequence.
    "gqa": dict(B=2, T=70, dim=48, nHeads=4, nKvHeads=2, maxSeqLen=80, ropeTheta=10000.0, seed=0),
    # plain multi-head attention (NKV == NH), another RoPE base.
    "mha": dict(B=1, T=40, dim=64, nHeads=4, nKvHeads=4, maxSeqLen=40, ropeTheta=1000000.0, seed=1),
}


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(HD, maxT, theta):
    # Hugging Face LlamaRotaryEmbedding, fp32 throughout.
    inv_freq = 1.0 / (theta ** (torch.arange(0, HD, 2).float() / HD))
    t = torch.arange(maxT, dtype=inv_freq.dtype)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def block(x, wq, wk, wv, wo, cfg):
    B, T, C = x.shape
    NH, NKV = cfg["nHeads"], cfg["nKvHeads"]
    HD = C // NH
    q = (x @ wq.T).view(B, T, NH, HD).transpose(1, 2)  # (B,NH,T,HD)
    k = (x @ wk.T).view(B, T, NKV, HD).transpose(1, 2)
    v = (x @ wv.T).view(B, T, NKV, HD).transpose(1, 2)
    cos, sin = rope_tables(HD, cfg["maxSeqLen"], cfg["ropeTheta"])
    cos, sin = cos[:T][None, None], sin[:T][None, None]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k_rep = k.repeat_interleave(NH // NKV, dim=1)
    v_rep = v.repeat_interleave(NH // NKV, dim=1)
    scores = (q @ k_rep.transpose(-1, -2)) / math.sqrt(HD)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B,NH,T)
    p = torch.softmax(scores, dim=-1)
    att = (p @ v_rep).transpose(1, 2).contiguous()  # (B,T,NH,HD)
    out = att.view(B, T, C) @ wo.T
    return out, att, lse


def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, cfg in CONFIGS.items():
        torch.manual_seed(cfg["seed"])
        B, T, C, NH, NKV = cfg["B"], cfg["T"], cfg["dim"], cfg["nHeads"], cfg["nKvHeads"]
        HD = C // NH
        std = 1.0 / math.sqrt(C)  # scores of order 1, so the softmax is far from uniform
        w = {
            "q_proj.weight": torch.randn(NH * HD, C) * std,
            "k_proj.weight": torch.randn(NKV * HD, C) * std,
            "v_proj.weight": torch.randn(NKV * HD, C) * std,
            "o_proj.weight": torch.randn(C, NH * HD) * std,
        }
        for t in w.values():
            t.requires_grad_(True)
        x = torch.randn(B, T, C, requires_grad=True)
        dout = torch.randn(B, T, C)
        out, att, lse = block(x, w["q_proj.weight"], w["k_proj.weight"], w["v_proj.weight"], w["o_proj.weight"], cfg)
        (out * dout).sum().backward()
        tensors = {"x": x, "dout": dout, "out": out, "att": att, "lse": lse, "dx": x.grad}
        for n, t in w.items():
            tensors[n] = t
            tensors["grad." + n] = t.grad
        path = os.path.join(OUT_DIR, f"attention_{name}.safetensors")
        save(path, tensors, {**cfg, "torch": torch.__version__})
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
