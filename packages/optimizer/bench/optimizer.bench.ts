/**
 * AdamW and gradient-norm throughput: the fused kernel against the machine's memcpy bandwidth
 * (tl_copy, same run) and against PyTorch's torch.optim.AdamW / vector_norm on the same number of
 * parameters (python3 + torch, same machine, same thread count). Run:
 *   ./node_modules/.bin/bun packages/optimizer/bench/optimizer.bench.ts [millions of params, default 16; BENCH_QUICK=1: 4]
 * Threads: $BENCH_THREADS, else the backend's default ($TINYLLAMA_THREADS or all cores).
 */
import { adamwStep, getBackend, sumsq } from "@tinyllama/kernels";
import { randn, mulberry32 } from "@tinyllama/testing";
import { benchQuick, peerMissing, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const N = Math.round(Number(process.argv[2] ?? (benchQuick() ? 4 : 16)) * 1e6);
const REPS = benchQuick() ? 7 : 15;
const be = getBackend();
if (process.env.BENCH_THREADS) be.threads = Number(process.env.BENCH_THREADS);
const threads = be.threads;

/** Best of REPS runs, in ms: on a shared machine the minimum is the least disturbed measurement (medians printed too). */
const medians: Record<string, number> = {};
function best(name: string, f: () => void): number {
  f(); // warm-up (page faults, library load)
  const ts: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  medians[name] = ts[REPS >> 1]!;
  return ts[0]!;
}

const p = be.fromArray(randn(N, mulberry32(1), 0.02)), g = be.fromArray(randn(N, mulberry32(2), 1e-3));
const m = be.tensor([N]), v = be.tensor([N]), dst = be.tensor([N]);
let step = 0;
const tAdam = best("adam", () => adamwStep(p, g, m, v, { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5, step: ++step }));
const tNorm = best("norm", () => sumsq(g));
const tCopy = best("copy", () => be.copy(dst, g));
const GB = 1e9;
const bwAdam = (28 * N) / (tAdam / 1e3) / GB; // reads p, g, m, v; writes p, m, v
const bwNorm = (4 * N) / (tNorm / 1e3) / GB;
const bwCopy = (8 * N) / (tCopy / 1e3) / GB;

// PyTorch's best CPU AdamW (foreach on or off, whichever is faster here) and the f32 per-tensor norm
// that clip_grad_norm_ uses (ours accumulates in f64). Note: Debian's python3-torch 1.13 build runs
// tensor sqrt at ~65 ns/element on this machine, which dominates its AdamW time.
const py = `
import time, torch
torch.set_num_threads(${threads})
N=${N}
p=torch.nn.Parameter(torch.randn(N)*0.02); p.grad=torch.randn(N)*1e-3
def best(f):
    f(); ts=[]
    for _ in range(${Math.min(REPS, 5)}):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return min(ts)*1e3
adam = min(best(torch.optim.AdamW([p], lr=4e-4, betas=(0.9,0.95), eps=1e-8, weight_decay=0.1, foreach=fe).step) for fe in (False, True))
opt = torch.optim.AdamW([p], lr=4e-4, betas=(0.9,0.95), eps=1e-8, weight_decay=0.1, foreach=True)
def clip_and_step():
    torch.nn.utils.clip_grad_norm_([p], 1.0); opt.step()
print(adam, best(lambda: torch.linalg.vector_norm(p.grad)), best(clip_and_step), torch.__version__)
`;
let peer: { adam: number; norm: number; clipStep: number; version: string } | null = null;
let missing: string | undefined;
try {
  const r = Bun.spawnSync(["/usr/bin/python3", "-c", py], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode === 0) {
    const [a, n, c, ver] = r.stdout.toString().trim().split(/\s+/);
    peer = { adam: Number(a), norm: Number(n), clipStep: Number(c), version: ver! };
  } else missing = peerMissing("PyTorch", `${r.stderr.toString().trim().split("\n").pop()} (apt-get install python3-torch libopenblas0-pthread)`);
} catch (e) {
  missing = peerMissing("PyTorch", `${e} (apt-get install python3-torch libopenblas0-pthread)`);
}

const f = (x: number) => x.toFixed(2);
console.log(`optimizer bench: ${N / 1e6}M fp32 params, ${threads} threads, ${be.buildInfo}; best of ${REPS} (median in brackets), load average ${(await Bun.file("/proc/loadavg").text().catch(() => "?")).split(" ")[0]}`);
console.log(`  memcpy (tl_copy)      ${f(tCopy)} ms [${f(medians.copy!)}]  ${f(bwCopy)} GB/s  (reference: glibc memcpy, read+write)`);
console.log(`  tl_adamw_step         ${f(tAdam)} ms [${f(medians.adam!)}]  ${f(bwAdam)} GB/s  = ${f(bwAdam / bwCopy)} x memcpy` + (peer ? `; torch ${peer.version} AdamW.step ${f(peer.adam)} ms -> ${f(peer.adam / tAdam)}x faster` : ""));
console.log(`  tl_sumsq (grad norm)  ${f(tNorm)} ms [${f(medians.norm!)}]  ${f(bwNorm)} GB/s  = ${f(bwNorm / bwCopy)} x memcpy` + (peer ? `; torch vector_norm (f32) ${f(peer.norm)} ms -> ${f(peer.norm / tNorm)}x faster` : ""));
if (peer) console.log(`  clip+step             ${f(tAdam + tNorm)} ms (norm + fused step, clip factor carried as gradScale); torch clip_grad_norm_ + step ${f(peer.clipStep)} ms -> ${f(peer.clipStep / (tAdam + tNorm))}x faster`);
const torchName = (what: string): string => `PyTorch ${peer?.version ?? ""} ${what}, ${threads} threads`.replace("  ", " ");
const common = { component: "optimizer", unit: "ms", higherIsBetter: false, ...(missing ? { peerMissing: missing } : {}) } as const;
const scoreRows: BenchRow[] = [
  { ...common, case: `AdamW step, ${N / 1e6}M fp32 params, best of ${REPS}`, ours: tAdam, peer: peer?.adam ?? null,
    peerName: torchName("torch.optim.AdamW.step (faster of foreach on/off)"), gbs: bwAdam,
    note: `${f(bwAdam / bwCopy)}x the GB/s of tl_copy (${f(bwCopy)} GB/s) in this run; GB/s = 28 bytes/param` },
  { ...common, case: `gradient global norm (sumsq), ${N / 1e6}M, best of ${REPS}`, ours: tNorm, peer: peer?.norm ?? null,
    peerName: torchName("torch.linalg.vector_norm (f32)"), gbs: bwNorm },
  { ...common, case: `clip 1.0 + AdamW step, ${N / 1e6}M, best of ${REPS}`, ours: tAdam + tNorm, peer: peer?.clipStep ?? null,
    peerName: torchName("clip_grad_norm_ + AdamW.step (foreach)"), gbs: (32 * N) / ((tAdam + tNorm) / 1e3) / GB,
    note: "ours: norm + fused step, clip factor carried as gradScale" },
];
reportRows(scoreRows);
for (const t of [p, g, m, v, dst]) t.buffer.free();
