/**
 * Builds the kernel shared libraries with the system compiler on first use, keyed by a hash of
 * their sources, flags and compiler, so an edited kernel is rebuilt and an unchanged one is not.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
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
