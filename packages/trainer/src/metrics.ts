/**
 * metrics.jsonl: one JSON object per optimizer step ({type:"train", step, loss, lr, grad_norm,
 * tokens_per_s, ...}) plus eval rows ({type:"eval", step, val_loss}). On resume the file is cut back
 * to the resumed step so the completed file equals an uninterrupted run's.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

export interface TrainRow {
  type: "train";
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  tokens: number;
  elapsed_s: number;
}
export interface EvalRow {
  type: "eval";
  step: number;
  val_loss: number;
  val_tokens: number;
}
export type MetricsRow = TrainRow | EvalRow;

export class MetricsLog {
  constructor(readonly path: string) {}

  append(row: MetricsRow): void {
    appendFileSync(this.path, JSON.stringify(row) + "\n");
  }

  rows(): MetricsRow[] {
    if (!existsSync(this.path)) return [];
    const out: MetricsRow[] = [];
    for (const line of readFileSync(this.path, "utf8").split("\n")) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as MetricsRow);
      } catch {
        // A line cut short by a kill is dropped; everything before it is intact.
      }
    }
    return out;
  }

  /** Keeps only rows with step <= `step` (a resume from that step rewrites what came after). */
  truncateTo(step: number): void {
    const kept = this.rows().filter((r) => r.step <= step);
    writeFileSync(this.path, kept.map((r) => JSON.stringify(r) + "\n").join(""));
  }

  reset(): void {
    writeFileSync(this.path, "");
  }
}
