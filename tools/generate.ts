/**
 * `bun run generate --model DIR|RUN_DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N]
 *    [--temperature T] [--top-k K] [--top-p P] [--seed S] [--chat] [--json] [--threads N]
 *    [--dtype f32|bf16|auto] [--profile]`
 *
 * Generates a continuation with the KV-cache InferenceSession of @tinyllama/generate, streaming text
 * to stdout as it is produced. DIR is a Hugging Face Llama directory (tokenizer files in it);
 * RUN_DIR a training run directory, whose final model is read from RUN_DIR/hf.
 *  --prompt TEXT       encoded with the model's tokenizer (BOS added as the tokenizer is configured)
 *  --prompt-ids 1,2,3  used exactly as given (no BOS added)
 *  --chat              TEXT becomes a user message rendered with the directory's chat_template
 *                      (tokenizer_config.json) or the built-in TinyLlama-Chat (Zephyr) template
 *  --json              the last line of output is {"ids": [...], "text": "...", "tokens_per_s": x}
 *  --dtype             storage of the Linear weights: f32 (default; exact), bf16 (half the memory, faster
 *                      decode on AVX-512 CPUs; embeddings and norms stay f32), auto (bf16 on an AVX-512
 *                      CPU build, else f32)
 *  --profile           time every kernel of the decode steps and print a per-op table (ms per token,
 *                      share, GFLOP/s, GB/s) to stderr after generating
 * Sampling defaults to greedy (temperature 0); top-k 0 and top-p 1 are off; seed 0. OpenMP threads wait
 * passively (sleep) between kernels unless OMP_WAIT_POLICY is set.
 * Errors are one line on stderr, exit code 1 (2 for bad flags).
 */
import { parseArgs } from "node:util";
import { InferenceSession, generate, loadChatTemplate, loadModel, renderChat } from "@tinyllama/generate";
import { openBackend, type Profiler } from "@tinyllama/kernels";
import { setCEnv } from "./bench/harness.ts";

const USAGE = `usage: bun run generate --model DIR|RUN_DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N]
       [--temperature T] [--top-k K] [--top-p P] [--seed S] [--chat] [--json] [--threads N]
       [--dtype f32|bf16|auto] [--profile]`;

class UsageError extends Error {}

function num(name: string, v: string | undefined, check: (x: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x) || !check(x)) throw new UsageError(`--${name} must be ${what}, got ${JSON.stringify(v)}`);
  return x;
}

function parseIds(s: string): number[] {
  const parts = s.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`--prompt-ids must be comma-separated non-negative integers, got ${JSON.stringify(s)}`);
  return parts.map(Number);
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: "string" },
        prompt: { type: "string" },
        "prompt-ids": { type: "string" },
        "max-new-tokens": { type: "string" },
        temperature: { type: "string" },
        "top-k": { type: "string" },
        "top-p": { type: "string" },
        seed: { type: "string" },
        threads: { type: "string" },
        dtype: { type: "string" },
        profile: { type: "boolean" },
        chat: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]!);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.model) throw new UsageError("missing --model DIR");
  if ((values.prompt === undefined) === (values["prompt-ids"] === undefined)) throw new UsageError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  if (values.chat && values["prompt-ids"] !== undefined) throw new UsageError("--chat renders a text prompt; it cannot be combined with --prompt-ids");
  const maxNewTokens = num("max-new-tokens", values["max-new-tokens"], (x) => Number.isInteger(x) && x >= 0, "an integer >= 0") ?? 128;
  const temperature = num("temperature", values.temperature, (x) => x >= 0, "a number >= 0") ?? 0;
  const topK = num("top-k", values["top-k"], (x) => Number.isInteger(x) && x >= 0, "an integer >= 0") ?? 0;
  const topP = num("top-p", values["top-p"], (x) => x > 0 && x <= 1, "a number in (0, 1]") ?? 1;
  const seed = num("seed", values.seed, (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32, "an integer in [0, 2^32)") ?? 0;
  const threads = num("threads", values.threads, (x) => Number.isInteger(x) && x >= 1, "an integer >= 1");
  const idsGiven = values["prompt-ids"] !== undefined ? parseIds(values["prompt-ids"]) : null;
  const dtype = values.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "bf16" && dtype !== "auto") throw new UsageError(`--dtype must be f32, bf16 or auto, got ${JSON.stringify(dtype)}`);

  // Passive OpenMP waits unless the user chose: a decode step is ~150 short parallel regions, and with
  // libgomp's spinning waits a thread descheduled on a busy machine turned each into a scheduler tick
  // (15M decode at 2 threads here: 4.5 tok/s spinning, 164 passive). Before openBackend loads libgomp.
  if (process.env.OMP_WAIT_POLICY === undefined) setCEnv("OMP_WAIT_POLICY", "passive");
  const backend = openBackend(threads !== undefined ? { threads } : {});
  const { dir, model, tokenizer, weights } = loadModel(values.model, { backend, weights: dtype });
  try {
    let prompt: number[];
    if (idsGiven) prompt = idsGiven;
    else {
      if (!tokenizer) throw new Error(`${dir} has no tokenizer.json or tokenizer.model; pass --prompt-ids instead of --prompt`);
      let text = values.prompt!;
      if (values.chat) {
        const chat = loadChatTemplate(dir);
        text = renderChat(chat, [{ role: "user", content: text }]);
        // The rendered text carries its special tokens (</s>) as text; BOS only if the template did not write it.
        const bos = !text.startsWith(chat.bosToken);
        prompt = Array.from(tokenizer.encode(text, { bos, special: true }));
      } else prompt = Array.from(tokenizer.encode(text));
    }
    const V = model.cfg.vocabSize, ctx = model.cfg.maxSeqLen;
    const bad = prompt.findIndex((t) => t >= V);
    if (bad >= 0) throw new Error(`prompt id ${prompt[bad]} at index ${bad} is outside the vocabulary [0, ${V})`);
    if (prompt.length === 0) throw new Error("the prompt is empty");
    if (prompt.length > ctx) throw new Error(`the prompt has ${prompt.length} tokens but the model's context is ${ctx}; shorten it`);
    const session = InferenceSession.create(model);
    try {
      let profiler: Profiler | null = null;
      const r = generate(session, prompt, {
        maxNewTokens, temperature, topK, topP, seed, tokenizer,
        onToken: (_id, piece) => {
          if (piece) process.stdout.write(piece);
        },
        // Only the decode steps are profiled: the prompt's prefill is batched work with another profile.
        onPrefilled: values.profile ? () => void (profiler = backend.startProfile()) : undefined,
      });
      if (values.profile) backend.stopProfile();
      process.stdout.write("\n");
      process.stderr.write(
        `${r.ids.length} tokens (${r.stop}) in ${(r.prefillSeconds + r.decodeSeconds).toFixed(3)} s: prefill ${r.promptTokens} tokens ` +
          `${(r.promptTokens / Math.max(r.prefillSeconds, 1e-9)).toFixed(1)} tok/s, ${r.tokensPerSecond.toFixed(2)} new tok/s\n`,
      );
      if (profiler) {
        const p: Profiler = profiler;
        process.stderr.write(
          r.steps === 0
            ? "profile: no decode steps ran (generate at least 2 tokens)\n"
            : `profile: ${r.steps} decode steps at batch 1 on ${backend.kind} (${backend.threads} threads), ${weights} weights: ` +
                `${((r.decodeSeconds / r.steps) * 1000).toFixed(2)} ms/token (sampling included), ${(r.steps / r.decodeSeconds).toFixed(2)} tok/s\n\n` +
                p.table(r.steps, r.decodeSeconds).replace("per step", "per token") + "\n",
        );
      }
      if (values.json) console.log(JSON.stringify({ ids: r.ids, text: r.text, tokens_per_s: r.tokensPerSecond }));
    } finally {
      session.free();
    }
  } finally {
    model.free();
  }
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  console.error(`generate: ${msg.split("\n").join(" ")}`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
