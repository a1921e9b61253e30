"""PyTorch CPU eager peer for the model benchmarks (packages/model/bench, packages/mlp/bench).

Same config, same batch shape and the same thread count as ours (torch.set_num_threads), fp32,
the plain Llama of tools/reference/llama.py. Two ways to run it:

  /usr/bin/python3 tools/bench/step_torch.py step --threads 2 --reps 5     # one-off timing
  /usr/bin/python3 tools/bench/step_torch.py --serve --threads 2           # driven by a bench
  /usr/bin/python3 tools/bench/step_torch.py step --rss --reps 3 --args '{"preset": "tinyllama-15m", "B": 8, "T": 256}'

--rss (run in a fresh process): prints one JSON line {"baselineKiB", "peakKiB"}: the resident set
once torch is imported and its thread count set, and the whole-process peak (VmHWM, which is
getrusage's ru_maxrss on Linux) after building the component and running it --reps times.

--serve reads requests from stdin, one JSON object a line ({"component": "step", "reps": 3,
"args": {...}}), and answers each with one JSON line {"seconds": [wall time per call], "cpu_seconds": [process CPU time
per call]}. The TypeScript
bench keeps this process alive and alternates short blocks of ours and of PyTorch, so load from
other users of the machine lands on both sides alike.

Components (args): step (preset, B, T): the whole training step, zero_grad + forward + loss +
backward + global-norm clipping + AdamW;
mlp (B, T, dim, hiddenDim): the SwiGLU block forward + backward; rmsnorm (N, C): forward + backward;
crossentropy (N, V): F.cross_entropy forward + backward over (N, V) logits.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import llama  # noqa: E402
from procmem import proc_memory  # noqa: E402  (this folder is on sys.path: the scripts run as files)


def make_step(preset="tinyllama-15m", B=8, T=256, seed=0):
    torch.manual_seed(seed)
    cfg = llama.PRESETS[preset]
    model = llama.init_tinyllama_(llama.LlamaForCausalLM(cfg), seed)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg["vocabSize"], (B, T), generator=g)
    targets = torch.randint(0, cfg["vocabSize"], (B, T), generator=g)

    # AdamW as TinyLlama (and our trainer) runs it: decay on 2-D weights only, global-norm clip 1.0
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=4e-4, betas=(0.9, 0.95), eps=1e-8)

    def run():
        model.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return run


def make_mlp(B=8, T=256, dim=288, hiddenDim=768, seed=0):
    torch.manual_seed(seed)
    mlp = llama.MLP({"dim": dim, "hiddenDim": hiddenDim})
    x = torch.randn(B, T, dim, requires_grad=True)
    dout = torch.randn(B, T, dim)

    def run():
        mlp.zero_grad(set_to_none=True)
        x.grad = None
        mlp(x).backward(dout)

    return run


def make_rmsnorm(N=2048, C=288, eps=1e-5, seed=0):
    torch.manual_seed(seed)
    norm = llama.RMSNorm(C, eps)
    x = torch.randn(N, C, requires_grad=True)
    dout = torch.randn(N, C)

    def run():
        norm.zero_grad(set_to_none=True)
        x.grad = None
        norm(x).backward(dout)

    return run


def make_crossentropy(N=2048, V=32000, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=g, requires_grad=True)
    targets = torch.randint(0, V, (N,), generator=g)

    def run():
        logits.grad = None
        F.cross_entropy(logits, targets, ignore_index=-100).backward()

    return run


MAKERS = {"step": make_step, "mlp": make_mlp, "rmsnorm": make_rmsnorm, "crossentropy": make_crossentropy}


def timed(run, reps):
    """Wall seconds and process CPU seconds (all threads) of each call."""
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def rss(component, args, reps):
    baseline, _ = proc_memory()
    run = MAKERS[component](**args)
    for _ in range(reps):
        run()
    _, peak = proc_memory()
    print(json.dumps({"baselineKiB": baseline, "peakKiB": peak, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


def serve():
    cache = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        key = json.dumps([req["component"], req.get("args", {})], sort_keys=True)
        if key not in cache:
            cache[key] = MAKERS[req["component"]](**req.get("args", {}))
        wall, cpu = timed(cache[key], int(req.get("reps", 1)))
        print(json.dumps({"seconds": wall, "cpu_seconds": cpu}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("component", nargs="?", default="step", choices=sorted(MAKERS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--rss", action="store_true", help="report baseline and peak RSS of --reps calls (fresh process)")
    ap.add_argument("--args", default="{}", help="JSON object of the component's arguments")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss:
        rss(a.component, json.loads(a.args), a.reps)
    elif a.serve:
        print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
        serve()
    else:
        run = MAKERS[a.component](**json.loads(a.args))
        run()  # warm-up
        secs, cpu = timed(run, a.reps)
        print(json.dumps({"component": a.component, "median_s": sorted(secs)[len(secs) // 2], "seconds": secs, "cpu_seconds": cpu}))
