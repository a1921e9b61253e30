/**
 * Builds (or finds cached) kernel libraries and prints what was built.
 *
 *   bun run build:kernels            CPU library; the CUDA library too when nvcc is found
 *   bun run build:kernels --cuda     require the CUDA library (fails without nvcc)
 *   bun run build:kernels --no-cuda  CPU library only
 *
 * CI runs this before the tests, so on a machine with nvcc every kernels/cuda/*.cu is compiled
 * and a CUDA compile error fails CI, GPU or not. Objects are cached per file (kernels/build/), so
 * a rebuild after editing one kernel recompiles one file.
 */
import { buildCpuLibrary, buildCudaLibrary, findNvcc } from "@tinyllama/kernels";

const args = new Set(process.argv.slice(2));
for (const a of args)
  if (a !== "--cuda" && a !== "--no-cuda") {
    console.error(`build-kernels: unknown argument '${a}' (use --cuda or --no-cuda)`);
    process.exit(2);
  }

const lib = buildCpuLibrary();
console.log(`cpu kernels: ${lib}`);

const nvcc = findNvcc();
if (args.has("--no-cuda")) {
  console.log("cuda kernels: skipped (--no-cuda)");
} else if (!nvcc && !args.has("--cuda")) {
  console.log("cuda kernels: skipped (no nvcc found; pass --cuda to make that an error)");
} else {
  const t0 = performance.now();
  try {
    const cuda = buildCudaLibrary({ onCompile: (f) => console.log(`  nvcc ${f.slice(f.lastIndexOf("/kernels/") + 1)}`) });
    console.log(`cuda kernels: ${cuda} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    console.error(`cuda kernels: FAILED\n${(e as Error).message}`);
    process.exit(1);
  }
}
