/**
 * The bf16-weight Linear layer (matmul_forward_wbf16) against our fp32 matmul on the same shapes, in
 * one process, interleaved (tools/bench/harness.ts): decode (N = 1, memory bound: GB/s of weights
 * streamed) and prefill (N = 32 tokens, compute bound: GFLOP/s) at the 15M preset's and TinyLlama
 * 1.1B's Linear shapes.
 *
 *   ./node_modules/.bin/bun packages/kernels/bench/matmul_wbf16.bench.ts [filter]   (BENCH_THREADS, BENCH_ROUNDS)
 */
import { getBackend, matmulForward, matmulForwardWbf16 } from "@tinyllama/kernels";
import { mulberry32, randn } from "@tinyllama/testing";
import { benchWaitPolicy, interleaved, markdownTable } from "../../../tools/bench/harness.ts";

const waitPolicy = benchWaitPolicy();
const be = getBackend();
be.threads = Number(process.env.BENCH_THREADS ?? 2);
const filter = (process.argv[2] ?? "").toLowerCase();

const SHAPES: [string, number, number][] = [
  ["15M q,o", 288, 288], ["15M gate,up", 288, 768], ["15M down", 768, 288], ["15M lm head", 288, 32000],
  ["1.1B q,o", 2048, 2048], ["1.1B k,v", 2048, 256], ["1.1B gate,up", 2048, 5632], ["1.1B down", 5632, 2048], ["1.1B lm head", 2048, 32000],
];
const rows: string[][] = [];
console.log(`threads ${be.threads}; OpenMP waits: ${waitPolicy}; ${be.buildInfo}`);
for (const N of [1, 32])
  for (const [name, C, OC] of SHAPES) {
    if (filter && !`${name} n=${N}`.toLowerCase().includes(filter)) continue;
    const inp = be.fromArray(randn(N * C, mulberry32(1)), [N, C]);
    const wf = be.fromArray(randn(OC * C, mulberry32(2), 0.05), [OC, C]);
    const wb = be.tensor([OC, C], "bf16");
    be.check("cast", be.lib.tl_cast_f32_to_bf16(wb.ptr(), wf.ptr(), OC * C));
    const out = be.tensor([N, OC]);
    const t = interleaved(() => matmulForwardWbf16(out, inp, wb), () => matmulForward(out, inp, wf));
    const flops = 2 * N * C * OC;
    const rate = (s: number, bytes: number) => (N === 1 ? `${(bytes / s / 1e9).toFixed(1)} GB/s` : `${(flops / s / 1e9).toFixed(1)} GFLOP/s`);
    rows.push([name, String(N), `${C}x${OC}`, (t.ours * 1e3).toFixed(3), rate(t.ours, OC * C * 2), (t.peer! * 1e3).toFixed(3), rate(t.peer!, OC * C * 4), `${(t.peer! / t.ours).toFixed(2)}x`]);
    for (const x of [inp, wf, wb, out]) x.buffer.free();
  }
console.log(markdownTable(["shape", "N", "C x OC", "bf16 ms", "bf16 rate", "f32 ms", "f32 rate", "speedup"], rows));
