/**
 * The TinyLlama-1.1B training step on the GPU (tools/gpu/check.sh runs it): bf16 mixed precision,
 * micro-batch 8 x 2048, the whole step (zeroGrad, forward, backward, global grad norm, clipped
 * AdamW with its bf16 copy refresh), through the same Model and AdamW the trainer uses. Prints
 * ms per step, tokens/s, MFU = model FLOPs per token x tokens/s / 989e12 (the H200's dense bf16
 * datasheet peak) and the memory used. Exits non-zero, with a line saying why, on anything wrong:
 * no GPU, a non-finite loss, a step that does not run.
 *
 *   bun tools/gpu/step.ts [--precision bf16|fp32] [--steps N] [--batch B] [--seq T] [--config PRESET] [--device cuda|cpu] [--profile]
 * --profile adds one step timed kernel by kernel (a device synchronisation after each call) and prints the table.
 * (--device cpu --config micro --batch 2 --seq 64: a dry run of this script on a machine without a GPU.)
 * Weights are N(0, 0.02) values made on the device (fillParams: one 64 MiB random block uploaded
 * and copied across the arena), not TinyLlama's initialisation: a 1.1B-parameter host-side
 * initialisation would cost more of the 5-minute budget than the timed steps. Not zeros either:
 * tensor cores run measurably faster on zeros (KINDS.md: 894 against 788 TFLOP/s for the same
 * bf16 product), which would flatter the MFU.
 */
import { parseArgs } from "node:util";
import { flopsPerToken, getPreset, isPresetName } from "@tinyllama/config";
import { checkPrecision, openBackend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { mulberry32, randn } from "@tinyllama/testing";

const PEAK_BF16 = 989e12; // H200 SXM dense bf16 tensor-core peak (datasheet)

function die(msg: string): never {
  console.log(`step: FAILED: ${msg}`);
  process.exit(1);
}

const { values: a } = parseArgs({
  args: process.argv.slice(2),
  options: { precision: { type: "string" }, steps: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, config: { type: "string" }, device: { type: "string" }, profile: { type: "boolean" } },
});
const preset = a.config ?? "tinyllama-1.1b";
if (!isPresetName(preset)) die(`unknown preset '${preset}'`);
const cfg = getPreset(preset);
const precision = (() => {
  try {
    return checkPrecision("step", a.precision ?? "bf16");
  } catch (e) {
    return die((e as Error).message);
  }
})();
const steps = Number(a.steps ?? 3), B = Number(a.batch ?? 8), T = Number(a.seq ?? 2048), profile = a.profile === true;
for (const [k, v] of Object.entries({ steps, batch: B, seq: T })) if (!Number.isInteger(v) || v < 1) die(`--${k} must be a positive integer`);

let be;
try {
  be = openBackend({ device: a.device === "cpu" ? "cpu" : "cuda" });
} catch (e) {
  die((e as Error).message);
}
const plan = Model.plan(cfg, { B, T, precision, backend: be });
console.log(`${preset}, ${precision}, micro-batch ${B} x ${T}: arenas params ${gib(plan.params)} + bf16 copy ${gib(plan.paramsBf16)} + grads ${gib(plan.grads)} + AdamW ${gib(2 * plan.params)} + activations ${gib(plan.acts)} = ${gib(plan.params + plan.paramsBf16 + plan.grads + 2 * plan.params + plan.acts)}`);

const t0 = performance.now();
const model = Model.create(cfg, { backend: be, B, T, precision, init: false });
const opt = new AdamW(model.params, model.grads!, { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
if (precision === "bf16" && opt.paramsBf16 !== model.paramsBf16) die("AdamW did not pick up the model's bf16 copy");
fillParams();
console.log(`allocated and filled in ${((performance.now() - t0) / 1000).toFixed(1)} s (${plan.logitsRows} logits rows per chunk)`);
const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
for (let i = 0; i < B * T; i++) {
  tokens[i] = (i * 7919) % cfg.vocabSize;
  targets[i] = (i * 7919 + 1) % cfg.vocabSize;
}
const oneStep = (): number => {
  model.zeroGrad();
  const loss = model.forward(tokens, targets);
  model.backward();
  const norm = gradNorm(model.grads!);
  if (!Number.isFinite(norm)) die(`gradient norm is ${norm}`);
  opt.step(4e-4, clipFactor(norm, 1));
  return loss;
};
try {
  let w = performance.now();
  const first = oneStep(); // warm-up: cuBLASLt heuristics, scratch buffers, first-touch
  be.sync();
  console.log(`warm-up step ${((performance.now() - w) / 1000).toFixed(2)} s, loss ${first.toFixed(4)} (near ln V = ${Math.log(cfg.vocabSize).toFixed(4)} for weights this small)`);
  // N(0, 0.02) norm gains shrink the final hidden state to ~0.02, so the logits are ~0.02 and the loss ~ln V
  if (!Number.isFinite(first) || Math.abs(first - Math.log(cfg.vocabSize)) > 0.1) die(`first loss ${first} should be near ln(V) = ${Math.log(cfg.vocabSize)} for N(0, 0.02) weights`);
  const times: number[] = [];
  let loss = first;
  for (let s = 0; s < steps; s++) {
    w = performance.now();
    loss = oneStep(); // forward returns the loss on the host and gradNorm reads a sum back: each step ends synchronised
    be.sync();
    times.push((performance.now() - w) / 1000);
  }
  if (!Number.isFinite(loss)) die(`loss is ${loss} after ${steps} steps`);
  const sec = times.reduce((x, y) => x + y, 0) / times.length;
  const tps = (B * T) / sec;
  const fpt = flopsPerToken(cfg, T);
  const mfu = (fpt * tps) / PEAK_BF16;
  const used = gpuMemoryUsed();
  console.log("");
  console.log(`| step (${precision}, ${B}x${T}) | ms/step | tokens/s | MFU (vs 989 TFLOP/s) | model TFLOP/s | GPU memory used |`);
  console.log(`|---|---|---|---|---|---|`);
  console.log(`| ${preset} | ${(sec * 1000).toFixed(0)} | ${Math.round(tps).toLocaleString("en-US")} | ${(mfu * 100).toFixed(1)}% | ${((fpt * tps) / 1e12).toFixed(1)} | ${used} |`);
  console.log(`per-step times: ${times.map((t) => (t * 1000).toFixed(0)).join(", ")} ms; final loss ${loss.toFixed(4)}; ${(fpt / 1e9).toFixed(3)} GFLOP per token`);
  if (profile) {
    // One more step with every kernel call followed by a device synchronisation: where the time goes
    // (the synchronisations add launch gaps, so the total is above the step time measured above).
    be.sync();
    be.startProfile();
    w = performance.now();
    oneStep();
    be.sync();
    const wall = (performance.now() - w) / 1000;
    console.log("");
    console.log(`per-op profile of one synchronised step (${(wall * 1000).toFixed(0)} ms):`);
    console.log(be.stopProfile()!.table(1, wall));
  }
} finally {
  opt.free();
  model.free();
}

/** N(0, 0.02) parameters without a host-side pass over all of them: one random block, copied on the device. */
function fillParams(): void {
  const flat = model.params.flat();
  const n = flat.shape[0]!, block = Math.min(n, 1 << 24);
  const src = be!.tensor([block]).write(randn(block, mulberry32(7), 0.02));
  try {
    for (let off = 0; off < n; off += block) {
      const c = Math.min(block, n - off);
      be!.copy(flat.rows(off, c), c === block ? src : src.rows(0, c));
    }
  } finally {
    src.buffer.free();
  }
  model.syncBf16();
}

function gib(b: number): string {
  return `${(b / 2 ** 30).toFixed(2)} GiB`;
}

/** nvidia-smi's view of this process's memory (arenas + cuBLASLt workspace + scratch + context), or why not. */
function gpuMemoryUsed(): string {
  if (!Bun.which("nvidia-smi")) return "n/a (no nvidia-smi)";
  const r = Bun.spawnSync(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], { stdout: "pipe", stderr: "pipe" });
  const mine = r.stdout.toString().split("\n").map((l) => l.split(",").map((x) => x.trim())).find((f) => f[0] === String(process.pid));
  if (mine?.[1]) return `${(Number(mine[1]) / 1024).toFixed(1)} GiB`;
  const g = Bun.spawnSync(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], { stdout: "pipe" });
  const total = g.stdout.toString().trim().split("\n")[0];
  return total ? `${(Number(total) / 1024).toFixed(1)} GiB (whole GPU)` : "n/a";
}
