"""Writes the safetensors / Hugging Face directory fixtures for packages/checkpoint.

Run: /usr/bin/python3 tools/reference/safetensors_fixture.py   (PyTorch only; writes test/fixtures/ckpt_*)

The `safetensors` Python package is not installed on the build machine, so the files are written by
`save_file` below, a transcription of the format the reference implementation (huggingface/safetensors,
`serialize` in Rust) emits: tensors sorted by (dtype descending in the Rust Dtype enum's order, name), compact JSON with
__metadata__ first, the header padded with spaces to a multiple of 8, data back to back. That is also what
transformers' save_pretrained produces (metadata {"format": "pt"}). The values, and every f32 -> bf16 / f16
rounding, come from PyTorch (`tensor.to(dtype)`), which is what the tests check our conversions against.
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures")
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int32: "I32"}
# Declaration order of the reference's `enum Dtype` (derive(Ord)); its writer sorts by this, descending, then by name.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()  # raw 16-bit patterns, little-endian
    return t.numpy().tobytes()


def save_file(tensors, path, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-DTYPE_ORDER.index(ST_DTYPE[kv[1].dtype]), kv[0]))
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in items:
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def special_values():
    # Rounding edge cases for both 16-bit formats: ties, overflow to inf, f16 subnormals and underflow.
    vals = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"),
            65504.0, 65519.0, 65520.0, 65536.0, 1e-8, 6e-8, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14,
            1e-40, 3.0e38, -3.0e38, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -9, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -12,
            0.1, -0.3, 1.0 / 3.0]
    return torch.tensor(vals, dtype=torch.float32)


def tiny_llama_state_dict(g, V=64, C=16, H=40, L=2, NH=4, NKV=2):
    HD = C // NH
    sd = {"model.embed_tokens.weight": torch.randn(V, C, generator=g)}
    for i in range(L):
        p = f"model.layers.{i}"
        sd[f"{p}.input_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
        sd[f"{p}.self_attn.q_proj.weight"] = 0.2 * torch.randn(NH * HD, C, generator=g)
        sd[f"{p}.self_attn.k_proj.weight"] = 0.2 * torch.randn(NKV * HD, C, generator=g)
        sd[f"{p}.self_attn.v_proj.weight"] = 0.2 * torch.randn(NKV * HD, C, generator=g)
        sd[f"{p}.self_attn.o_proj.weight"] = 0.2 * torch.randn(C, NH * HD, generator=g)
        sd[f"{p}.post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
        sd[f"{p}.mlp.gate_proj.weight"] = 0.2 * torch.randn(H, C, generator=g)
        sd[f"{p}.mlp.up_proj.weight"] = 0.2 * torch.randn(H, C, generator=g)
        sd[f"{p}.mlp.down_proj.weight"] = 0.2 * torch.randn(C, H, generator=g)
    sd["model.norm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
    sd["lm_head.weight"] = torch.randn(V, C, generator=g)
    cfg = {  # the fields transformers' LlamaConfig.to_json_string writes that matter here
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": C,
        "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
        "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "rope_scaling": None,
    }
    return sd, cfg


def hf_dir(name, sd, cfg, dtype, shards=1):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    sd = {k: v.to(dtype) for k, v in sd.items()}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({**cfg, "torch_dtype": str(dtype).replace("torch.", "")}, f, indent=2)
    if shards == 1:
        save_file(sd, os.path.join(d, "model.safetensors"), {"format": "pt"})
        return
    names = list(sd)  # HF module order, split into consecutive chunks like save_pretrained's max_shard_size
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in names[s * per:(s + 1) * per]}
        save_file(part, os.path.join(d, fname), {"format": "pt"})
        for k, v in part.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)


def main():
    g = torch.Generator().manual_seed(1234)
    # Per-dtype files: the same values written as F32, and as PyTorch's BF16 / F16 roundings of them.
    base = {
        "randn": torch.randn(7, 9, generator=g) * 3,
        "wide": torch.randn(64, generator=g) * torch.logspace(-30, 30, 64),  # exercises every exponent range
        "special": special_values(),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
    }
    for dtype, tag in [(torch.float32, "f32"), (torch.bfloat16, "bf16"), (torch.float16, "f16")]:
        save_file({k: v.to(dtype) for k, v in base.items()}, os.path.join(OUT, f"ckpt_pt_{tag}.safetensors"), {"format": "pt"})
    # Mixed dtypes with odd sizes: the reference's sort gives F32, I32, BF16, F16; an I32 tensor since fixtures use them.
    mixed = {"a_f16": torch.randn(3, generator=g).half(), "b_bf16": torch.randn(5, generator=g).bfloat16(),
             "c_f32": torch.randn(2, 3, generator=g), "ids": torch.arange(-3, 4, dtype=torch.int32)}
    save_file(mixed, os.path.join(OUT, "ckpt_pt_mixed.safetensors"))

    sd, cfg = tiny_llama_state_dict(g)
    hf_dir("ckpt_hf_f32", sd, cfg, torch.float32)
    hf_dir("ckpt_hf_bf16", sd, cfg, torch.bfloat16)
    hf_dir("ckpt_hf_sharded", sd, cfg, torch.float32, shards=3)
    print("wrote", sorted(n for n in os.listdir(OUT) if n.startswith("ckpt_")))


if __name__ == "__main__":
    main()
