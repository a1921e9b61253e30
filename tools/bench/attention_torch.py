"""PyTorch eager peer for packages/attention/bench/attention.bench.ts.

Reads a JSON request on stdin:
  {"threads": n, "attention": [[B,T,NH,NKV,HD], ...], "block": [[B,T,C,NH,NKV], ...], "min_time": s}
and prints one JSON line with the median seconds of forward and backward for each shape:
  attention: softmax(QK^T/sqrt(HD) + causal mask) V in eager fp32, GQA by repeat_interleave of K/V
             (what Hugging Face's eager LlamaAttention does), inputs (B,NH,T,HD) with requires_grad;
  block:     the same plus q/k/v/o projections and rotate-half RoPE.
Exits with code 3 and a message on stderr if torch is missing.
"""
import json
import math
import sys
import time

try:
    import torch
except ImportError:
    print("torch is not installed", file=sys.stderr)
    sys.exit(3)


def timeit(fn, min_time):
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > min_time and len(times) >= 3:
            break
    times.sort()
    return times[len(times) // 2]


def attn(q, k, v, NH, NKV, mask):
    HD = q.shape[-1]
    k = k.repeat_interleave(NH // NKV, dim=1)
    v = v.repeat_interleave(NH // NKV, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
    s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def bench_attention(B, T, NH, NKV, HD, min_time):
    q = torch.randn(B, NH, T, HD, requires_grad=True)
    k = torch.randn(B, NKV, T, HD, requires_grad=True)
    v = torch.randn(B, NKV, T, HD, requires_grad=True)
    dout = torch.randn(B, NH, T, HD)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    def fwd():
        with torch.no_grad():
            attn(q, k, v, NH, NKV, mask)

    def fwdbwd():
        q.grad = k.grad = v.grad = None
        attn(q, k, v, NH, NKV, mask).backward(dout)

    f = timeit(fwd, min_time)
    fb = timeit(fwdbwd, min_time)
    return {"fwd": f, "bwd": max(fb - f, 0.0), "fwdbwd": fb}


def bench_block(B, T, C, NH, NKV, min_time):
    HD = C // NH
    x = torch.randn(B, T, C, requires_grad=True)
    ws = [torch.randn(o, C, requires_grad=True) * 0.02 for o in (NH * HD, NKV * HD, NKV * HD)]
    ws = [w.detach().requires_grad_(True) for w in ws]
    wo = (torch.randn(C, NH * HD) * 0.02).requires_grad_(True)
    inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).float() / HD))
    emb = torch.cat([torch.outer(torch.arange(T).float(), inv)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    dout = torch.randn(B, T, C)

    def block():
        q = (x @ ws[0].T).view(B, T, NH, HD).transpose(1, 2)
        k = (x @ ws[1].T).view(B, T, NKV, HD).transpose(1, 2)
        v = (x @ ws[2].T).view(B, T, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = attn(q, k, v, NH, NKV, mask).transpose(1, 2).reshape(B, T, C)
        return y @ wo.T

    def fwd():
        with torch.no_grad():
            block()

    def fwdbwd():
        for w in (x, *ws, wo):
            w.grad = None
        block().backward(dout)

    f = timeit(fwd, min_time)
    fb = timeit(fwdbwd, min_time)
    return {"fwd": f, "bwd": max(fb - f, 0.0), "fwdbwd": fb}


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(int(req.get("threads", 1)))
    mt = float(req.get("min_time", 0.5))
    res = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "attention": [bench_attention(*s, mt) for s in req.get("attention", [])],
        "block": [bench_block(*s, mt) for s in req.get("block", [])],
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
