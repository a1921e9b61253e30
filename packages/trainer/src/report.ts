/**
 * report.html: a self-contained page (no network, no libraries) that charts train/val loss,
 * learning rate, gradient norm and throughput from the run's metrics. The charts are drawn by a
 * small inline script into SVG; when done it sets data-charts-drawn on <html>, which the test checks
 * in headless Chromium.
 */
import type { MetricsRow } from "./metrics.ts";

export interface ReportInfo {
  title: string;
  summary: Record<string, string | number>;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderReport(rows: readonly MetricsRow[], info: ReportInfo): string {
  const data = JSON.stringify(rows).replace(/</g, "\\u003c");
  const summary = Object.entries(info.summary)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:240px}
table{border-collapse:collapse;margin-bottom:16px}th,td{text-align:left;padding:2px 12px 2px 0}
.legend span{margin-right:12px}
</style></head><body>
<h1>${escapeHtml(info.title)}</h1>
<table>${summary}</table>
<div class="grid">
<figure><figcaption>Loss</figcaption><svg id="loss"></svg><div class="legend"><span style="color:#1f77b4">■ train</span><span style="color:#d62728">■ val</span></div></figure>
<figure><figcaption>Learning rate</figcaption><svg id="lr"></svg></figure>
<figure><figcaption>Gradient norm (before clipping)</figcaption><svg id="gnorm"></svg></figure>
<figure><figcaption>Throughput (tokens/s)</figcaption><svg id="tps"></svg></figure>
</div>
<script>
const rows = ${data};
const train = rows.filter(r => r.type === "train"), val = rows.filter(r => r.type === "eval");
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) { const e = document.createElementNS(NS, name); for (const k in attrs) e.setAttribute(k, attrs[k]); parent.appendChild(e); return e; }
function chart(id, series) {
  const svg = document.getElementById(id), W = 500, H = 240, L = 56, R = 10, T = 10, B = 28;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const pts = series.flatMap(s => s.points).filter(p => Number.isFinite(p[1]));
  if (pts.length === 0) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no data yet"; return 0; }
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y0 = Math.min(...pts.map(p => p[1])), y1 = Math.max(...pts.map(p => p[1]));
  if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y1 += Math.abs(y1) * 0.05 + 1e-9; y0 -= Math.abs(y0) * 0.05 + 1e-9; }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#888" }, svg);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4, x = x0 + (x1 - x0) * i / 4;
    el("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end", "font-size": 10 }, svg).textContent = y.toPrecision(3);
    el("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle", "font-size": 10 }, svg).textContent = Math.round(x);
  }
  let drawn = 0;
  for (const s of series) {
    const p = s.points.filter(q => Number.isFinite(q[1]));
    if (p.length === 0) continue;
    el("polyline", { points: p.map(q => sx(q[0]).toFixed(1) + "," + sy(q[1]).toFixed(1)).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5, class: "series" }, svg);
    if (p.length === 1) el("circle", { cx: sx(p[0][0]), cy: sy(p[0][1]), r: 3, fill: s.color, class: "series" }, svg);
    drawn++;
  }
  return drawn > 0 ? 1 : 0;
}
let n = 0;
n += chart("loss", [{ color: "#1f77b4", points: train.map(r => [r.step, r.loss]) }, { color: "#d62728", points: val.map(r => [r.step, r.val_loss]) }]);
n += chart("lr", [{ color: "#2ca02c", points: train.map(r => [r.step, r.lr]) }]);
n += chart("gnorm", [{ color: "#9467bd", points: train.map(r => [r.step, r.grad_norm]) }]);
n += chart("tps", [{ color: "#ff7f0e", points: train.map(r => [r.step, r.tokens_per_s]) }]);
document.documentElement.dataset.chartsDrawn = String(n);
</script></body></html>
`;
}
