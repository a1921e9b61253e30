/**
 * PyTorch CPU eager as a benchmark peer: one long-lived `python3 tools/bench/step_torch.py --serve`
 * child (same thread count as ours), asked for short blocks of timed calls that a bench interleaves
 * with its own, so load from the rest of the machine falls on both sides alike.
 */
import { join, resolve } from "node:path";
import { benchQuick, median, type BenchRow } from "./harness.ts";

export interface TorchPeer {
  /** torch.__version__ */
  version: string;
  /** Runs `reps` timed calls of a component (see step_torch.py): wall and process-CPU seconds of each. */
  time(component: string, args: Record<string, number | string>, reps: number): Promise<{ wall: number[]; cpu: number[] }>;
  close(): void;
}

const SCRIPT = resolve(import.meta.dir, "step_torch.py");

let missingReason = "";

/** Why the last startTorchPeer() returned null, for a BenchRow's `peerMissing` ("" when it started). */
export function torchPeerMissing(): string {
  return missingReason;
}

/** Starts the peer, or returns null with the reason printed (no python3 / no torch). */
export async function startTorchPeer(threads: number): Promise<TorchPeer | null> {
  const python = process.env.PYTHON ?? "/usr/bin/python3";
  missingReason = "";
  if (!Bun.which(python)) {
    missingReason = `PyTorch unavailable: ${python} not found (apt-get install python3-torch libopenblas0-pthread)`;
    console.log(`PEER MISSING: ${missingReason}; ours only`);
    return null;
  }
  const proc = Bun.spawn([python, SCRIPT, "--serve", "--threads", String(threads)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
    // Same OpenMP wait policy as ours (benchWaitPolicy() defaults it to passive in our process).
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? "passive" },
    cwd: join(import.meta.dir, "../.."),
  });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  const nextLine = async (): Promise<string | null> => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return line;
      }
      const { done, value } = await reader.read();
      if (done) return null;
      buf += decoder.decode(value, { stream: true });
    }
  };
  const hello = await nextLine();
  if (!hello) {
    missingReason = "PyTorch unavailable: python3 tools/bench/step_torch.py failed to start (apt-get install python3-torch libopenblas0-pthread)";
    console.log(`PEER MISSING: ${missingReason}; ours only`);
    return null;
  }
  const { torch: version } = JSON.parse(hello) as { torch: string };
  return {
    version,
    async time(component, args, reps) {
      proc.stdin.write(JSON.stringify({ component, args, reps }) + "\n");
      proc.stdin.flush();
      const line = await nextLine();
      if (!line) throw new Error(`PyTorch peer exited during '${component}'`);
      const r = JSON.parse(line) as { seconds: number[]; cpu_seconds: number[] };
      return { wall: r.seconds, cpu: r.cpu_seconds };
    },
    close() {
      proc.stdin.end();
      proc.kill();
    },
  };
}

export interface PairTiming {
  /** median wall seconds per call */
  ours: number;
  peer: number | null;
  oursSamples: number[];
  peerSamples: number[];
  /**
   * Median process CPU seconds per call (all threads). Other tenants of a shared machine stretch
   * wall time but barely CPU time, so the CPU-time ratio is the steadier of the two.
   */
  oursCpu: number;
  peerCpu: number | null;
}

/**
 * Alternates blocks of `reps` calls (ours, peer, peer, ours, ...) for `rounds` rounds and returns the
 * median seconds per call of both. Every block of short calls starts with one untimed call that
 * absorbs the hand-over, and each candidate's block is followed by a pause so its idle thread pools stop
 * spinning before the other runs (OpenBLAS's pthreads spin ~0.1 s after a call; without the pause a
 * 0.2 ms kernel of ours measured 50 ms right after a PyTorch block).
 */
export async function interleavedWithPeer(
  ours: () => void,
  peer: TorchPeer | null,
  component: string,
  args: Record<string, number | string>,
  opts: { rounds?: number; reps?: number } = {},
): Promise<PairTiming> {
  const rounds = opts.rounds ?? Number(process.env.BENCH_ROUNDS ?? (benchQuick() ? 2 : 5));
  const reps = opts.reps ?? 3;
  const settle = { ours: 5, peer: 200 };
  const t0 = Bun.nanoseconds();
  ours();
  // Hand-over calls matter for short calls only; a call of seconds absorbs its own start-up.
  const long = (Bun.nanoseconds() - t0) * 1e-9 > 0.5;
  if (peer) await peer.time(component, args, 1);
  Bun.sleepSync(settle.peer);
  const oursSamples: number[] = [], peerSamples: number[] = [], oursCpu: number[] = [], peerCpu: number[] = [];
  const runPeer = async (p: TorchPeer) => {
    if (!long) await p.time(component, args, 1); // untimed hand-over call
    const r = await p.time(component, args, reps);
    peerSamples.push(...r.wall);
    peerCpu.push(...r.cpu);
    Bun.sleepSync(settle.peer);
  };
  const runOurs = () => {
    if (!long) ours(); // untimed hand-over call
    for (let i = 0; i < reps; i++) {
      const c0 = process.cpuUsage(), t0 = Bun.nanoseconds();
      ours();
      oursSamples.push((Bun.nanoseconds() - t0) * 1e-9);
      const c = process.cpuUsage(c0);
      oursCpu.push((c.user + c.system) * 1e-6);
    }
    Bun.sleepSync(settle.ours);
  };
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) runOurs();
    if (peer) await runPeer(peer);
    if (r % 2 === 1) runOurs();
  }
  return {
    ours: median(oursSamples),
    peer: peer ? median(peerSamples) : null,
    oursSamples,
    peerSamples,
    oursCpu: median(oursCpu),
    peerCpu: peer ? median(peerCpu) : null,
  };
}

/** "ratio (PyTorch time / ours): wall 1.23x, CPU time 1.45x" plus the CPU seconds behind it. */
export function ratioLine(t: PairTiming): string {
  if (t.peer === null || t.peerCpu === null) return "  ratio: no peer";
  const ms = (s: number) => (s < 1 ? `${(s * 1e3).toFixed(2)} ms` : `${s.toFixed(2)} s`);
  return (
    `  ratio (PyTorch time / ours, >1 = ours faster): wall ${(t.peer / t.ours).toFixed(2)}x, ` +
    `CPU time ${(t.peerCpu / t.oursCpu).toFixed(2)}x (CPU per call: ours ${ms(t.oursCpu)}, PyTorch ${ms(t.peerCpu)})`
  );
}

/**
 * A scoreboard row (higher is better) from an interleaved timing against PyTorch eager: `flops` or
 * `bytes` per call turn seconds into GFLOP/s or GB/s, which also fill the row's gflops / gbs for the
 * "of ceiling" column. The note carries the CPU-time ratio, the steadier one on a shared machine.
 */
export function torchScoreRow(
  peer: TorchPeer | null,
  threads: number,
  t: PairTiming,
  what: { component: string; case: string; unit: string; flops?: number; bytes?: number; target?: number },
): BenchRow {
  const work = what.flops ?? what.bytes ?? NaN;
  const rate = (sec: number): number => work / sec / 1e9;
  return {
    component: what.component,
    case: what.case,
    unit: what.unit,
    ours: rate(t.ours),
    peer: t.peer === null ? null : rate(t.peer),
    peerName: peer ? `PyTorch ${peer.version} CPU eager, ${threads} threads` : "PyTorch CPU eager",
    higherIsBetter: true,
    ...(what.target === undefined ? {} : { target: what.target }),
    ...(what.flops === undefined ? {} : { gflops: rate(t.ours) }),
    ...(what.bytes === undefined ? {} : { gbs: rate(t.ours) }),
    ...(t.peerCpu === null ? {} : { note: `CPU-time ratio ${(t.peerCpu / t.oursCpu).toFixed(2)}x` }),
    ...(peer ? {} : { peerMissing: torchPeerMissing() || "PyTorch unavailable (apt-get install python3-torch libopenblas0-pthread)" }),
  };
}
