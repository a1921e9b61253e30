"""Fixtures for @tinyllama/mlp and @tinyllama/model, from the plain PyTorch Llama in llama.py.

For each tiny config: tokens, targets (some -100), every weight, the logits, the mean loss, and the
gradient of the loss with respect to every parameter (`grad.<HF name>`), in
test/fixtures/model_<name>.safetensors. Also the SwiGLU block (mlp_block.safetensors) and the
layer ops (ops_layers.safetensors: rmsnorm, swiglu, crossentropy, embedding).

The weights are drawn in fp32; the forward and backward then run in float64, so the stored
outputs are the exact values of the fp32 inputs (rounded once) and the TypeScript fp32 kernels
are measured against the truth, not against another fp32 rounding.

Run: /usr/bin/python3 tools/reference/model_fixtures.py   (PyTorch 1.13, CPU)
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import llama  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures")

BASE = dict(ropeTheta=10000.0, normEps=1e-5, tieEmbeddings=False, bosId=1, eosId=2)
CONFIGS = {
    # grouped-query attention (NKV < NH), T a power of two
    "gqa": dict(BASE, vocabSize=96, dim=48, hiddenDim=128, nLayers=2, nHeads=4, nKvHeads=2, maxSeqLen=16, B=2, T=16, seed=0),
    # multi-query (NKV = 1), T = 13 is a multiple of no tile, maxSeqLen > T, other eps and RoPE base
    "ragged": dict(BASE, vocabSize=77, dim=32, hiddenDim=80, nLayers=2, nHeads=2, nKvHeads=1, maxSeqLen=20,
                   ropeTheta=500000.0, normEps=1e-6, B=3, T=13, seed=1),
}


def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float64:
            t = t.float()
        if t.dtype == torch.int64:
            t = t.int()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"wrote {os.path.relpath(path)} ({8 + len(h) + off} bytes)")


def fp32_normal(g, shape, std, mean=0.0):
    """fp32 draws (the values the TypeScript side receives), promoted to float64 for the math."""
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean).double()


def model_fixture(name, spec):
    cfg = {k: v for k, v in spec.items() if k not in ("B", "T", "seed")}
    B, T = spec["B"], spec["T"]
    g = torch.Generator().manual_seed(spec["seed"])
    model = llama.LlamaForCausalLM(cfg).double()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(fp32_normal(g, p.shape, 0.1, 1.0))  # gains near 1, but not 1, so their gradients matter
            elif pname == "model.embed_tokens.weight":
                p.copy_(fp32_normal(g, p.shape, 1.0))
            else:
                p.copy_(fp32_normal(g, p.shape, 0.6 / p.shape[1] ** 0.5))
    V = cfg["vocabSize"]
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, 3] = -100
    targets[-1, -1] = -100
    targets[-1, 0] = -100
    logits, loss = model(tokens, targets)
    loss.backward()
    out = {"tokens": tokens, "targets": targets, "logits": logits, "loss": loss.reshape(1)}
    for pname, p in model.named_parameters():
        out[pname] = p
    for pname, p in model.named_parameters():
        out["grad." + pname] = p.grad
    save(os.path.join(OUT_DIR, f"model_{name}.safetensors"), out, {"config": cfg, "B": B, "T": T})


def mlp_fixture():
    g = torch.Generator().manual_seed(7)
    B, T, C, H = 2, 5, 32, 88
    x = fp32_normal(g, (B, T, C), 1.0).requires_grad_()
    w = {n: fp32_normal(g, s, 0.5 / s[1] ** 0.5).requires_grad_() for n, s in
         [("gate_proj.weight", (H, C)), ("up_proj.weight", (H, C)), ("down_proj.weight", (C, H))]}
    dout = fp32_normal(g, (B, T, C), 1.0)
    out = (F.silu(x @ w["gate_proj.weight"].T) * (x @ w["up_proj.weight"].T)) @ w["down_proj.weight"].T
    (out * dout).sum().backward()
    t = {"x": x, "dout": dout, "out": out, "dx": x.grad}
    for n, p in w.items():
        t[n] = p
        t["grad." + n] = p.grad
    save(os.path.join(OUT_DIR, "mlp_block.safetensors"), t, {"B": B, "T": T, "dim": C, "hiddenDim": H})


def ops_fixture():
    g = torch.Generator().manual_seed(11)
    t = {}
    # rmsnorm: N=6 rows of C=40, eps 1e-5; L = sum(out * dout)
    x = fp32_normal(g, (6, 40), 2.0).requires_grad_()
    w = fp32_normal(g, (40,), 0.2, 1.0).requires_grad_()
    dout = fp32_normal(g, (6, 40), 1.0)
    rstd = torch.rsqrt(x.pow(2).mean(-1) + 1e-5)
    out = w * (x * rstd[:, None])
    (out * dout).sum().backward()
    t.update({"rmsnorm.inp": x, "rmsnorm.weight": w, "rmsnorm.dout": dout, "rmsnorm.out": out, "rmsnorm.rstd": rstd,
              "rmsnorm.dinp": x.grad, "rmsnorm.dweight": w.grad})
    # swiglu: N=45 (ragged against 16-lane vectors)
    gate = fp32_normal(g, (45,), 3.0).requires_grad_()
    up = fp32_normal(g, (45,), 1.0).requires_grad_()
    dout = fp32_normal(g, (45,), 1.0)
    out = F.silu(gate) * up
    (out * dout).sum().backward()
    t.update({"swiglu.gate": gate, "swiglu.up": up, "swiglu.dout": dout, "swiglu.out": out,
              "swiglu.dgate": gate.grad, "swiglu.dup": up.grad})
    # crossentropy: N=7 rows, V=50, two ignored; the mean loss's gradient (gradScale = 1/5)
    logits = fp32_normal(g, (7, 50), 3.0).requires_grad_()
    targets = torch.randint(0, 50, (7,), generator=g)
    targets[2] = -100
    targets[5] = -100
    losses = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
    losses.sum().div(5).backward()
    t.update({"crossentropy.logits": logits, "crossentropy.targets": targets, "crossentropy.losses": losses,
              "crossentropy.dlogits": logits.grad})
    # embedding: V=11, C=24, tokens (3,5) with repeats
    wte = fp32_normal(g, (11, 24), 1.0).requires_grad_()
    tokens = torch.randint(0, 11, (3, 5), generator=g)
    dout = fp32_normal(g, (3, 5, 24), 1.0)
    out = F.embedding(tokens, wte)
    (out * dout).sum().backward()
    t.update({"embedding.wte": wte, "embedding.tokens": tokens, "embedding.dout": dout, "embedding.out": out,
              "embedding.dwte": wte.grad})
    save(os.path.join(OUT_DIR, "ops_layers.safetensors"), t, {"note": "rmsnorm eps 1e-5; crossentropy gradScale 1/5"})


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, spec in CONFIGS.items():
        model_fixture(name, spec)
    mlp_fixture()
    ops_fixture()
