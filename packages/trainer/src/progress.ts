/** The live progress line: one line rewritten in place on a terminal, a line every few steps otherwise. */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export class Progress {
  readonly #tty = !!process.stderr.isTTY;
  #lastPrint = 0;
  constructor(readonly total: number) {}

  update(step: number, parts: Record<string, string>, etaS: number): void {
    const line = `step ${String(step).padStart(String(this.total).length)}/${this.total} | ${Object.entries(parts)
      .map(([k, v]) => `${k} ${v}`)
      .join(" | ")} | ETA ${fmtDuration(etaS)}`;
    if (this.#tty) process.stderr.write(`\r\x1b[2K${line}`);
    else {
      const now = performance.now();
      if (step === 1 || step === this.total || now - this.#lastPrint > 5000) {
        this.#lastPrint = now;
        process.stderr.write(line + "\n");
      }
    }
  }
  /** Prints a message on its own line without breaking the progress line. */
  log(msg: string): void {
    process.stderr.write((this.#tty ? "\r\x1b[2K" : "") + msg + "\n");
  }
  done(): void {
    if (this.#tty) process.stderr.write("\n");
  }
}
