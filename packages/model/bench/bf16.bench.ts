/**
 * bf16 mixed precision against fp32 on this CPU, interleaved in one process:
 *   1. the Linear forward at a TinyLlama-1.1B MLP shape: bf16 operands with fp32 results
 *      (kernels/cpu/bf16.c: AVX512_BF16 vdpbf16ps where the CPU has it) vs the fp32 GEMM;
 *   2. the whole training step (zeroGrad + forward + backward + clipping + AdamW) of a preset in
 *      precision "bf16" vs "fp32".
 * The peer is our own fp32 path: the ratio says what bf16 buys (or costs) on this machine.
 *
 *   bun packages/model/bench/bf16.bench.ts                # 15M step at B=8 T=256, matmul 1024x2048->5632
 *   bun packages/model/bench/bf16.bench.ts micro 4 64
 */
import { flopsPerToken, getPreset } from "@tinyllama/config";
import { castF32ToBf16, getBackend, matmulForward, matmulForwardBf16, type Precision } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { benchWaitPolicy, cpuModel, interleaved, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const [preset = "tinyllama-15m", bArg = "8", tArg = "256"] = process.argv.slice(2);
const B = Number(bArg), T = Number(tArg);
const threads = Number(process.env.BENCH_THREADS ?? 2);
const waitPolicy = benchWaitPolicy();
const be = getBackend();
be.threads = threads;
const lib = be.buildInfo;
console.log(`date: ${new Date().toISOString()}`);
console.log(`cpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}`);
console.log(`ours: ${lib}`);
const rows: BenchRow[] = [];

// ---- 1. the Linear forward
{
  const [N, C, OC] = [1024, 2048, 5632];
  const x = be.tensor([N, C]), w = be.tensor([OC, C]), y = be.tensor([N, OC]);
  const xb = be.tensor([N, C], "bf16"), wb = be.tensor([OC, C], "bf16"), yb = be.tensor([N, OC]);
  const fill = (t: typeof x, seed: number) => t.write(Float32Array.from({ length: t.numel }, (_, i) => Math.sin(i * 0.37 + seed) * 0.1));
  fill(x, 1);
  fill(w, 2);
  castF32ToBf16(xb, x);
  castF32ToBf16(wb, w);
  const t = interleaved(() => matmulForwardBf16(yb, xb, wb), () => matmulForward(y, x, w), { rounds: Number(process.env.BENCH_ROUNDS ?? 5) });
  const gf = (s: number) => (2 * N * C * OC) / s / 1e9;
  console.log(`\nLinear forward ${N}x${C} -> ${OC}`);
  console.log(`  bf16 in, fp32 out: ${(t.ours * 1e3).toFixed(1)} ms, ${gf(t.ours).toFixed(1)} GFLOP/s`);
  console.log(`  fp32:              ${(t.peer! * 1e3).toFixed(1)} ms, ${gf(t.peer!).toFixed(1)} GFLOP/s`);
  console.log(`  bf16 / fp32 speed: ${(t.peer! / t.ours).toFixed(2)}x (best/best ${(t.peerBest! / t.oursBest).toFixed(2)}x)`);
  rows.push({ component: "matmul", case: `bf16 Linear fwd ${N}x${C}->${OC} vs our fp32`, unit: "GFLOP/s", ours: gf(t.ours), peer: gf(t.peer!), peerName: "our fp32 GEMM, same run", higherIsBetter: true, note: `${gf(t.ours).toFixed(0)} GFLOP/s; bf16 rates are not set against the fp32 matmul ceiling` });
  for (const u of [x, w, y, xb, wb, yb]) u.buffer.free();
}

// ---- 2. the training step
{
  const cfg = getPreset(preset);
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % cfg.vocabSize);
  const tokens = Int32Array.from({ length: B * T }, rand), targets = Int32Array.from({ length: B * T }, rand);
  const make = (precision: Precision) => {
    const model = Model.create(cfg, { B, T, seed: 1, precision });
    const adam = new AdamW(model.params, model.grads!, { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const out = { model, adam, loss: 0, step: () => {} };
    out.step = () => {
      model.zeroGrad();
      out.loss = model.forward(tokens, targets);
      model.backward();
      adam.step(4e-4, clipFactor(gradNorm(model.grads!), 1.0));
    };
    return out;
  };
  const h = make("bf16"), f = make("fp32");
  const t = interleaved(h.step, f.step, { rounds: Number(process.env.BENCH_ROUNDS ?? 3) });
  const tps = (sec: number) => (B * T) / sec;
  const gf = (sec: number) => (flopsPerToken(cfg, T) * B * T) / sec / 1e9;
  console.log(`\ntraining step ${preset} B=${B} T=${T} (loss bf16 ${h.loss.toFixed(4)}, fp32 ${f.loss.toFixed(4)})`);
  console.log(`  bf16: ${tps(t.ours).toFixed(0)} tok/s (${(t.ours * 1e3).toFixed(0)} ms/step, ${gf(t.ours).toFixed(1)} GFLOP/s)   samples ${t.oursSamples.map((x) => x.toFixed(2)).join(" ")}`);
  console.log(`  fp32: ${tps(t.peer!).toFixed(0)} tok/s (${(t.peer! * 1e3).toFixed(0)} ms/step, ${gf(t.peer!).toFixed(1)} GFLOP/s)   samples ${t.peerSamples.map((x) => x.toFixed(2)).join(" ")}`);
  console.log(`  bf16 / fp32 speed: ${(t.peer! / t.ours).toFixed(2)}x (best/best ${(t.peerBest! / t.oursBest).toFixed(2)}x)`);
  rows.push({ component: "training step", case: `${preset} B=${B} T=${T}, bf16 mixed precision vs our fp32`, unit: "tok/s", ours: tps(t.ours), peer: tps(t.peer!), peerName: "our fp32 step, same run", higherIsBetter: true, note: `${gf(t.ours).toFixed(0)} GFLOP/s; bf16 rates are not set against the fp32 matmul ceiling` });
  for (const m of [h, f]) {
    m.adam.free();
    m.model.free();
  }
}
reportRows(rows);
