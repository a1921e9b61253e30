/**
 * Checkpoint I/O throughput: 16-bit conversions and safetensors write/read, each next to a peer measured in the same
 * process: the engine's native Float16Array conversion (f16), a preallocated Float32Array copy (the memory-bandwidth
 * ceiling, for bf16), the same bytes written with writeSync + fsync (write), readFileSync (read). Run: ./node_modules/.bin/bun packages/checkpoint/bench/checkpoint.bench.ts [Melements]
 * (default 8; BENCH_QUICK=1: 2).
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32, randn } from "@tinyllama/testing";
import { benchQuick, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, readSafetensors, writeSafetensors } from "../src/index.ts";

const N = Math.round(Number(process.argv[2] ?? (benchQuick() ? 2 : 8)) * 1_000_000);
const scoreRows: BenchRow[] = [];
const src = randn(N, mulberry32(1));
const dir = mkdtempSync(join(tmpdir(), "ckpt-bench-"));

function time(fn: () => unknown, reps = 5): number {
  fn(); // warm up (JIT, page cache)
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[reps >> 1]! / 1000; // median, seconds
}
const gbs = (bytes: number, s: number): string => `${(bytes / s / 1e9).toFixed(2)} GB/s`;
/** `inMemory`: a conversion between arrays, so its GB/s is a fraction of the copy ceiling (I/O rows are not). */
function row(what: string, bytes: number, ours: number, peerName: string, peer: number, inMemory = true): void {
  console.log(`${what.padEnd(34)} ${gbs(bytes, ours).padStart(11)}   ${peerName.padEnd(31)} ${gbs(bytes, peer).padStart(11)}   ratio ${(peer / ours).toFixed(2)}`);
  const rate = (s: number): number => bytes / s / 1e9;
  scoreRows.push({
    component: "checkpoint",
    case: `${what}, ${(N / 1e6).toFixed(0)}M elements`,
    unit: "GB/s",
    ours: rate(ours),
    peer: rate(peer),
    peerName,
    higherIsBetter: true,
    ...(inMemory ? { gbs: rate(ours) } : {}),
    note: "GB/s counts f32 bytes (bf16 bytes for the write); median of 5 (3 for writes)",
  });
}

console.log(`${(N / 1e6).toFixed(1)}M elements (${(N * 4 / 1e6).toFixed(0)} MB as f32); GB/s counts f32 bytes; ratio = ours/peer speed`);
// Everything into preallocated outputs, so page faults of fresh allocations are not what is measured.
const bf = f32ToBf16(src);
const h = f32ToF16(src);
const out = new Float32Array(N);
const h16 = new Float16Array(N);
row("f32 -> bf16 (RNE)", N * 4, time(() => f32ToBf16(src, bf)), "f32 copy (TypedArray.set)", time(() => out.set(src)));
row("f32 -> f16 (RNE)", N * 4, time(() => f32ToF16(src, h)), "Float16Array.set(f32)", time(() => h16.set(src)));
row("bf16 -> f32", N * 4, time(() => bf16ToF32(bf, out)), "f32 copy (TypedArray.set)", time(() => out.set(src)));
row("f16 -> f32", N * 4, time(() => f16ToF32(h, out)), "Float32Array.set(Float16Array)", time(() => out.set(h16)));

const path = join(dir, "w.safetensors");
const raw = join(dir, "raw.bin");
const bytes = new Uint8Array(bf.buffer);
const wBf = time(() => writeSafetensors(path, [{ name: "w", shape: [N], dtype: "BF16", data: src }]), 3);
const wRaw = time(() => {
  const fd = openSync(raw, "w");
  writeSync(fd, bytes);
  fsyncSync(fd);
  closeSync(fd);
}, 3);
row("writeSafetensors f32->bf16 +fsync", N * 2, wBf, "writeSync + fsync, bf16 bytes", wRaw, false);
const open = time(() => readSafetensors(path));
console.log(`${"readSafetensors (mmap + validate)".padEnd(34)} ${(open * 1e6).toFixed(0).padStart(8)} µs  (zero-copy: independent of size)`);
const rd = time(() => bf16ToF32(readSafetensors(path).get("w")!.data as Uint16Array, out));
const rdPeer = time(() => bf16ToF32(new Uint16Array(readFileSync(raw).buffer), out));
row("read + bf16 -> f32 (mmap)", N * 4, rd, "readFileSync + bf16ToF32", rdPeer, false);
scoreRows.push({
  component: "checkpoint",
  case: "readSafetensors open (mmap + validate header)",
  unit: "ms",
  ours: open * 1e3,
  peer: null,
  peerName: null,
  higherIsBetter: false,
  note: "zero-copy: independent of size",
});
reportRows(scoreRows);
rmSync(dir, { recursive: true, force: true });
