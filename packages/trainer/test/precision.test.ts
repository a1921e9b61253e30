import { describe, expect, test } from "bun:test";
import { defaultTrainConfig, getPreset } from "@tinyllama/config";
import { openBackend } from "@tinyllama/kernels";
import { describePlan, memoryPlan, trainPrecision } from "@tinyllama/trainer";

describe("train.precision", () => {
  const cfg = getPreset("micro");
  test("auto is fp32 on the CPU backend; an explicit value wins", () => {
    const cpu = openBackend({ device: "cpu" });
    expect(trainPrecision(defaultTrainConfig(cfg, { steps: 1 }), cpu)).toBe("fp32");
    expect(trainPrecision(defaultTrainConfig(cfg, { steps: 1, precision: "bf16" }), cpu)).toBe("bf16");
  });

  test("the dry run plans the bf16 copy when the run would be bf16 (explicitly, or auto on CUDA)", () => {
    const f = memoryPlan(cfg, 2, 32, "fp32"), h = memoryPlan(cfg, 2, 32, "bf16");
    expect(f.paramsBf16).toBe(0);
    expect(h.paramsBf16).toBe(h.params / 2);
    expect(h.total).toBe(h.params + h.paramsBf16 + h.grads + h.optimizer + h.activations);
    expect(h.activations).toBeGreaterThan(f.activations);
    expect(describePlan(cfg, defaultTrainConfig(cfg, { steps: 1, device: "cuda" }), "micro")).toContain("(bf16 mixed precision)");
    expect(describePlan(cfg, defaultTrainConfig(cfg, { steps: 1, device: "cuda", precision: "fp32" }), "micro")).toContain("(fp32)");
    expect(describePlan(cfg, defaultTrainConfig(cfg, { steps: 1, device: "cpu" }), "micro")).not.toContain("bf16 copy");
  });
});
