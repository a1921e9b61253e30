/**
 * Checks that need nvcc but no GPU: the CUDA library builds, exports every function of the
 * header (and of the package's FFI table), reports itself as the CUDA backend, rejects bad
 * arguments before touching the device, and turns a missing driver / missing cuBLASLt into an
 * error code with a message instead of a crash. Skipped (with a line) where nvcc is absent.
 */
import { describe, expect, test } from "bun:test";
import { dlopen, ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildCudaLibrary, cachedCudaLibrary, findNvcc, kernelsDir } from "@tinyllama/kernels";
import { symbols } from "../../packages/kernels/src/symbols.ts";
import { ABI, noGpu } from "./harness.ts";

// Never compile here: a test run must not start a multi-minute nvcc build on a shared machine.
// `bun run build:kernels` (CI runs it first) compiles every .cu whenever nvcc exists, so a CUDA
// compile error fails CI there, and these checks then run on the library it built.
const cached = cachedCudaLibrary();
const canBuild = cached !== null;
if (!canBuild)
  console.log(
    findNvcc()
      ? "skipped: CUDA library checks (the library is not built for these sources: run `bun run build:kernels`)"
      : "skipped: CUDA library checks (no nvcc: install the CUDA toolkit, then `bun run build:kernels`)",
  );

function headerFunctions(): string[] {
  const h = readFileSync(join(kernelsDir(), "include", "tinyllama.h"), "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  return [...h.matchAll(/^\s*(?:const\s+)?\w+\s*\*?\s*(tl_\w+)\s*\(/gm)].map((m) => m[1]!);
}

describe.skipIf(!canBuild)("CUDA library (no GPU needed)", () => {
  let lib = "";
  test("is built for the current sources", () => {
    lib = cached!;
    expect(buildCudaLibrary({ cachedOnly: true })).toBe(lib);
    expect(lib).toMatch(/\.so$/);
  });

  test("the test ABI table covers the header, and the package's FFI table is a subset of the header", () => {
    const fns = headerFunctions();
    expect(fns.length).toBeGreaterThan(30);
    expect(fns.filter((f) => !(f in ABI))).toEqual([]);
    for (const name of Object.keys(symbols)) expect(fns).toContain(name);
  });

  test("exports every function of the test ABI table and of the FFI table; tl_backend() is 1", () => {
    const all = dlopen(lib, ABI); // throws naming the first missing symbol
    dlopen(lib, symbols);
    expect(all.symbols.tl_backend()).toBe(1);
    expect(String(all.symbols.tl_error_string(4))).toBe("backend failure");
  });

  test("validates arguments before touching the device", () => {
    const { symbols: s } = dlopen(lib, ABI);
    // null pointers and non-positive sizes are TL_ERR_INVALID_ARGUMENT with the function's name
    expect(s.tl_matmul_forward(null, null, null, null, 0, 1, 1)).toBe(1);
    expect(String(s.tl_last_error())).toContain("tl_matmul_forward");
    expect(s.tl_attention_forward(null, null, null, null, null, 1, 4, 6, 4, 8)).toBe(1); // NH % NKV != 0
    expect(String(s.tl_last_error())).toContain("multiple");
    expect(s.tl_rope_forward(null, null, null, null, 1, 4, 1, 8, 0, 8)).toBe(1); // NULL pointers
    expect(s.tl_adamw_step(null, null, null, null, 10, 1e-3, 0.9, 0.95, 1e-8, 0, 1, 0)).toBe(1); // step 0
    expect(s.tl_add(null, null, null, 0n)).toBe(0); // an empty flat op is a no-op
    const out = new Float64Array(1);
    expect(s.tl_sumsq(ptr(out), null, 0n)).toBe(0);
    expect(out[0]).toBe(0);
  });

  test.skipIf(!noGpu)("without a GPU, device calls fail with TL_ERR_BACKEND and CUDA's message", () => {
    const { symbols: s } = dlopen(lib, ABI);
    const p = new BigUint64Array(1);
    expect(s.tl_alloc(ptr(p), 16)).toBe(4);
    expect(String(s.tl_last_error())).toMatch(/tl_alloc: cudaMalloc .* failed: .+/);
    expect(s.tl_sync()).toBe(4);
    const info = new BigUint64Array(1);
    expect(s.tl_build_info(ptr(info))).toBe(4);
  });

  test("a missing cuBLASLt is TL_ERR_UNSUPPORTED naming where it looked", () => {
    // A fresh process, so the library reads TINYLLAMA_CUBLASLT at its first matmul. The pointers
    // are never dereferenced: loading cuBLASLt fails first.
    const script = `
      import { dlopen, FFIType as F } from "bun:ffi";
      const { symbols: s } = dlopen(${JSON.stringify(lib)}, {
        tl_matmul_forward: { args: [F.ptr, F.ptr, F.ptr, F.ptr, F.i32, F.i32, F.i32], returns: F.i32 },
        tl_last_error: { args: [], returns: F.cstring },
      });
      const rc = s.tl_matmul_forward(256, 256, 256, null, 1, 1, 1);
      console.log(JSON.stringify({ rc, msg: String(s.tl_last_error()) }));`;
    const r = Bun.spawnSync([process.execPath, "-e", script], {
      env: { ...process.env, TINYLLAMA_CUBLASLT: "/nonexistent/libcublasLt.so.13" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const res = JSON.parse(r.stdout.toString().trim().split("\n").pop() ?? "{}") as { rc: number; msg: string };
    expect(res.rc).toBe(5);
    expect(res.msg).toContain("/nonexistent/libcublasLt.so.13");
    expect(res.msg).toContain("TINYLLAMA_CUBLASLT");
  });
});

describe("CUDA build errors", () => {
  test("a missing nvcc is an Error saying what to install", () => {
    const saved = { NVCC: process.env.NVCC, LIB: process.env.TINYLLAMA_CUDA_LIB };
    try {
      process.env.NVCC = "/nonexistent/nvcc";
      delete process.env.TINYLLAMA_CUDA_LIB;
      expect(findNvcc()).toBeNull();
      expect(() => buildCudaLibrary()).toThrow(/nvcc \(the CUDA compiler\) was not found.*install the CUDA toolkit/s);
      expect(cachedCudaLibrary()).toBeNull();
    } finally {
      for (const [k, v] of [["NVCC", saved.NVCC], ["TINYLLAMA_CUDA_LIB", saved.LIB]] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });
});
