"""AdamW + gradient clipping reference for @tinyllama/optimizer.

torch.optim.AdamW (betas 0.9/0.95, eps 1e-8), weight decay 0.1 on the 2-D tensors and 0 on the
1-D ones (TinyLlama's groups), 5 steps with fixed gradients and a changing learning rate, once
without clipping and once with torch.nn.utils.clip_grad_norm_(max_norm). The gradients are scaled
per step so that clipping is active on some steps and not on others.

Writes test/fixtures/adamw.safetensors:
  init.<name>                 initial parameters
  grad.<t>.<name>             the raw gradient of step t (1..5), before clipping
  lr                          (5,) learning rate of each step
  max_norm                    (1,) clipping threshold
  noclip.<t>.<name>           parameters after step t, no clipping
  clip.<t>.<name>             parameters after step t, with clipping
  clip.norm                   (5,) total norm returned by clip_grad_norm_ at each step
Run: /usr/bin/python3 tools/reference/adamw_fixture.py
"""
import json
import os
import struct

import torch

torch.manual_seed(1234)
# name -> shape, in arena order: runs of equal decay are embed | norm | proj+head | final_norm
SPECS = [("embed", (16, 24)), ("norm", (24,)), ("proj", (24, 20)), ("head", (7, 24)), ("final_norm", (24,))]
STEPS = 5
LRS = [1e-3, 3e-3, 2e-3, 1e-3, 5e-4]
GRAD_SCALE = [3.0, 0.02, 1.0, 0.05, 2.0]  # total norms well above and below MAX_NORM
MAX_NORM = 1.0

init = {n: torch.randn(s) for n, s in SPECS}
grads = [{n: torch.randn(s) * GRAD_SCALE[t] for n, s in SPECS} for t in range(STEPS)]
out = {f"init.{n}": t for n, t in init.items()}
for t in range(STEPS):
    for n, g in grads[t].items():
        out[f"grad.{t + 1}.{n}"] = g
out["lr"] = torch.tensor(LRS, dtype=torch.float32)
out["max_norm"] = torch.tensor([MAX_NORM], dtype=torch.float32)


def run(clip):
    params = {n: torch.nn.Parameter(init[n].clone()) for n, _ in SPECS}
    decay = [params[n] for n, s in SPECS if len(s) >= 2]
    no_decay = [params[n] for n, s in SPECS if len(s) < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LRS[0], betas=(0.9, 0.95), eps=1e-8,
    )
    norms = []
    for t in range(STEPS):
        for n, p in params.items():
            p.grad = grads[t][n].clone()
        if clip:
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM)))
        for g in opt.param_groups:
            g["lr"] = LRS[t]
        opt.step()
        for n, p in params.items():
            out[f"{'clip' if clip else 'noclip'}.{t + 1}.{n}"] = p.detach().clone()
    return norms


run(False)
out["clip.norm"] = torch.tensor(run(True), dtype=torch.float32)


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        assert t.dtype == torch.float32
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


root = os.path.join(os.path.dirname(__file__), "..", "..")
path = os.path.join(root, "test", "fixtures", "adamw.safetensors")
save_safetensors(path, out)
print(f"wrote {path} ({os.path.getsize(path)} bytes), clip norms {out['clip.norm'].tolist()}, torch {torch.__version__}")
