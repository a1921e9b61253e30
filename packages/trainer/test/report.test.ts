import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetricsLog, renderReport, type MetricsRow } from "@tinyllama/trainer";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => existsSync(p));

function rows(n: number): MetricsRow[] {
  const out: MetricsRow[] = [];
  for (let s = 1; s <= n; s++) {
    out.push({ type: "train", step: s, loss: 10 / s, lr: 1e-3 * Math.min(1, s / 5), grad_norm: 1 / s, tokens_per_s: 1000 + s, tokens: s * 100, elapsed_s: s });
    if (s % 5 === 0) out.push({ type: "eval", step: s, val_loss: 11 / s, val_tokens: 100 });
  }
  return out;
}

describe("metrics.jsonl", () => {
  test("truncateTo drops rows after the resumed step and a torn last line", () => {
    const dir = mkdtempSync(join(tmpdir(), "tl-metrics-"));
    const log = new MetricsLog(join(dir, "metrics.jsonl"));
    log.reset();
    for (const r of rows(12)) log.append(r);
    writeFileSync(join(dir, "metrics.jsonl"), readFileSync(join(dir, "metrics.jsonl"), "utf8") + '{"type":"train","st');
    log.truncateTo(7);
    const kept = log.rows();
    expect(kept.filter((r) => r.type === "train").length).toBe(7);
    expect(kept.filter((r) => r.type === "eval").map((r) => r.step)).toEqual([5]);
  });
});

describe("report.html", () => {
  test("is self-contained and escapes what it embeds", () => {
    const html = renderReport(rows(3), { title: "<run>", summary: { note: "</script><b>x" } });
    expect(html).not.toMatch(/(src|href)=["']?https?:/);
    expect(html).toContain("&#60;run&#62;");
    expect(html).not.toContain("</script><b>x");
  });

  test.skipIf(!CHROMIUM)(`draws its four charts in headless Chromium${CHROMIUM ? "" : " (skipped: install chromium)"}`, () => {
    const dir = mkdtempSync(join(tmpdir(), "tl-report-"));
    const page = join(dir, "report.html");
    writeFileSync(page, renderReport(rows(40), { title: "test run", summary: { steps: 40 } }));
    const p = Bun.spawnSync(
      [CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${join(dir, "profile")}`, "--dump-dom", `file://${page}`],
      { stdout: "pipe", stderr: "pipe", timeout: 60_000 },
    );
    const dom = p.stdout.toString();
    expect(dom).toContain('data-charts-drawn="4"');
    // each chart has at least one drawn series with many points
    const polylines = dom.match(/<polyline[^>]*class="series"/g) ?? [];
    expect(polylines.length).toBeGreaterThanOrEqual(5);
  });
});
