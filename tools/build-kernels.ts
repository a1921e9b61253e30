/** Builds (or finds cached) kernel libraries and prints what was built. */
import { buildCpuLibrary } from "@tinyllama/kernels";

const lib = buildCpuLibrary();
console.log(`cpu kernels: ${lib}`);
