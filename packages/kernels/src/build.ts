/**
 * Builds the kernel shared libraries with the system compiler on first use, keyed by a hash of
 * their sources, flags and compiler, so an edited kernel is rebuilt and an unchanged one is not.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The repository's kernels/ folder (sources, header, build cache). */
export function kernelsDir(): string {
  return process.env.TINYLLAMA_KERNELS_DIR ?? resolve(import.meta.dir, "../../../kernels");
}

function buildRoot(): string {
  return process.env.TINYLLAMA_BUILD_DIR ?? join(kernelsDir(), "build");
}

function sourcesOf(dir: string, exts: string[]): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => exts.some((e) => f.endsWith(e)))
    .sort()
    .map((f) => join(dir, f));
}

function hashOf(files: string[], extra: string[]): string {
  const h = createHash("sha256");
  for (const f of files) h.update(f.slice(kernelsDir().length)).update("\0").update(readFileSync(f)).update("\0");
  for (const e of extra) h.update(e).update("\0");
  return h.digest("hex").slice(0, 16);
}

function run(cmd: string[]): { ok: boolean; out: string } {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { ok: p.exitCode === 0, out: p.stdout.toString() + p.stderr.toString() };
}

/** A prebuilt library named by an environment variable (machines that cannot compile, e.g. tools/gpu/check.sh). */
function prebuilt(envName: string): string {
  const p = resolve(process.env[envName]!);
  if (!existsSync(p)) throw new Error(`${envName}=${p} does not exist; unset it to build the library from source`);
  return p;
}

/** Finds a C compiler or throws an Error saying what to install. */
export function findCCompiler(): string {
  const candidates = [process.env.CC, "cc", "gcc", "clang"].filter((c): c is string => !!c);
  for (const c of candidates) if (Bun.which(c)) return c;
  throw new Error(
    `no C compiler found (looked for ${candidates.join(", ")}). The CPU kernels are compiled on first use: ` +
      `install one, e.g. 'apt-get install gcc' on Debian/Ubuntu, or set CC to its path.`,
  );
}

/** One shared library compiled from a few C files by `buildSharedLibrary` (e.g. kernels/dist's MPI and NCCL shims). */
export interface SharedLibrarySpec {
  /** Names the cache folder (`<build>/<name>-<hash>/`) and the file (`libtinyllama_<name>.so`). */
  name: string;
  /** The compiler command (e.g. "mpicc" or findCCompiler()); its `--version` is part of the cache key. */
  compiler: string;
  sources: string[];
  /** Files the sources include: hashed, not compiled. */
  headers?: string[];
  flags: string[];
  /** Link arguments after the sources (e.g. "-ldl"). */
  libs?: string[];
}

/**
 * Returns the path of a small shared library, compiling it if no build for the same sources,
 * flags and compiler version is cached. Throws the compiler's output when compilation fails.
 */
export function buildSharedLibrary(spec: SharedLibrarySpec): string {
  const version = run([spec.compiler, "--version"]).out.split("\n")[0] ?? spec.compiler;
  const key = hashOf([...spec.sources, ...(spec.headers ?? [])], [spec.compiler, version, ...spec.flags, "|", ...(spec.libs ?? [])]);
  const outDir = join(buildRoot(), `${spec.name}-${key}`);
  const lib = join(outDir, `libtinyllama_${spec.name}.${process.platform === "darwin" ? "dylib" : "so"}`);
  if (existsSync(lib)) return lib;
  mkdirSync(outDir, { recursive: true });
  const tmp = `${lib}.${process.pid}.tmp`; // private name + rename: concurrent ranks never load half a file
  const cmd = [spec.compiler, ...spec.flags, "-o", tmp, ...spec.sources, ...(spec.libs ?? [])];
  const r = run(cmd);
  if (!r.ok) {
    rmSync(tmp, { force: true });
    throw new Error(`compiling ${spec.name} failed (${cmd.join(" ")}):\n${r.out}`);
  }
  renameSync(tmp, lib);
  return lib;
}

export interface CpuBuildOptions {
  /** Value for -march (default "native"; e.g. "x86-64-v2" builds the portable, non-AVX-512 path). */
  arch?: string;
}

/** Returns the path of the CPU library for these options, compiling it if it is not cached. */
export function buildCpuLibrary(opts: CpuBuildOptions = {}): string {
  if (process.env.TINYLLAMA_CPU_LIB) return prebuilt("TINYLLAMA_CPU_LIB");
  const arch = opts.arch ?? process.env.TINYLLAMA_CPU_ARCH ?? "native";
  const cc = findCCompiler();
  const dir = kernelsDir();
  const sources = sourcesOf(join(dir, "cpu"), [".c"]);
  const headers = [...sourcesOf(join(dir, "include"), [".h"]), ...sourcesOf(join(dir, "cpu"), [".h"])];
  if (sources.length === 0) throw new Error(`no kernel sources found in ${join(dir, "cpu")}`);
  const flags = ["-O3", `-march=${arch}`, "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"];
  const version = run([cc, "--version"]).out.split("\n")[0] ?? cc;
  const key = hashOf([...sources, ...headers], [cc, version, ...flags]);
  const outDir = join(buildRoot(), `cpu-${arch}-${key}`);
  const lib = join(outDir, process.platform === "darwin" ? "libtinyllama_cpu.dylib" : "libtinyllama_cpu.so");
  if (existsSync(lib)) return lib;
  mkdirSync(outDir, { recursive: true });
  // Compile to a private name and rename: concurrent processes (tests, mpirun ranks) never load half a file.
  const tmp = `${lib}.${process.pid}.tmp`;
  let r = run([cc, ...flags, "-fopenmp", "-o", tmp, ...sources, "-lm"]);
  if (!r.ok && /openmp|omp\.h|-lgomp|fopenmp/i.test(r.out)) {
    process.stderr.write(`tinyllama: ${cc} has no OpenMP support; building single-threaded kernels\n`);
    r = run([cc, ...flags, "-o", tmp, ...sources, "-lm"]);
  }
  if (!r.ok) {
    rmSync(tmp, { force: true });
    throw new Error(`compiling the CPU kernels failed (${cc} ${flags.join(" ")}):\n${r.out}`);
  }
  renameSync(tmp, lib);
  return lib;
}

// ------------------------------------------------------------------------------------------ CUDA

/** The default targets: A100 (sm_80) and H100/H200 (sm_90) machine code, plus compute_90 PTX that newer GPUs JIT. */
export const CUDA_GENCODES = ["arch=compute_80,code=sm_80", "arch=compute_90,code=sm_90", "arch=compute_90,code=compute_90"];

/** Runs the commands concurrently (one shell, `&` and `wait`) and returns each one's status and output. */
function compileBatch(cmds: string[][]): { ok: boolean; out: string }[] {
  if (cmds.length === 1) return [run(cmds[0]!)];
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  const dir = mkdtempSync(join(tmpdir(), "tinyllama-nvcc-"));
  try {
    const script = cmds.map((c, i) => `(${c.map(q).join(" ")} > ${q(join(dir, `${i}.log`))} 2>&1; echo $? > ${q(join(dir, `${i}.rc`))}) &`).join("\n") + "\nwait\n";
    run(["sh", "-c", script]);
    return cmds.map((_, i) => {
      const rcFile = join(dir, `${i}.rc`), log = join(dir, `${i}.log`);
      const rc = existsSync(rcFile) ? readFileSync(rcFile, "utf8").trim() : "missing";
      return { ok: rc === "0", out: existsSync(log) ? readFileSync(log, "utf8") : `no output (exit ${rc})` };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The nvcc to use (NVCC, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin), or null when there is none. */
export function findNvcc(): string | null {
  const env = process.env.NVCC;
  if (env) return Bun.which(env) ?? (existsSync(env) ? env : null);
  const onPath = Bun.which("nvcc");
  if (onPath) return onPath;
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"]) {
    if (!home) continue;
    const p = join(home, "bin", "nvcc");
    if (existsSync(p)) return p;
  }
  return null;
}

export interface CudaBuildOptions {
  /** nvcc -gencode values (default CUDA_GENCODES; TINYLLAMA_CUDA_ARCH=90 builds sm_90 only, for quick iteration). */
  gencodes?: string[];
  /** Called before each file is compiled (progress for long builds). */
  onCompile?: (file: string) => void;
  /** Only look in the cache: throw instead of compiling (see cachedCudaLibrary). */
  cachedOnly?: boolean;
}

/**
 * The CUDA library's path if it is already built for the current sources (or given by
 * TINYLLAMA_CUDA_LIB), else null; never compiles. Tests use it so that a test run never starts a
 * multi-minute nvcc build on a shared machine: `bun run build:kernels` builds it.
 */
export function cachedCudaLibrary(opts: CudaBuildOptions = {}): string | null {
  try {
    return buildCudaLibrary({ ...opts, cachedOnly: true });
  } catch {
    return null;
  }
}

function cudaGencodes(opts: CudaBuildOptions): string[] {
  if (opts.gencodes) return opts.gencodes;
  const arch = process.env.TINYLLAMA_CUDA_ARCH;
  if (arch) {
    if (!/^\d{2,3}a?(,\d{2,3}a?)*$/.test(arch)) throw new Error(`TINYLLAMA_CUDA_ARCH must look like "90" or "80,90", got '${arch}'`);
    return arch.split(",").map((a) => `arch=compute_${a},code=sm_${a}`);
  }
  return CUDA_GENCODES;
}

/**
 * Returns the path of the CUDA kernel library (kernels/cuda/*.cu), compiling what is not cached.
 * Each .cu is compiled to its own object, keyed by its source, the shared headers, nvcc's version
 * and the flags, so editing one kernel recompiles one file; the objects are then linked with the
 * CUDA runtime linked statically (the library needs only the driver at run time; cuBLASLt is
 * dlopen()ed on first use, see kernels/cuda/cublaslt_loader.h). Throws an Error naming what to
 * install when nvcc is missing, and nvcc's output when a file does not compile.
 */
export function buildCudaLibrary(opts: CudaBuildOptions = {}): string {
  if (process.env.TINYLLAMA_CUDA_LIB) return prebuilt("TINYLLAMA_CUDA_LIB");
  const nvcc = findNvcc();
  if (!nvcc)
    throw new Error(
      "nvcc (the CUDA compiler) was not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin. The CUDA kernels are " +
        "compiled on first use: install the CUDA toolkit (e.g. the cuda-nvcc package from NVIDIA's repository), or set NVCC to its path.",
    );
  const dir = kernelsDir();
  const sources = sourcesOf(join(dir, "cuda"), [".cu"]);
  if (sources.length === 0) throw new Error(`no CUDA kernel sources found in ${join(dir, "cuda")}`);
  const headers = [...sourcesOf(join(dir, "include"), [".h"]), ...sourcesOf(join(dir, "cuda"), [".h", ".cuh"])];
  const gencodes = cudaGencodes(opts);
  const threads = (navigator.hardwareConcurrency ?? 1) >= 4 ? "0" : "1"; // nvcc --threads: gencode targets in parallel
  const flags = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-Wall", ...gencodes.flatMap((g) => ["-gencode", g])];
  const version = run([nvcc, "--version"]).out.trim().split("\n").pop() ?? nvcc;
  const libKey = hashOf([...sources, ...headers], [version, ...flags]);
  const outDir = join(buildRoot(), `cuda-${libKey}`);
  const lib = join(outDir, "libtinyllama_cuda.so");
  if (existsSync(lib)) return lib;
  if (opts.cachedOnly) throw new Error(`the CUDA library is not built for these sources (${lib}): run 'bun run build:kernels'`);

  const objDir = join(buildRoot(), "cuda-obj");
  mkdirSync(objDir, { recursive: true });
  const objects: string[] = [];
  const todo: { src: string; obj: string; tmp: string }[] = [];
  for (const src of sources) {
    const key = hashOf([src, ...headers], [version, ...flags]);
    const name = src.slice(src.lastIndexOf("/") + 1).replace(/\.cu$/, "");
    const obj = join(objDir, `${name}-${key}.o`);
    objects.push(obj);
    if (!existsSync(obj)) todo.push({ src, obj, tmp: `${obj}.${process.pid}.tmp` });
  }
  // One file at a time on small machines (shared 2-core boxes); in parallel batches on big ones
  // (a GPU machine's time is scarce). TINYLLAMA_NVCC_JOBS overrides.
  const jobs = Math.max(1, Number(process.env.TINYLLAMA_NVCC_JOBS) || ((navigator.hardwareConcurrency ?? 1) >= 8 ? 6 : 1));
  for (let i = 0; i < todo.length; i += jobs) {
    const batch = todo.slice(i, i + jobs);
    for (const t of batch) opts.onCompile?.(t.src);
    const results = compileBatch(batch.map((t) => [nvcc, ...flags, "--threads", threads, "-c", t.src, "-o", t.tmp]));
    batch.forEach((t, j) => {
      const r = results[j]!;
      if (!r.ok) {
        for (const u of batch) rmSync(u.tmp, { force: true });
        throw new Error(`compiling ${t.src} failed (${nvcc} ${flags.join(" ")}):\n${r.out}`);
      }
    });
    for (const t of batch) renameSync(t.tmp, t.obj);
  }
  mkdirSync(outDir, { recursive: true });
  const tmp = `${lib}.${process.pid}.tmp`;
  const r = run([nvcc, "-shared", "--cudart", "static", ...gencodes.flatMap((g) => ["-gencode", g]), "-o", tmp, ...objects, "-ldl"]);
  if (!r.ok) {
    rmSync(tmp, { force: true });
    throw new Error(`linking the CUDA kernel library failed:\n${r.out}`);
  }
  renameSync(tmp, lib);
  return lib;
}
