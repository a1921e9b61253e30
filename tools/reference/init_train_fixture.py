"""Writes test/fixtures/init_train/: a Hugging Face checkpoint, a T+1 token stream, and the losses and
gradient norms of 5 AdamW steps on it in PyTorch, for test/train-init.test.ts.

Run: /usr/bin/python3 tools/reference/init_train_fixture.py   (PyTorch only)

The test runs `bun tools/train.ts --init test/fixtures/init_train --data .../tokens.bin --batch 1 --seq 32
--sample sequential --schedule constant --warmup 0 --lr 1e-3 --weight-decay 0.1 --grad-clip 1 --steps 5`.
With exactly T+1 tokens and B=1 every step sees the same window (inputs tokens[0:T], targets tokens[1:T+1]),
so the data order cannot differ between the two sides. The steps here are what that command means in
PyTorch terms: mean cross-entropy, backward, clip_grad_norm_(1.0) (its return value, the pre-clip total
norm, is the grad_norm we log), torch.optim.AdamW with betas (0.9, 0.95), eps 1e-8, constant lr, and
weight decay 0.1 on 2-D weights only (RMSNorm gains in a group with weight_decay 0).

expected.json holds the fp32 run (the same precision as ours) and, for scale, the same steps in float64.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from llama import LlamaForCausalLM, init_tinyllama_  # noqa: E402
from safetensors_fixture import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "init_train")
# Smaller than the `micro` preset so the fixture stays well under 300 KB (about 40k parameters, 160 KB).
CFG = dict(vocabSize=256, dim=32, hiddenDim=88, nLayers=2, nHeads=4, nKvHeads=2, maxSeqLen=64,
           ropeTheta=10000.0, normEps=1e-5, tieEmbeddings=False, bosId=1, eosId=2)
T, STEPS, LR, BETAS, EPS, WD, CLIP = 32, 5, 1e-3, (0.9, 0.95), 1e-8, 0.1, 1.0
SEED = 20261129


def hf_config(cfg):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg["vocabSize"],
        "hidden_size": cfg["dim"], "intermediate_size": cfg["hiddenDim"], "num_hidden_layers": cfg["nLayers"],
        "num_attention_heads": cfg["nHeads"], "num_key_value_heads": cfg["nKvHeads"],
        "max_position_embeddings": cfg["maxSeqLen"], "rope_theta": cfg["ropeTheta"], "rms_norm_eps": cfg["normEps"],
        "hidden_act": "silu", "tie_word_embeddings": cfg["tieEmbeddings"], "bos_token_id": cfg["bosId"],
        "eos_token_id": cfg["eosId"], "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "float32",
    }


def run(model, tokens, dtype):
    """STEPS AdamW steps on the one window; returns per-step (loss, pre-clip grad norm)."""
    model = model.to(dtype)
    # Two groups as our optimizer's default: 2-D tensors decay, 1-D (RMSNorm gains) do not.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    x, y = tokens[None, :T], tokens[None, 1:T + 1]
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        logits = model.lm_head(model.model(x))
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
    return losses, norms


def main():
    torch.manual_seed(SEED)
    model = init_tinyllama_(LlamaForCausalLM(CFG), SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    tokens = torch.randint(0, CFG["vocabSize"], (T + 1,), generator=g)

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(hf_config(CFG), f, indent=2)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT, "model.safetensors"), {"format": "pt"})
    # nanoGPT / llama2.c format: headerless little-endian uint16
    tokens.to(torch.int32).numpy().astype("<u2").tofile(os.path.join(OUT, "tokens.bin"))

    init = {k: v.clone() for k, v in model.state_dict().items()}
    loss32, norm32 = run(model, tokens, torch.float32)
    model.load_state_dict(init)
    loss64, norm64 = run(model, tokens, torch.float64)
    expected = {
        "args": {"batch": 1, "seq": T, "steps": STEPS, "lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS,
                 "weight_decay": WD, "grad_clip": CLIP, "sample": "sequential", "schedule": "constant", "warmup": 0},
        "torch": torch.__version__,
        "loss": loss32, "grad_norm": norm32,
        "loss_f64": loss64, "grad_norm_f64": norm64,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
    print(json.dumps({"loss": loss32, "grad_norm": norm32}, indent=1))
    rel = max(abs(a - b) / abs(b) for a, b in zip(loss32 + norm32, loss64 + norm64))
    print(f"fp32 vs fp64 max relative difference: {rel:.2e}")


if __name__ == "__main__":
    main()
