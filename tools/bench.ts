/**
 * `bun run bench [component...]`: runs packages/<pkg>/bench/*.bench.ts one after another, each in its
 * own process (so one benchmark's thread pools and caches do not colour the next), with stdout and
 * stderr inherited. With arguments, only the files whose name or package contains one of them run,
 * e.g. `bun run bench matmul` or `bun run bench kernels`; arguments after `--` go to every chosen file
 * (`bun run bench matmul -- 15M`). Exits non-zero when a benchmark fails or
 * when nothing matched.
 */
import { existsSync, readdirSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const filters = (dash < 0 ? argv : argv.slice(0, dash)).map((a) => a.toLowerCase());
const passOn = dash < 0 ? [] : argv.slice(dash + 1); // `bun run bench matmul -- 15M` hands "15M" to the file

interface BenchFile {
  pkg: string;
  path: string;
}

function benchFiles(): BenchFile[] {
  const pkgs = join(root, "packages");
  const out: BenchFile[] = [];
  for (const pkg of readdirSync(pkgs).sort()) {
    const dir = join(pkgs, pkg, "bench");
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) if (f.endsWith(".bench.ts")) out.push({ pkg, path: join(dir, f) });
  }
  return out;
}

const all = benchFiles();
const chosen = filters.length === 0
  ? all
  : all.filter(({ pkg, path }) => filters.some((f) => pkg.toLowerCase().includes(f) || relative(root, path).toLowerCase().split("/").pop()!.includes(f)));

if (chosen.length === 0) {
  console.error(
    filters.length ? `no benchmark matches ${filters.join(", ")}; available:` : "no benchmarks found; expected packages/*/bench/*.bench.ts",
  );
  for (const { path } of all) console.error(`  ${relative(root, path)}`);
  process.exit(1);
}

let failed = 0;
for (const { path } of chosen) {
  const rel = relative(root, path);
  console.log(`\n## ${rel}\n`);
  const proc = Bun.spawn([process.execPath, path, ...passOn], { cwd: root, stdout: "inherit", stderr: "inherit", stdin: "ignore" });
  const code = await proc.exited;
  if (code !== 0) {
    failed++;
    console.error(`bench: ${rel} exited with code ${code}`);
  }
}
process.exit(failed ? 1 : 0);
