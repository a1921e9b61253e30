"""PyTorch eager peer for packages/attention/bench/attention.bench.ts.

Reads a JSON request on stdin:
  {"threads": n, "attention": [[B,T,NH,NKV,HD], ...], "block": [[B,T,C,NH,NKV], ...], "min_time": s}
and prints one JSON line with the fastest seconds of forward and of backward for each shape (the
minimum over repeats, as the TypeScript side reports: on a shared machine it is the stable figure),
plus "cpu", the fastest process CPU seconds of forward + backward:
  attention: softmax(QK^T/sqrt(HD) + causal mask) V in eager fp32, GQA by repeat_interleave of K/V
             (what Hugging Face's eager LlamaAttention does), inputs (B,NH,T,HD) with requires_grad;
  block:     the same plus q/k/v/o projections and rotate-half RoPE.
Exits with code 3 and a message on stderr if torch is missing.

Memory mode, one fresh process per shape:
  python3 tools/bench/attention_torch.py --rss B T NH NKV HD [threads]
prints {"baselineKiB", "peakKiB"}: RSS once torch is imported, its threads set and one tiny
forward + backward (T=64) has started its thread pool and BLAS buffers, and the whole-process peak
(VmHWM = getrusage ru_maxrss on Linux) after building q, k, v, dout and the causal mask at T and
running forward + backward twice, so peak - baseline is what the op needed (allocator retention
included: that is resident too).
"""
import json
import math
import sys
import time
from procmem import proc_memory  # noqa: E402  (this folder is on sys.path: the scripts run as files)

try:
    import torch
except ImportError:
    print("torch is not installed", file=sys.stderr)
    sys.exit(3)


def timeit(fn, min_time):
    """(fastest wall seconds, fastest process CPU seconds over all threads)"""
    fn()  # warm-up
    walls, cpus, start = [], [], time.perf_counter()
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if time.perf_counter() - start > min_time and len(walls) >= 3:
            break
    return min(walls), min(cpus)


def fwd_bwd_times(run, leaves, dout, min_time):
    """Forward without autograd; backward alone, replayed over one retained graph."""

    def fwd():
        with torch.no_grad():
            run()

    out = run()

    def bwd():
        for t in leaves:
            t.grad = None
        out.backward(dout, retain_graph=True)

    (f, fc), (b, bc) = timeit(fwd, min_time), timeit(bwd, min_time)
    return {"fwd": f, "bwd": b, "fwdbwd": f + b, "cpu": fc + bc}


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

    return fwd_bwd_times(lambda: attn(q, k, v, NH, NKV, mask), (q, k, v), dout, min_time)


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

    return fwd_bwd_times(block, (x, *ws, wo), dout, min_time)


def rss(B, T, NH, NKV, HD, threads=1):
    torch.set_num_threads(threads)

    def run(T, reps):
        q = torch.randn(B, NH, T, HD, requires_grad=True)
        k = torch.randn(B, NKV, T, HD, requires_grad=True)
        v = torch.randn(B, NKV, T, HD, requires_grad=True)
        dout = torch.randn(B, NH, T, HD)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        for _ in range(reps):
            for t in (q, k, v):
                t.grad = None
            attn(q, k, v, NH, NKV, mask).backward(dout)

    # Warm-up at T=64 first: thread pools and BLAS buffers are the runtime's, not this op's.
    run(64, 1)
    baseline, _ = proc_memory()
    run(T, 2)
    _, peak = proc_memory()
    print(json.dumps({"baselineKiB": baseline, "peakKiB": peak, "torch": torch.__version__}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rss":
        rss(*(int(a) for a in sys.argv[2:]))
        return
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
