"""Tiny random Llama + its PyTorch greedy continuation, the fixture for the GGUF / llama.cpp parity test.

Run: /usr/bin/python3 tools/reference/gguf_fixture.py   (PyTorch only; writes test/fixtures/ckpt_gguf_tiny/)

The model (V=512, C=64, H=176, L=2, NH=4, NKV=2) is saved as a Hugging Face directory (config.json +
model.safetensors in f32) with a synthetic SentencePiece-style vocabulary (tokenizer_gguf.json: pieces, scores,
types; <unk> <s> </s>, the 256 byte pieces <0x00>..<0xFF>, then word pieces) so llama.cpp accepts it.
expected.json holds a fixed prompt and the greedy continuation of 20 tokens computed below by a plain PyTorch
Llama (HF semantics: rotate-half RoPE, GQA, RMSNorm, SwiGLU) in float64. The test converts the directory to GGUF,
runs it in llama.cpp (node-llama-cpp) and must produce the same 20 ids. llama.cpp computes in f32 with an f16
KV cache, so the seed is chosen such that every greedy step wins by a clear logit margin (min_margin), and
the continuation avoids the control tokens (llama.cpp stops at </s>).

`forward` below is a minimal private Llama (tools/reference/llama.py, the shared reference model, did not exist on
this branch when it was written). When llama.py is importable, the continuation is recomputed with its
LlamaForCausalLM too and must be identical, so the two references check each other.

It also trains a tiny SentencePiece BPE model (512 pieces, byte fallback, Llama 2's normalization settings) into
test/fixtures/ckpt_spm_tiny/: tokenizer.model, vocab.json (pieces, scores, types as SentencePiece reports them)
and tokenize.json (texts and SentencePiece's ids for them), so the test can check that a GGUF vocabulary tokenizes
in llama.cpp exactly as SentencePiece does, and that ggufVocab reproduces SentencePiece's pieces/scores/types.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_fixture import save_file  # noqa: E402  (same manual writer: `safetensors` is not installed)

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "ckpt_gguf_tiny")
V, C, H, L, NH, NKV, THETA, EPS, MAXT = 512, 64, 176, 2, 4, 2, 10000.0, 1e-5, 128
HD = C // NH
PROMPT = [1, 300, 301, 302, 310, 287, 450, 263, 400, 330]
STEPS = 20
MIN_MARGIN = 0.05  # smallest accepted gap between the best and second-best logit at any greedy step


def vocab():
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-")
    words = ["\u2581"] + chars + ["\u2581" + c for c in chars]
    i = 0
    while len(pieces) + len(words) < V:  # pad with two-letter pieces until the vocabulary is full
        a, b = chars[i // 26], chars[i % 26]
        words.append(a + b)
        i += 1
    pieces += words[: V - len(pieces)]
    types += [1] * (V - len(types))
    # SentencePiece BPE convention: specials and bytes score 0, merged pieces score by merge rank.
    scores = [0.0] * 259 + [-float(i) for i in range(V - 259)]
    assert len(set(pieces)) == V
    return pieces, scores, types


def init(seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std=1.0: torch.randn(*s, generator=g, dtype=torch.float64) * std  # noqa: E731
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
    # Round to f32 once: the file holds f32 and the reference must use exactly those values.
    return {k: v.float().double() for k, v in sd.items()}


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x, pos):  # x (T, nh, HD); HF rotate-half: dim i pairs with i + HD/2
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    f = torch.outer(pos.double(), inv)
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(sd, tokens):  # tokens (T,) -> logits (T, V)
    T = len(tokens)
    pos = torch.arange(T)
    x = sd["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), -math.inf, dtype=torch.float64).triu(1)
    for i in range(L):
        p = f"model.layers.{i}"
        h = rmsnorm(x, sd[f"{p}.input_layernorm.weight"])
        q = rope((h @ sd[f"{p}.self_attn.q_proj.weight"].T).view(T, NH, HD), pos)
        k = rope((h @ sd[f"{p}.self_attn.k_proj.weight"].T).view(T, NKV, HD), pos)
        v = (h @ sd[f"{p}.self_attn.v_proj.weight"].T).view(T, NKV, HD)
        k, v = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)  # GQA: head j uses kv j // (NH/NKV)
        att = torch.softmax(torch.einsum("thd,shd->hts", q, k) / math.sqrt(HD) + mask, -1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, C)
        x = x + o @ sd[f"{p}.self_attn.o_proj.weight"].T
        h = rmsnorm(x, sd[f"{p}.post_attention_layernorm.weight"])
        gate, up = h @ sd[f"{p}.mlp.gate_proj.weight"].T, h @ sd[f"{p}.mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ sd[f"{p}.mlp.down_proj.weight"].T
    return rmsnorm(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T


def greedy(sd, prompt, steps):
    ids, margins = list(prompt), []
    for _ in range(steps):
        logits = forward(sd, ids)[-1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        ids.append(int(logits.argmax()))
    return ids[len(prompt):], margins


SPM_OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "ckpt_spm_tiny")
SPM_TEXTS = ["Hello world", "the quick brown fox jumps over the lazy dog", "Numbers: 12345 and 3.14!",
             "caf\u00e9 \u00fcber na\u00efve", "\u65e5\u672c\u8a9e \U0001F600 emoji", "  leading and  double  spaces",
             "line one\nline two", "zzzzqqqq xylophone"]


def spm_fixture():
    import io
    import random

    import sentencepiece as spm

    rnd = random.Random(0)
    words = ("the of and to in is was he for it with as his on be at by had are but from or have an they which one you "
             "were her all she there would their we him been has when who will more no if out so said what up its about "
             "into than them can only other new some could time these two may then do first any my now such like our over "
             "man me even most made after also did many before must through back years where much your way well down "
             "should because each just those people how too little state good very make world still own see men work "
             "long get here between both life being under never day same another know while last might us great old year "
             "off come since against go came right used take three").split()
    lines = [" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 15))).capitalize() + rnd.choice([".", "!", "?", ","])
             for _ in range(3000)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=V, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(n)]
    os.makedirs(SPM_OUT, exist_ok=True)
    with open(os.path.join(SPM_OUT, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(SPM_OUT, "vocab.json"), "w") as f:
        json.dump({"tokens": [sp.id_to_piece(i) for i in range(n)], "scores": [sp.get_score(i) for i in range(n)],
                   "types": types, "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id()}, f, ensure_ascii=False)
    with open(os.path.join(SPM_OUT, "tokenize.json"), "w") as f:
        json.dump([{"text": t, "ids": sp.encode(t)} for t in SPM_TEXTS], f, ensure_ascii=False)
    print(f"sentencepiece: {n} pieces; {SPM_TEXTS[1]!r} -> {sp.encode(SPM_TEXTS[1])}")


def cross_check(sd, cont):
    try:
        import llama  # tools/reference/llama.py, the shared reference model
    except ImportError:
        print("tools/reference/llama.py not found: continuation not cross-checked")
        return
    cfg = dict(vocabSize=V, dim=C, hiddenDim=H, nLayers=L, nHeads=NH, nKvHeads=NKV, maxSeqLen=MAXT, ropeTheta=THETA,
               normEps=EPS, tieEmbeddings=False, bosId=1, eosId=2)
    model = llama.LlamaForCausalLM(cfg).double()
    model.load_state_dict(sd, strict=True)
    ids = list(PROMPT)
    with torch.no_grad():
        for _ in range(STEPS):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    assert ids[len(PROMPT):] == cont, f"llama.py disagrees: {ids[len(PROMPT):]} vs {cont}"
    print("continuation cross-checked with tools/reference/llama.py")


def main():
    spm_fixture()
    pieces, scores, types = vocab()
    for seed in range(100):
        sd = init(seed)
        cont, margins = greedy(sd, PROMPT, STEPS)
        if min(margins) >= MIN_MARGIN and min(cont) >= 3 and len(set(cont)) > 3:
            break
    else:
        raise SystemExit("no seed gave clear greedy margins")
    cross_check(sd, cont)
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.float() for k, v in sd.items()}, os.path.join(OUT, "model.safetensors"), {"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": C,
           "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "max_position_embeddings": MAXT, "rope_theta": THETA, "rms_norm_eps": EPS, "hidden_act": "silu",
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(OUT, "tokenizer_gguf.json"), "w") as f:
        json.dump({"tokens": pieces, "scores": scores, "types": types, "bos_id": 1, "eos_id": 2, "unk_id": 0,
                   "add_bos": True, "add_eos": False}, f, ensure_ascii=False)
    # Last-position logits of the prompt too, for a looser numeric check when the ids disagree.
    logits = forward(sd, PROMPT)[-1]
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"seed": seed, "prompt": PROMPT, "continuation": cont, "min_margin": min(margins),
                   "prompt_last_logits": [round(float(x), 6) for x in logits]}, f)
    print(f"seed {seed}: continuation {cont}, min margin {min(margins):.4f}")


if __name__ == "__main__":
    main()
