"""A plain PyTorch Llama (the architecture of Llama 2 / TinyLlama), written to be read.

Same math and the same parameter names as Hugging Face's LlamaForCausalLM, without the
transformers library: RMSNorm with eps, rotate-half RoPE with fp32 tables built as HF builds them,
grouped-query attention by repeat_interleave of K/V, SwiGLU MLP, untied LM head, no biases.
Parameters are registered in the order of @tinyllama/config's parameterShapes, so
`named_parameters()` lists them exactly as the TypeScript model's arena does.

Used by the fixture writers in tools/reference/ and the PyTorch peer in tools/bench/step_torch.py.
Config keys are the TypeScript ModelConfig's (vocabSize, dim, hiddenDim, nLayers, ...).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# TinyLlama's shapes at the scales the project uses (mirrors packages/config/src/presets.ts).
_LLAMA = dict(ropeTheta=10000.0, normEps=1e-5, tieEmbeddings=False, bosId=1, eosId=2)
PRESETS = {
    "tinyllama-1.1b": dict(_LLAMA, vocabSize=32000, dim=2048, hiddenDim=5632, nLayers=22, nHeads=32, nKvHeads=4, maxSeqLen=2048),
    "tinyllama-15m": dict(_LLAMA, vocabSize=32000, dim=288, hiddenDim=768, nLayers=6, nHeads=6, nKvHeads=2, maxSeqLen=256),
    "tinyllama-42m": dict(_LLAMA, vocabSize=32000, dim=512, hiddenDim=1376, nLayers=8, nHeads=8, nKvHeads=4, maxSeqLen=1024),
    "tinyllama-110m": dict(_LLAMA, vocabSize=32000, dim=768, hiddenDim=2048, nLayers=12, nHeads=12, nKvHeads=4, maxSeqLen=1024),
    "micro": dict(_LLAMA, vocabSize=512, dim=64, hiddenDim=176, nLayers=2, nHeads=4, nKvHeads=2, maxSeqLen=64),
}


class RMSNorm(nn.Module):
    """y = weight * (x / sqrt(mean(x^2) + eps)), computed in fp32 (HF LlamaRMSNorm)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


def rope_tables(head_dim, max_t, theta):
    """cos, sin (max_t, head_dim): angle(t, i) = t * theta^(-2i/HD), duplicated for both halves."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    t = torch.arange(max_t, dtype=inv_freq.dtype)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, NH, NKV = cfg["dim"], cfg["nHeads"], cfg["nKvHeads"]
        self.NH, self.NKV, self.HD = NH, NKV, C // NH
        self.q_proj = nn.Linear(C, NH * self.HD, bias=False)
        self.k_proj = nn.Linear(C, NKV * self.HD, bias=False)
        self.v_proj = nn.Linear(C, NKV * self.HD, bias=False)
        self.o_proj = nn.Linear(NH * self.HD, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.NH, self.HD).transpose(1, 2)  # (B,NH,T,HD)
        k = self.k_proj(x).view(B, T, self.NKV, self.HD).transpose(1, 2)  # (B,NKV,T,HD)
        v = self.v_proj(x).view(B, T, self.NKV, self.HD).transpose(1, 2)
        cos, sin = cos[:T][None, None], sin[:T][None, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA: query head h reads KV head h // (NH / NKV)
        k = k.repeat_interleave(self.NH // self.NKV, dim=1)
        v = v.repeat_interleave(self.NH // self.NKV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.HD)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        att = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v  # (B,NH,T,HD)
        return self.o_proj(att.transpose(1, 2).reshape(B, T, self.NH * self.HD))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg):
        super().__init__()
        C, H = cfg["dim"], cfg["hiddenDim"]
        self.gate_proj = nn.Linear(C, H, bias=False)
        self.up_proj = nn.Linear(C, H, bias=False)
        self.down_proj = nn.Linear(H, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm: x = x + attn(norm(x)); x = x + mlp(norm(x))."""

    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["dim"], cfg["normEps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["dim"], cfg["normEps"])
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocabSize"], cfg["dim"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["nLayers"])])
        self.norm = RMSNorm(cfg["dim"], cfg["normEps"])
        cos, sin = rope_tables(cfg["dim"] // cfg["nHeads"], cfg["maxSeqLen"], cfg["ropeTheta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, self.rope_cos, self.rope_sin)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert not cfg.get("tieEmbeddings", False), "this reference implements the untied head (TinyLlama)"
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["dim"], cfg["vocabSize"], bias=False)

    def forward(self, tokens, targets=None):
        """tokens (B,T) int64 -> logits (B,T,V), and the mean cross-entropy over targets != -100."""
        logits = self.lm_head(self.model(tokens))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1).long(), ignore_index=-100)
        return logits, loss


def init_tinyllama_(model, seed):
    """TinyLlama's initialisation: every weight matrix (embeddings and lm_head included) normal with
    std sqrt(2/(5C)); o_proj and down_proj std 1/sqrt(C)/n_layers; RMSNorm gains 1."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    C, L = cfg["dim"], cfg["nLayers"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                p.normal_(0.0, 1.0 / math.sqrt(C) / L, generator=g)
            else:
                p.normal_(0.0, math.sqrt(2.0 / (5 * C)), generator=g)
    return model
