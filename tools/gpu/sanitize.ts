/**
 * The CUDA kernels that use shared memory, warp-level exchange or tensor-core fragments, each run
 * once at small, ragged shapes, for NVIDIA's compute-sanitizer (tools/gpu/check.sh runs it under
 * `--tool memcheck`, `--tool racecheck` and `--tool synccheck`): out-of-bounds and misaligned
 * accesses, shared-memory races and barrier misuse that the CPU emulator cannot see. It checks
 * return codes only; tests/cuda/parity.test.ts checks the values.
 *
 *   compute-sanitizer --tool racecheck --error-exitcode 1 bun tools/gpu/sanitize.ts
 * TINYLLAMA_BENCH_EMU=1 runs it on the CPU emulator (a dry run of the script itself).
 */
import { Backend, openBackend, sumsq, type Tensor } from "@tinyllama/kernels";
import { mulberry32, randn } from "@tinyllama/testing";
import { buildEmulatedCudaLibrary } from "../../test/cuda/emu.ts";
import { gpuReason, opsOf, put, setNativeEnv, type AbiName } from "../../test/cuda/harness.ts";

const emu = process.env.TINYLLAMA_BENCH_EMU === "1";
if (gpuReason !== null && !emu) {
  console.log(`sanitize: skipped: no CUDA GPU (${gpuReason})`);
  process.exit(0);
}
const be = emu ? new Backend("cuda", buildEmulatedCudaLibrary()) : openBackend({ device: "cuda" });
const names: AbiName[] = [
  "tl_attention_forward_bf16", "tl_attention_backward_bf16", "tl_attention_forward", "tl_attention_backward",
  "tl_rmsnorm_forward", "tl_rmsnorm_backward", "tl_crossentropy_forward_backward", "tl_embedding_backward",
  "tl_adamw_step_bf16", "tl_matmul_backward",
];
const ops = opsOf(be, names);
const p = (t: Tensor) => t.ptr("sanitize");
let seed = 1;
const f32 = (n: number, scale = 1) => put(be, randn(n, mulberry32(seed++), scale));
const bf16 = (n: number) => put(be, Uint16Array.from(randn(n, mulberry32(seed++), 2), (x) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16));
const run = (what: string, rc: number) => {
  be.check(what, rc);
  be.sync();
  console.log(`ok  ${what}`);
};

// bf16 flash attention: register-tiled kernels (HD 64 and 48 both ways; HD 128 forward), then the WMMA ones
const attention = (B: number, T: number, NH: number, NKV: number, HD: number, tag: string) => {
  const q = bf16(B * T * NH * HD), k = bf16(B * T * NKV * HD), v = bf16(B * T * NKV * HD), dout = bf16(B * T * NH * HD);
  const out = be.tensor([B * T * NH * HD], "bf16"), lse = be.tensor([B * NH * T]);
  run(`attention_forward_bf16 ${tag} B${B} T${T} NH${NH}/${NKV} HD${HD}`, ops.tl_attention_forward_bf16(p(out), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
  const dq = f32(B * T * NH * HD), dk = f32(B * T * NKV * HD), dv = f32(B * T * NKV * HD);
  run(`attention_backward_bf16 ${tag} B${B} T${T} NH${NH}/${NKV} HD${HD}`, ops.tl_attention_backward_bf16(p(dq), p(dk), p(dv), p(dout), p(q), p(k), p(v), p(out), p(lse), B, T, NH, NKV, HD));
};
attention(2, 200, 4, 2, 64, "mma.sync");
attention(1, 130, 2, 1, 48, "mma.sync");
attention(1, 70, 2, 2, 128, "mma.sync fwd / WMMA bwd");
setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", "wmma");
try {
  attention(2, 200, 4, 2, 64, "WMMA");
} finally {
  setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", null);
}
{ // fp32 flash attention
  const [B, T, NH, NKV, HD] = [1, 130, 4, 2, 64];
  const q = f32(B * T * NH * HD), k = f32(B * T * NKV * HD), v = f32(B * T * NKV * HD), out = be.tensor([B * T * NH * HD]), lse = be.tensor([B * NH * T]);
  run("attention_forward fp32", ops.tl_attention_forward(p(out), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
  run("attention_backward fp32", ops.tl_attention_backward(p(f32(q.shape[0]!)), p(f32(k.shape[0]!)), p(f32(v.shape[0]!)), p(f32(q.shape[0]!)), p(q), p(k), p(v), p(out), p(lse), B, T, NH, NKV, HD));
}
{ // reductions through shared memory and shuffles
  const [N, C, V] = [77, 2048 + 8, 1000];
  const x = f32(N * C), w = f32(C), y = be.tensor([N * C]), r = be.tensor([N]);
  run("rmsnorm_forward", ops.tl_rmsnorm_forward(p(y), p(r), p(x), p(w), N, C, 1e-5));
  run("rmsnorm_backward", ops.tl_rmsnorm_backward(p(f32(N * C)), p(f32(C)), p(f32(N * C)), p(x), p(w), p(r), N, C));
  const logits = f32(N * V), tgt = put(be, Int32Array.from({ length: N }, (_, i) => (i % 7 === 3 ? -100 : (i * 31) % V)));
  run("crossentropy_forward_backward", ops.tl_crossentropy_forward_backward(p(be.tensor([N])), p(be.tensor([N * V])), p(logits), p(tgt), N, V, -100, 1 / N));
  const toks = put(be, Int32Array.from({ length: N }, (_, i) => (i * 13) % 50));
  run("embedding_backward", ops.tl_embedding_backward(p(f32(50 * C)), p(f32(N * C)), p(toks), N, C, 50));
  const M = 100_003;
  run("adamw_step_bf16", ops.tl_adamw_step_bf16(p(f32(M)), p(be.tensor([M], "bf16")), p(f32(M)), p(f32(M)), p(f32(M, 0.01)), M, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 1));
  run("sumsq", sumsq(f32(M)) >= 0 ? 0 : 1); // its result is a host double
  run("matmul_backward (dbias column sums)", ops.tl_matmul_backward(p(f32(N * 96)), p(f32(40 * 96)), p(f32(40)), p(f32(N * 40)), p(f32(N * 96)), p(f32(40 * 96)), N, 96, 40));
}
console.log("sanitize: every kernel ran");
