/**
 * @tinyllama/trainer — the training loop and everything around it: run directories, metrics.jsonl,
 * report.html, crash-safe checkpoints with exact resume, the dry-run plan, the bundled corpus.
 */
export { describePlan, memoryPlan, type MemoryPlan } from "./plan.ts";
export { MetricsLog, type MetricsRow, type TrainRow, type EvalRow } from "./metrics.ts";
export { renderReport, type ReportInfo } from "./report.ts";
export { writeSnapshot, readSnapshot, latestSnapshot, listSnapshots, snapshotName } from "./snapshot.ts";
export { brownDir, detokenizeBrown, materializeBrown } from "./brown.ts";
export { Progress, fmtDuration } from "./progress.ts";
export { train, loadWeights, trainBackend, trainPrecision, type TrainOptions, type TrainResult } from "./loop.ts";
export { sampleContinuations, type SampleOptions } from "./samples.ts";
export { profileTraining } from "./profile.ts";
