/**
 * The whole training step (zeroGrad + forward + loss + backward + clipping + AdamW) of the 15M preset (dim 288, 6
 * layers, 6 heads, 2 KV heads, hidden 768, vocab 32000) at B=8, T=256, in tokens/s, beside the same
 * step in PyTorch CPU eager (tools/bench/step_torch.py over tools/reference/llama.py, same config,
 * same thread count), interleaved in one process tree.
 *
 *   bun packages/model/bench/step.bench.ts                 # 15M, B=8, T=256
 *   BENCH_ROUNDS=3 BENCH_THREADS=2 bun run bench step
 *   bun packages/model/bench/step.bench.ts micro 4 64      # another preset / B / T
 */
import { flopsPerToken, getPreset } from "@tinyllama/config";
import { getBackend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { benchWaitPolicy, cpuModel } from "../../../tools/bench/harness.ts";
import { interleavedWithPeer, ratioLine, startTorchPeer } from "../../../tools/bench/torch_peer.ts";

const [preset = "tinyllama-15m", bArg = "8", tArg = "256"] = process.argv.slice(2);
const B = Number(bArg), T = Number(tArg);
const threads = Number(process.env.BENCH_THREADS ?? 2);
const waitPolicy = benchWaitPolicy(); // before getBackend() loads libgomp; the PyTorch child gets the same
const be = getBackend();
be.threads = threads;
const cfg = getPreset(preset);

console.log(`date: ${new Date().toISOString()}`);
console.log(`cpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}`);
console.log(`ours: ${be.buildInfo}`);

const model = Model.create(cfg, { B, T, seed: 1 });
let s = 12345;
const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % cfg.vocabSize);
const tokens = Int32Array.from({ length: B * T }, rand), targets = Int32Array.from({ length: B * T }, rand);
let loss = 0;
const adam = new AdamW(model.params, model.grads!, { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
const step = () => {
  model.zeroGrad();
  loss = model.forward(tokens, targets);
  model.backward();
  adam.step(4e-4, clipFactor(gradNorm(model.grads!), 1.0));
};

const peer = await startTorchPeer(threads);
if (peer) console.log(`peer: PyTorch ${peer.version} CPU eager, torch.set_num_threads(${threads})`);
const t = await interleavedWithPeer(step, peer, "step", { preset, B, T }, { rounds: Number(process.env.BENCH_ROUNDS ?? 3), reps: 1 });
peer?.close();

const tokensPerStep = B * T;
const flops = flopsPerToken(cfg, T) * tokensPerStep;
const fmt = (sec: number) => `${(tokensPerStep / sec).toFixed(0)} tok/s (${(sec * 1000).toFixed(0)} ms/step, ${(flops / sec / 1e9).toFixed(1)} GFLOP/s)`;
console.log(`\nstep ${preset} B=${B} T=${T} (${(model.numParameters / 1e6).toFixed(1)}M params, loss ${loss.toFixed(3)})`);
console.log(`  ours:    ${fmt(t.ours)}   samples ${t.oursSamples.map((x) => x.toFixed(2)).join(" ")}`);
if (t.peer !== null) {
  console.log(`  pytorch: ${fmt(t.peer)}   samples ${t.peerSamples.map((x) => x.toFixed(2)).join(" ")}`);
  console.log(ratioLine(t));
}
adam.free();
model.free();
