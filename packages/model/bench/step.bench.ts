/**
 * The whole training step (zeroGrad + forward + loss + backward + clipping + AdamW) beside the same
 * step in PyTorch CPU eager (tools/bench/step_torch.py over tools/reference/llama.py, same config,
 * same thread count): tokens/s, interleaved in one process tree, and peak resident memory, each side
 * in its own fresh process running the same steps (model + AdamW state + a few steps).
 *
 * Cases: the 15M preset (dim 288, 6 layers, 6/2 heads, hidden 768, vocab 32000) at B=8, T=256, and
 * the 110M preset (dim 768, 12 layers, 12/4 heads) at B=2, T=1024.
 *
 *   bun packages/model/bench/step.bench.ts                 # both cases
 *   bun packages/model/bench/step.bench.ts micro 4 64      # one preset / B / T
 *   BENCH_ROUNDS=3 BENCH_THREADS=2 bun run bench step
 *   BENCH_RSS=0 ...                                        # time only (skip the memory processes)
 *
 * Memory: each side reports its RSS once the bare runtime is up (Bun with the kernel library loaded;
 * python with torch imported) and its whole-process peak (VmHWM, = getrusage ru_maxrss on Linux)
 * after BENCH_RSS_STEPS steps (default 3; 2 for 110M), so the table shows both the total and the
 * part above that baseline. Ours also prints Model.plan's arena bytes, which is where it goes.
 */
import { flopsPerToken, getPreset, type ModelConfig } from "@tinyllama/config";
import { getBackend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { benchWaitPolicy, cpuModel, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";
import { mib, procMemory, runRssChild, type RssReport } from "../../../tools/bench/rss.ts";
import { interleavedWithPeer, ratioLine, startTorchPeer, type TorchPeer } from "../../../tools/bench/torch_peer.ts";

interface Case {
  preset: string;
  B: number;
  T: number;
  /** tokens/s target vs PyTorch (issue 7) */
  target: number;
  /** steps each memory process runs */
  rssSteps: number;
}

const threads = Number(process.env.BENCH_THREADS ?? 2);
const waitPolicy = benchWaitPolicy(); // before getBackend() loads libgomp; the PyTorch child gets the same
const be = getBackend();
be.threads = threads;

/** Random tokens and targets below V from a fixed LCG (throughput does not depend on their values). */
function batch(cfg: ModelConfig, B: number, T: number): { tokens: Int32Array; targets: Int32Array } {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % cfg.vocabSize);
  return { tokens: Int32Array.from({ length: B * T }, rand), targets: Int32Array.from({ length: B * T }, rand) };
}

/** A model, its AdamW and one step function over a fixed batch; free() releases all of it. */
function makeStep(cfg: ModelConfig, B: number, T: number) {
  const model = Model.create(cfg, { B, T, seed: 1 });
  const { tokens, targets } = batch(cfg, B, T);
  const adam = new AdamW(model.params, model.grads!, { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const state = { loss: 0 };
  const step = () => {
    model.zeroGrad();
    state.loss = model.forward(tokens, targets);
    model.backward();
    adam.step(4e-4, clipFactor(gradNorm(model.grads!), 1.0));
  };
  const free = () => {
    adam.free();
    model.free();
  };
  return { model, step, state, free };
}

// --rss-child preset B T steps: the memory side of ours, in a fresh process (see the header).
if (process.argv[2] === "--rss-child") {
  const [preset, B, T, steps] = [process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6])];
  const cfg = getPreset(preset);
  const baseline = procMemory().rssKiB;
  const s = makeStep(cfg, B, T);
  for (let i = 0; i < steps; i++) s.step();
  const peak = procMemory().peakKiB;
  const plan = Model.plan(cfg, { B, T });
  console.log(JSON.stringify({ baselineKiB: baseline, peakKiB: peak, plan, loss: s.state.loss } satisfies RssReport));
  s.free();
  process.exit(0);
}

const argv = process.argv.slice(2);
const CASES: Case[] = argv.length
  ? [{ preset: argv[0]!, B: Number(argv[1] ?? 8), T: Number(argv[2] ?? 256), target: argv[0] === "tinyllama-110m" ? 2.0 : 3.0, rssSteps: 3 }]
  : [
      { preset: "tinyllama-15m", B: 8, T: 256, target: 3.0, rssSteps: 3 },
      { preset: "tinyllama-110m", B: 2, T: 1024, target: 2.0, rssSteps: 2 },
    ];
const measureRss = process.env.BENCH_RSS !== "0";

console.log(`date: ${new Date().toISOString()}`);
console.log(`cpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}`);
console.log(`ours: ${be.buildInfo}`);

interface Memory {
  ours: RssReport | string;
  peer: RssReport | string;
}

/** Both sides' baseline and peak RSS, each in a fresh process, one after the other. */
function memory(c: Case): Memory {
  const steps = Number(process.env.BENCH_RSS_STEPS ?? c.rssSteps);
  const env = { OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? "passive", BENCH_THREADS: String(threads) };
  const ours = runRssChild([process.execPath, import.meta.path, "--rss-child", c.preset, String(c.B), String(c.T), String(steps)], env);
  const python = process.env.PYTHON ?? "/usr/bin/python3";
  const script = new URL("../../../tools/bench/step_torch.py", import.meta.url).pathname;
  const args = JSON.stringify({ preset: c.preset, B: c.B, T: c.T });
  const peer = runRssChild([python, script, "step", "--rss", "--reps", String(steps), "--threads", String(threads), "--args", args], env);
  return { ours, peer };
}

const peer: TorchPeer | null = await startTorchPeer(threads);
if (peer) console.log(`peer: PyTorch ${peer.version} CPU eager, torch.set_num_threads(${threads})`);
const peerName = peer ? `PyTorch ${peer.version} eager, ${threads} threads` : null;
const rows: BenchRow[] = [];

for (const c of CASES) {
  const { preset, B, T } = c;
  const cfg = getPreset(preset);
  const caseName = `${preset.replace("tinyllama-", "")} B=${B} T=${T}`;

  // Memory first, while this process holds no model: the children then compete with nothing of ours.
  const mem = measureRss ? memory(c) : null;

  const s = makeStep(cfg, B, T);
  const t = await interleavedWithPeer(s.step, peer, "step", { preset, B, T }, { rounds: Number(process.env.BENCH_ROUNDS ?? 3), reps: 1 });
  const tokensPerStep = B * T;
  const flops = flopsPerToken(cfg, T) * tokensPerStep;
  const fmt = (sec: number) => `${(tokensPerStep / sec).toFixed(0)} tok/s (${(sec * 1000).toFixed(0)} ms/step, ${(flops / sec / 1e9).toFixed(1)} GFLOP/s)`;
  console.log(`\nstep ${preset} B=${B} T=${T} (${(s.model.numParameters / 1e6).toFixed(1)}M params, loss ${s.state.loss.toFixed(3)})`);
  console.log(`  ours:    ${fmt(t.ours)}   samples ${t.oursSamples.map((x) => x.toFixed(2)).join(" ")}`);
  if (t.peer !== null) {
    console.log(`  pytorch: ${fmt(t.peer)}   samples ${t.peerSamples.map((x) => x.toFixed(2)).join(" ")}`);
    console.log(ratioLine(t));
  }
  s.free();
  rows.push({
    component: "training step",
    case: `${caseName} tok/s`,
    unit: "tok/s",
    ours: tokensPerStep / t.ours,
    peer: t.peer === null ? null : tokensPerStep / t.peer,
    peerName,
    higherIsBetter: true,
    target: c.target,
    gflops: flops / t.ours / 1e9,
    note: t.peerCpu === null ? "peer unavailable" : `CPU-time ratio ${(t.peerCpu / t.oursCpu).toFixed(2)}x`,
  });

  if (mem) {
    const { ours, peer: p } = mem;
    console.log(`  peak RSS, each side a fresh process (model + AdamW + ${process.env.BENCH_RSS_STEPS ?? c.rssSteps} steps):`);
    const line = (who: string, r: RssReport | string) =>
      typeof r === "string"
        ? `    ${who}: unavailable (${r})`
        : `    ${who}: peak ${mib(r.peakKiB)} MiB, runtime baseline ${mib(r.baselineKiB)} MiB, above baseline ${mib(r.peakKiB - r.baselineKiB)} MiB`;
    console.log(line("ours   ", ours));
    console.log(line("pytorch", p));
    if (typeof ours !== "string") {
      const plan = ours.plan as ReturnType<typeof Model.plan>;
      const adam = 2 * plan.params;
      console.log(
        `    ours by arena: params ${mib(plan.params / 1024)} + grads ${mib(plan.grads / 1024)} + AdamW m,v ${mib(adam / 1024)} + activations ${mib(plan.acts / 1024)} ` +
          `(logits ${plan.logitsRows} x ${cfg.vocabSize}: ${mib((plan.logitsRows * cfg.vocabSize * 4) / 1024)}) = ${mib((plan.params + plan.grads + adam + plan.acts) / 1024)} MiB`,
      );
    }
    if (typeof ours !== "string" && typeof p !== "string") {
      const tot = ours.peakKiB / p.peakKiB, above = (ours.peakKiB - ours.baselineKiB) / (p.peakKiB - p.baselineKiB);
      console.log(`    ratio ours / PyTorch (target <= 0.5): whole process ${tot.toFixed(2)}x, above baseline ${above.toFixed(2)}x`);
    }
    const okO = typeof ours !== "string", okP = typeof p !== "string";
    const why = [okO ? "" : `ours failed: ${ours}`, okP ? "" : `peer failed: ${p}`].filter(Boolean).join("; ");
    rows.push({
      component: "training step",
      case: `${caseName} peak RSS (whole process)`,
      unit: "MiB peak RSS",
      ours: okO ? ours.peakKiB / 1024 : NaN,
      peer: okP ? p.peakKiB / 1024 : null,
      peerName,
      higherIsBetter: false,
      target: 2.0,
      note: why || `fresh process each; baselines ${okO ? mib(ours.baselineKiB) : "?"} (Bun + kernels) / ${okP ? mib(p.baselineKiB) : "?"} MiB (python + torch)`,
    });
    rows.push({
      component: "training step",
      case: `${caseName} peak RSS above runtime baseline`,
      unit: "MiB",
      ours: okO ? (ours.peakKiB - ours.baselineKiB) / 1024 : NaN,
      peer: okP ? (p.peakKiB - p.baselineKiB) / 1024 : null,
      peerName,
      higherIsBetter: false,
      target: 2.0,
      note: why || "peak minus RSS of the bare runtime (Bun with the kernel library loaded / python with torch imported)",
    });
  }
}
peer?.close();
reportRows(rows.filter((r) => Number.isFinite(r.ours)));
