/** Launches test/workers/*.ts under `mpirun -np N` from bun:test and collects what happened. */
import { join } from "node:path";

export const MPIRUN = Bun.which("mpirun");

export interface MpiRun {
  code: number;
  /** stdout and stderr, interleaved as they arrived. */
  out: string;
  seconds: number;
}

export interface MpiRunOptions {
  np?: number;
  env?: Record<string, string>;
  /** Called with the output so far each time more arrives (e.g. to kill a rank once it is ready). */
  onOutput?: (outSoFar: string) => void;
  /** Kill mpirun after this many seconds (the test then fails on the time bound, not by hanging). */
  killAfterS?: number;
  /** Extra mpirun options (e.g. --bind-to none). */
  mpirunArgs?: string[];
}

export async function mpirun(worker: string, args: string[] = [], opts: MpiRunOptions = {}): Promise<MpiRun> {
  if (!MPIRUN) throw new Error("mpirun not found");
  const cmd = [MPIRUN, "-np", String(opts.np ?? 2), "--oversubscribe"];
  if (process.getuid?.() === 0) cmd.push("--allow-run-as-root");
  cmd.push(...(opts.mpirunArgs ?? []));
  cmd.push(process.execPath, join(import.meta.dir, "workers", worker), ...args);
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    // One thread per rank: the box is small and shared, and ranks must not fight over cores.
    env: withoutEmpty({ ...process.env, TINYLLAMA_THREADS: "1", OMP_NUM_THREADS: "1", TINYLLAMA_COLLECTIVE_TIMEOUT_S: "60", TINYLLAMA_QUIET: "1", ...opts.env }),
  });
  const killer = setTimeout(() => proc.kill("SIGKILL"), (opts.killAfterS ?? 180) * 1000);
  let out = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      out += decoder.decode(value, { stream: true });
      opts.onOutput?.(out);
    }
  };
  await Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const code = await proc.exited;
  clearTimeout(killer);
  return { code, out, seconds: (performance.now() - t0) / 1000 };
}

/** An empty value in `env` removes the variable (e.g. OMP_NUM_THREADS: "" to test the defaults). */
function withoutEmpty(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ""));
}
