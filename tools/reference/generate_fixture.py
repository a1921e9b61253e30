"""Fixtures for @tinyllama/generate: a Hugging Face checkpoint written by PyTorch, its logits, its greedy
continuation, and the mean next-token loss of `bun run eval` on fixed windows.

Run: /usr/bin/python3 tools/reference/generate_fixture.py   (PyTorch + sentencepiece; writes test/fixtures/gen_*)

Model: V=512 (the tiny SentencePiece tokenizer of test/fixtures/ckpt_spm_tiny, copied in, so text prompts work),
C=64, H=176, L=2, NH=4, NKV=2 (GQA), maxSeqLen 128, random weights (seed searched below). Reference math is
tools/reference/llama.py's LlamaForCausalLM in float64, with the weights as the files hold them:
  gen_tiny_f32/   config.json, generation_config.json, model.safetensors (F32), tokenizer.model
  gen_tiny_bf16/  the same weights rounded to bfloat16 by PyTorch (model.safetensors BF16)
  gen_expected.safetensors
    batch_tokens (2,16) I32; logits_f32 / logits_bf16 (2,16,V) F32: logits of both checkpoints on that batch
  gen_expected.json
    prompt; greedy (50 ids): the greedy continuation (full recompute each step, float64) of the F32 model;
    margins: best minus second-best logit at each step (all >= MIN_MARGIN, so fp32 and llama.cpp's
    f16 KV cache cannot flip a step)
    eval_tokens (600 ids; also gen_eval/tokens.bin as raw uint16); eval_loss_32 / eval_loss_128 (float64) with eval_count_*: mean
    cross-entropy over non-overlapping windows of T+1 tokens (stride T+1, trailing partial window dropped) for
    T = 32 and T = 128 (the model's context, the eval default)
    text_ids: gen_eval/text.txt tokenised by SentencePiece with BOS; text_loss_32: its loss, T=32
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama  # noqa: E402
from safetensors_fixture import save_file  # noqa: E402

FIX = os.path.join(HERE, "..", "..", "test", "fixtures")
SPM = os.path.join(FIX, "ckpt_spm_tiny", "tokenizer.model")
CFG = dict(vocabSize=512, dim=64, hiddenDim=176, nLayers=2, nHeads=4, nKvHeads=2, maxSeqLen=128, ropeTheta=10000.0,
           normEps=1e-5, tieEmbeddings=False, bosId=1, eosId=2)
V, C, L, NH, NKV = CFG["vocabSize"], CFG["dim"], CFG["nLayers"], CFG["nHeads"], CFG["nKvHeads"]
HD = C // NH
PROMPT = [1, 300, 301, 302, 310, 287, 450, 263, 400, 330]
STEPS = 50
MIN_MARGIN = 0.05
TEXT = ("The quick brown fox jumps over the lazy dog. Then the dog went back to sleep, and the fox ran into the "
        "woods where it met two other foxes. They talked about the weather, the river, and the long winter ahead.")


def init(seed):
    """Sharp enough logits for clear greedy margins (lm_head std 0.5), like gguf_fixture.py."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std=1.0: torch.randn(*s, generator=g, dtype=torch.float64) * std  # noqa: E731
    H = CFG["hiddenDim"]
    sd = {"model.embed_tokens.weight": r(V, C)}
    for i in range(L):
        p = f"model.layers.{i}"
        sd[f"{p}.input_layernorm.weight"] = 1 + r(C, std=0.1)
        sd[f"{p}.self_attn.q_proj.weight"] = r(NH * HD, C, std=0.3)
        sd[f"{p}.self_attn.k_proj.weight"] = r(NKV * HD, C, std=0.3)
        sd[f"{p}.self_attn.v_proj.weight"] = r(NKV * HD, C, std=C ** -0.5)
        sd[f"{p}.self_attn.o_proj.weight"] = r(C, NH * HD, std=C ** -0.5)
        sd[f"{p}.post_attention_layernorm.weight"] = 1 + r(C, std=0.1)
        sd[f"{p}.mlp.gate_proj.weight"] = r(H, C, std=C ** -0.5)
        sd[f"{p}.mlp.up_proj.weight"] = r(H, C, std=C ** -0.5)
        sd[f"{p}.mlp.down_proj.weight"] = r(C, H, std=H ** -0.5)
    sd["model.norm.weight"] = 1 + r(C, std=0.1)
    sd["lm_head.weight"] = r(V, C, std=0.5)
    return {k: v.float() for k, v in sd.items()}  # the F32 file's values


def model_of(sd32):
    m = llama.LlamaForCausalLM(CFG).double()
    m.load_state_dict({k: v.double() for k, v in sd32.items()}, strict=True)
    return m.eval()


@torch.no_grad()
def greedy(m, prompt, steps):
    ids, margins = list(prompt), []
    for _ in range(steps):
        logits = m(torch.tensor([ids]))[0][0, -1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        ids.append(int(logits.argmax()))
    return ids[len(prompt):], margins


@torch.no_grad()
def window_loss(m, tokens, T):
    n = len(tokens) // (T + 1)
    w = torch.tensor(tokens[: n * (T + 1)], dtype=torch.long).view(n, T + 1)
    logits = m(w[:, :-1])[0]
    return float(F.cross_entropy(logits.reshape(-1, V), w[:, 1:].reshape(-1))), n * T


def write_dir(name, sd, dtype):
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.to(dtype) for k, v in sd.items()}, os.path.join(d, "model.safetensors"), {"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": C,
           "intermediate_size": CFG["hiddenDim"], "num_hidden_layers": L, "num_attention_heads": NH,
           "num_key_value_heads": NKV, "max_position_embeddings": CFG["maxSeqLen"], "rope_theta": CFG["ropeTheta"],
           "rms_norm_eps": CFG["normEps"], "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1,
           "eos_token_id": 2, "torch_dtype": "float32" if dtype == torch.float32 else "bfloat16"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
        f.write("\n")
    shutil.copyfile(SPM, os.path.join(d, "tokenizer.model"))


def main():
    for seed in range(200):
        sd = init(seed)
        m = model_of(sd)
        cont, margins = greedy(m, PROMPT, STEPS)
        if min(margins) >= MIN_MARGIN and min(cont) >= 3 and len(set(cont)) > 10:
            break
    else:
        raise SystemExit("no seed gave clear greedy margins")
    print(f"seed {seed}: continuation {cont}, min margin {min(margins):.4f}")
    sd16 = {k: v.to(torch.bfloat16).float() for k, v in sd.items()}
    m16 = model_of(sd16)
    write_dir("gen_tiny_f32", sd, torch.float32)
    write_dir("gen_tiny_bf16", sd, torch.bfloat16)

    g = torch.Generator().manual_seed(1234)
    batch = torch.randint(0, V, (2, 16), generator=g)
    with torch.no_grad():
        logits32 = m(batch)[0].float()
        logits16 = m16(batch)[0].float()
    eval_tokens = torch.randint(3, V, (600,), generator=g).tolist()
    loss32, n32 = window_loss(m, eval_tokens, 32)
    loss128, n128 = window_loss(m, eval_tokens, 128)

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=SPM)
    text_ids = [sp.bos_id()] + sp.encode(TEXT)
    assert len(text_ids) >= 33, len(text_ids)
    text_loss, ntext = window_loss(m, text_ids, 32)
    print(f"eval: T=32 loss {loss32:.6f} over {n32} tokens, T=128 {loss128:.6f} over {n128}; text {len(text_ids)} ids, loss {text_loss:.6f} over {ntext}")

    ev = os.path.join(FIX, "gen_eval")
    os.makedirs(ev, exist_ok=True)
    np.array(eval_tokens, dtype="<u2").tofile(os.path.join(ev, "tokens.bin"))
    with open(os.path.join(ev, "text.txt"), "w") as f:
        f.write(TEXT)
    save_file({"batch_tokens": batch.to(torch.int32), "logits_f32": logits32, "logits_bf16": logits16},
              os.path.join(FIX, "gen_expected.safetensors"))
    with open(os.path.join(FIX, "gen_expected.json"), "w") as f:
        json.dump({"prompt": PROMPT, "greedy": cont, "margins": margins, "min_margin": min(margins),
                   "eval_tokens": eval_tokens, "eval_loss_32": loss32, "eval_count_32": n32,
                   "eval_loss_128": loss128, "eval_count_128": n128,
                   "text_ids": text_ids, "text_loss_32": text_loss, "text_count_32": ntext}, f)
        f.write("\n")

if __name__ == "__main__":
    main()
