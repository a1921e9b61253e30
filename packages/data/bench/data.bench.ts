/**
 * Data pipeline throughput:
 *  - DataLoader random B x (T+1) batches from uint16 shards (tokens/s, best of 5), against nanoGPT's get_batch
 *    (numpy memmap + per-row slices, python3, same shards, same machine) run in the same script;
 *  - prepare() MB/s with a byte-level tokenizer, in-thread vs 1 and 2 worker threads, and with the
 *    Llama 2 tokenizer (when @tinyllama/tokenizer is installed), 1 vs 2 workers.
 * Run: ./node_modules/.bin/bun packages/data/bench/data.bench.ts   (BENCH_QUICK=1: 100 batches, 6 MB for prepare)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataLoader, prepare, writeShard } from "@tinyllama/data";
import { benchQuick, peerMissing, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const dir = mkdtempSync(join(tmpdir(), "tl-data-bench-"));
const quick = benchQuick();
const B = 16, T = 1024, BATCHES = quick ? 100 : 400;
const PREPARE_BYTES = quick ? 6e6 : 24e6;
const scoreRows: BenchRow[] = [];
try {
  // 4 shards x 8M tokens
  const shard = new Uint16Array(8_000_000);
  for (let i = 0; i < shard.length; i++) shard[i] = (i * 2654435761) % 32000;
  for (let s = 0; s < 4; s++) writeShard(join(dir, `train_00${s}.bin`), shard, { vocabSize: 32000 });
  writeFileSync(join(dir, "train.bin"), new Uint8Array(shard.buffer)); // the same tokens raw, for numpy's memmap

  const loader = new DataLoader({ path: dir, B, T, seed: 1 });
  const out = new Int32Array(B * (T + 1));
  for (let i = 0; i < 20; i++) loader.next(out);
  let t0 = 0, ours = 0;
  for (let round = 0; round < 5; round++) { // best of 5: the machine is shared
    t0 = performance.now();
    for (let i = 0; i < BATCHES; i++) loader.next(out);
    ours = Math.max(ours, (BATCHES * B * (T + 1)) / ((performance.now() - t0) / 1000));
  }

  const py = `
import numpy as np, time
data = np.memmap(${JSON.stringify(join(dir, "train.bin"))}, dtype=np.uint16, mode="r")
rng = np.random.default_rng(1)
def get_batch():
    ix = rng.integers(0, len(data) - ${T + 1}, size=${B})
    return np.stack([data[i:i + ${T + 1}].astype(np.int32) for i in ix])
for _ in range(20): get_batch()
best = 0
for _ in range(5):
    t = time.perf_counter()
    for _ in range(${BATCHES}): get_batch()
    best = max(best, ${BATCHES * B * (T + 1)} / (time.perf_counter() - t))
print(best, np.__version__)
`;
  const r = Bun.spawnSync(["python3", "-c", py], { stdout: "pipe", stderr: "pipe" });
  const [peer, npVersion] = r.exitCode === 0 ? r.stdout.toString().trim().split(" ") : [];
  const M = (x: number) => `${(x / 1e6).toFixed(1)}M`;
  console.log(`data bench: B=${B} T=${T}, 32M-token corpus in 4 uint16 shards, load average ${(await Bun.file("/proc/loadavg").text()).split(" ")[0]}`);
  console.log(
    `  DataLoader random batches   ${M(ours)} tokens/s` +
      (peer ? `; nanoGPT-style numpy ${npVersion} memmap get_batch ${M(Number(peer))} tokens/s -> ${(ours / Number(peer)).toFixed(2)}x` : ` (numpy peer unavailable: ${r.stderr.toString().trim().split("\n").pop()})`),
  );
  scoreRows.push({
    component: "data",
    case: `DataLoader random batches B=${B} T=${T}, uint16 shards, best of 5`,
    unit: "Mtok/s",
    ours: ours / 1e6,
    peer: peer ? Number(peer) / 1e6 : null,
    peerName: `nanoGPT get_batch (numpy${npVersion ? ` ${npVersion}` : ""} memmap + np.stack), python3`,
    higherIsBetter: true,
    gbs: (ours * 6) / 1e9, // 2 bytes read, 4 written per token
    ...(peer ? {} : { peerMissing: peerMissing("numpy", `${r.stderr.toString().trim().split("\n").pop()} (apt-get install python3-numpy)`) }),
  });

  // prepare: ~24 MB of jsonl through a byte-level tokenizer
  const docs: string[] = [];
  for (let i = 0, size = 0; size < PREPARE_BYTES; i++) {
    const text = `Document ${i}: ` + "the quick brown fox jumps over the lazy dog. ".repeat(5 + (i % 40));
    docs.push(JSON.stringify({ text }));
    size += text.length;
  }
  writeFileSync(join(dir, "corpus.jsonl"), docs.join("\n"));
  const tokenizer = { module: join(import.meta.dir, "../test/byte-tokenizer.ts") };
  const mbps: Record<string, number> = {};
  for (const threads of [0, 1, 2]) {
    t0 = performance.now();
    const meta = await prepare({ inputs: [join(dir, "corpus.jsonl")], out: join(dir, `out${threads}`), tokenizer, threads, shardTokens: 1 << 24 });
    mbps[threads] = meta.inputs.bytes / 1e6 / ((performance.now() - t0) / 1000);
  }
  console.log(
    `  prepare (byte tokenizer)     in-thread ${mbps[0]!.toFixed(1)} MB/s, 1 worker ${mbps[1]!.toFixed(1)} MB/s, 2 workers ${mbps[2]!.toFixed(1)} MB/s -> ${(mbps[2]! / mbps[0]!).toFixed(2)}x in-thread`,
  );
  scoreRows.push({
    component: "data",
    case: `prepare jsonl -> shards, byte tokenizer, 2 workers (${(PREPARE_BYTES / 1e6).toFixed(0)} MB)`,
    unit: "MB/s",
    ours: mbps[2]!,
    peer: null,
    peerName: null,
    higherIsBetter: true,
    note: `in-thread ${mbps[0]!.toFixed(1)} MB/s, 1 worker ${mbps[1]!.toFixed(1)} MB/s`,
  });

  // the real Llama 2 tokenizer (tools/prepare.ts's adapter over @tinyllama/tokenizer), when installed
  let installed = true;
  try {
    Bun.resolveSync("@tinyllama/tokenizer", import.meta.dir);
  } catch {
    installed = false;
  }
  if (installed) {
    const small = join(dir, "small.jsonl");
    writeFileSync(small, docs.slice(0, Math.ceil(docs.length / 8)).join("\n")); // ~3 MB
    const llama = { module: join(import.meta.dir, "../../../tools/prepare.ts"), options: { spec: "llama2" } };
    const rate: Record<number, number> = {};
    for (const threads of [1, 2]) {
      t0 = performance.now();
      const meta = await prepare({ inputs: [small], out: join(dir, `llama${threads}`), tokenizer: llama, threads });
      rate[threads] = meta.inputs.bytes / 1e6 / ((performance.now() - t0) / 1000);
    }
    console.log(`  prepare (Llama 2 tokenizer)  1 worker ${rate[1]!.toFixed(2)} MB/s, 2 workers ${rate[2]!.toFixed(2)} MB/s -> ${(rate[2]! / rate[1]!).toFixed(2)}x`);
    scoreRows.push({
      component: "data",
      case: "prepare jsonl -> shards, Llama 2 tokenizer, 2 workers",
      unit: "MB/s",
      ours: rate[2]!,
      peer: null,
      peerName: null,
      higherIsBetter: true,
      note: `1 worker ${rate[1]!.toFixed(2)} MB/s`,
    });
  } else console.log("  prepare (Llama 2 tokenizer)  skipped: @tinyllama/tokenizer is not installed");
  reportRows(scoreRows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
