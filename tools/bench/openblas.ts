/**
 * OpenBLAS, the peer the matmul benchmark is measured against. Loaded with bun:ffi by benchmarks
 * only; nothing in packages/ depends on it. `loadOpenBlas()` returns null when the library is absent,
 * so a benchmark can still print our own numbers.
 */
import { CString, FFIType, dlopen, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";

const { i32, f32, ptr, void: none, cstring } = FFIType;

const SYMBOLS = {
  cblas_sgemm: { args: [i32, i32, i32, i32, i32, i32, f32, ptr, i32, ptr, i32, f32, ptr, i32], returns: none },
  cblas_sgemv: { args: [i32, i32, i32, i32, f32, ptr, i32, ptr, i32, f32, ptr, i32], returns: none },
  openblas_set_num_threads: { args: [i32], returns: none },
  openblas_get_num_threads: { args: [], returns: i32 },
  openblas_get_corename: { args: [], returns: cstring },
  openblas_get_config: { args: [], returns: cstring },
} as const;

/** CBLAS enum values (cblas.h). */
export const CblasRowMajor = 101;
export const CblasNoTrans = 111;
export const CblasTrans = 112;
export type CblasTranspose = typeof CblasNoTrans | typeof CblasTrans;

/** Where Debian/Ubuntu put the pthread build (the alternatives link first, then the real files). */
const CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
];

export const OPENBLAS_MISSING = "OpenBLAS not found: apt-get install libopenblas0-pthread";

export interface OpenBlas {
  /** The file that was loaded. */
  readonly path: string;
  /** e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
  readonly config: string;
  /** The kernel family OpenBLAS picked for this CPU, e.g. "Haswell" or "SkylakeX". */
  readonly corename: string;
  threads: number;
  /** Row-major C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C. Pointers are host addresses. */
  sgemm(transA: CblasTranspose, transB: CblasTranspose, M: number, N: number, K: number, alpha: number,
    A: Pointer, lda: number, B: Pointer, ldb: number, beta: number, C: Pointer, ldc: number): void;
  /** Row-major y (M or N) = alpha * op(A) @ x + beta * y, A (M,N). */
  sgemv(trans: CblasTranspose, M: number, N: number, alpha: number, A: Pointer, lda: number, x: Pointer,
    beta: number, y: Pointer): void;
  close(): void;
}

/** Loads OpenBLAS from $OPENBLAS_LIB when set (only that file; "none" disables the peer), else from
 * the usual system paths; null when none loads. */
export function loadOpenBlas(): OpenBlas | null {
  const env = process.env.OPENBLAS_LIB;
  const paths = (env ? [env] : CANDIDATES).filter((p) => existsSync(p));
  for (const path of paths) {
    let lib;
    try {
      lib = dlopen(path, SYMBOLS);
    } catch {
      continue; // wrong architecture or a broken link: try the next one
    }
    const s = lib.symbols;
    const text = (c: unknown): string => (c instanceof CString ? c.toString() : String(c ?? "")).trim();
    return {
      path,
      config: text(s.openblas_get_config()),
      corename: text(s.openblas_get_corename()),
      get threads() {
        return s.openblas_get_num_threads();
      },
      set threads(n: number) {
        s.openblas_set_num_threads(n);
      },
      sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) {
        s.cblas_sgemm(CblasRowMajor, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      },
      sgemv(trans, M, N, alpha, A, lda, x, beta, y) {
        s.cblas_sgemv(CblasRowMajor, trans, M, N, alpha, A, lda, x, 1, beta, y, 1);
      },
      close() {
        lib.close();
      },
    };
  }
  return null;
}
