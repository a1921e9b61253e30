/**
 * Whole training steps of the model on the CUDA sources, run by the CPU emulator (kernels/cuda/emu),
 * against the CPU library: the TypeScript model is the same, only the backend differs. This checks
 * how the CUDA kernels compose (embedding, RMSNorm, RoPE, flash attention, SwiGLU, cross-entropy,
 * casts, AdamW with its bf16 copy, the matmul operand mapping) in fp32 and in bf16 mixed precision,
 * on machines without a GPU. In emulator builds the matmuls run a plain reference kernel in place of
 * cuBLASLt (kernels/cuda/matmul.cu, TL_CUDA_EMU), so cuBLASLt itself, races and speed are left to
 * test/cuda/model_bf16.test.ts on a real GPU. Needs g++.
 */
import { describe, expect, test } from "bun:test";
import { getPreset, type ModelConfig } from "@tinyllama/config";
import { Backend, numberToBf16, openBackend, type Precision } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { mulberry32, relErr } from "@tinyllama/testing";
import { buildEmulatedCudaLibrary } from "./emu.ts";

const hasCxx = !!(process.env.CXX ?? Bun.which("g++"));
if (!hasCxx) console.log("skipped: the model on the CUDA emulator (no g++)");

/** Small but complete: GQA, two layers, C != H != V; head dim 64 so bf16 attention takes the
 * tensor-core (wmma) kernel, and T = 70 spans two of its 64-row tiles, the second one ragged. */
const TINY: ModelConfig = { ...getPreset("micro"), dim: 128, hiddenDim: 176, nHeads: 2, nKvHeads: 1, vocabSize: 96, nLayers: 2, maxSeqLen: 80 };
const B = 1, T = 70;

function batch(n: number, V: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * V));
}

/** Three AdamW steps; returns the losses, the first and last gradients, the final masters and their bf16 copy. */
function run(backend: Backend, precision: Precision) {
  const m = Model.create(TINY, { backend, B, T, seed: 4, precision });
  const opt = new AdamW(m.params, m.grads!, { lr: 1e-2 });
  try {
    const losses: number[] = [];
    let grads: Float32Array = new Float32Array(0), first: Float32Array = grads;
    for (let s = 0; s < 3; s++) {
      const tokens = batch(B * T, TINY.vocabSize, 10 + s), targets = batch(B * T, TINY.vocabSize, 20 + s);
      targets[3] = -100;
      m.zeroGrad();
      losses.push(m.forward(tokens, targets));
      m.backward();
      grads = m.grads!.flat().read() as Float32Array;
      if (s === 0) first = grads;
      opt.step(1e-2, clipFactor(gradNorm(m.grads!), 1));
    }
    return { losses, first, grads, params: m.params.flat().read() as Float32Array, bf16: m.paramsBf16 ? (m.paramsBf16.flat("bf16").read() as Uint16Array) : null };
  } finally {
    opt.free();
    m.free();
  }
}

describe.skipIf(!hasCxx)("the model on the CUDA sources (CPU emulator) vs the CPU library", () => {
  let emu: Backend, cpu: Backend;
  const setup = () => {
    emu ??= new Backend("cuda", buildEmulatedCudaLibrary());
    cpu ??= openBackend({ device: "cpu" });
  };

  test("fp32: three AdamW steps agree to fp32 tolerance (loss 1e-5, gradients and weights 1e-4)", () => {
    setup();
    const g = run(emu, "fp32"), c = run(cpu, "fp32");
    g.losses.forEach((l, i) => expect(Math.abs(l - c.losses[i]!) / c.losses[i]!).toBeLessThan(1e-5));
    expect(relErr(g.grads, c.grads)).toBeLessThan(1e-4);
    expect(relErr(g.params, c.params)).toBeLessThan(1e-4);
  }, 600_000);

  test("bf16 (the CUDA default): agrees with the CPU's bf16 and, at bf16 tolerance, with fp32; the bf16 copy is the rounding of the masters", () => {
    setup();
    const g = run(emu, "bf16"), c = run(cpu, "bf16"), f = run(cpu, "fp32");
    const lossErr = Math.max(...g.losses.map((l, i) => Math.abs(l - c.losses[i]!) / c.losses[i]!));
    // first-step gradients: after an AdamW step, tiny differences (the GPU kernel rounds P to bf16,
    // the CPU twin does not) become full-size update differences (see below)
    const gradErr = relErr(g.first, c.first);
    console.log(`emulated CUDA bf16 vs CPU bf16: loss ${lossErr.toExponential(2)} (per step ${g.losses.map((l, i) => (Math.abs(l - c.losses[i]!) / c.losses[i]!).toExponential(2)).join(" ")}), gradients ${gradErr.toExponential(2)}`);
    // The first loss is a forward only: tight. Steps 2-3 follow AdamW updates (lr 1e-2) that turn the
    // tensor-core kernel's bf16-rounded P and dS into update differences: the bf16 tolerance.
    expect(Math.abs(g.losses[0]! - c.losses[0]!) / c.losses[0]!).toBeLessThan(1e-3);
    expect(lossErr).toBeLessThan(1e-2);
    expect(gradErr).toBeLessThan(1e-2);
    g.losses.forEach((l, i) => expect(Math.abs(l - f.losses[i]!) / f.losses[i]!).toBeLessThan(1e-2));
    // gradients against fp32 only at the first step: AdamW turns tiny gradient differences into
    // full-size update differences, so later steps' gradients are not comparable at bf16 tolerance
    expect(relErr(g.first, f.first)).toBeLessThan(1e-2);
    expect(g.losses).not.toEqual(f.losses);
    expect(Array.from(g.bf16!)).toEqual(Array.from(g.params, (v) => numberToBf16(v)));
  }, 600_000);
});
