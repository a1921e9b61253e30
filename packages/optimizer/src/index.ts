/**
 * @tinyllama/optimizer — AdamW over parameter arenas (one fused kernel call per run of same-decay
 * tensors), the global gradient norm and PyTorch's clipping factor, and learning-rate schedules.
 */
export { AdamW, planRuns, defaultDecay, type AdamWOptions, type AdamWRun, type AdamWState, type DecayPredicate } from "./adamw.ts";
export { gradNorm, clipFactor } from "./clip.ts";
export { cosineSchedule, constantSchedule, type CosineScheduleOptions, type Schedule } from "./schedule.ts";
