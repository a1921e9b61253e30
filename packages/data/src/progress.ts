/** A one-line progress bar for `prepare` on stderr: percent, MB done, MB/s, documents, tokens, ETA. */
import type { PrepareProgress } from "./prepare.ts";

const MB = 1e6;

export function formatProgress(p: PrepareProgress, width = 24): string {
  const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : 1;
  const filled = Math.round(frac * width);
  const rate = p.seconds > 0 ? p.bytesDone / MB / p.seconds : 0;
  const eta = rate > 0 && !p.done ? ` eta ${Math.ceil((p.bytesTotal - p.bytesDone) / MB / rate)}s` : "";
  const tok = p.tokens >= 1e6 ? `${(p.tokens / 1e6).toFixed(1)}M` : String(p.tokens);
  return (
    `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(frac * 100).toFixed(1).padStart(5)}% ` +
    `${(p.bytesDone / MB).toFixed(1)}/${(p.bytesTotal / MB).toFixed(1)} MB ${rate.toFixed(1)} MB/s ` +
    `${p.documents} docs ${tok} tokens ${p.seconds.toFixed(1)}s${eta}`
  );
}

/** An onProgress callback that redraws one line on a terminal, or prints a line every few seconds otherwise. */
export function progressBar(stream: { write(s: string): unknown; isTTY?: boolean } = process.stderr): (p: PrepareProgress) => void {
  let last = -Infinity;
  return (p) => {
    if (stream.isTTY) {
      stream.write(`\r${formatProgress(p)}\x1b[K${p.done ? "\n" : ""}`);
      return;
    }
    if (p.done || p.seconds - last >= 5) {
      last = p.seconds;
      stream.write(formatProgress(p) + "\n");
    }
  };
}
