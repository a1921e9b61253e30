// tools/generate.ts and tools/eval.ts, run as a user runs them.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeShard } from "@tinyllama/data";
import { ZEPHYR_TEMPLATE, loadChatTemplate, renderChat } from "../src/index.ts";

const ROOT = join(import.meta.dir, "../../..");
const FIX = join(ROOT, "test/fixtures");
const MODEL = join(FIX, "gen_tiny_f32");
interface Expected {
  prompt: number[]; greedy: number[]; eval_tokens: number[];
  eval_loss_32: number; eval_count_32: number; eval_loss_128: number; eval_count_128: number; text_loss_32: number; text_count_32: number;
}
const ex = JSON.parse(readFileSync(join(FIX, "gen_expected.json"), "utf8")) as Expected;
const tmp = mkdtempSync(join(tmpdir(), "gen-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(tool: "generate" | "eval", args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, `tools/${tool}.ts`), ...args], { cwd: ROOT, env: { ...process.env, TINYLLAMA_QUIET: "1", TINYLLAMA_THREADS: "1" } });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}
const lastJson = (out: string): Record<string, unknown> => JSON.parse(out.trimEnd().split("\n").pop()!) as Record<string, unknown>;
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
const SLOW = 120_000;

describe("bun run generate", () => {
  test("--prompt-ids (no BOS added) --json: the last line holds PyTorch's greedy continuation", () => {
    const r = run("generate", ["--model", MODEL, "--prompt-ids", ex.prompt.join(","), "--max-new-tokens", "50", "--json"]);
    expect(r.code).toBe(0);
    const j = lastJson(r.stdout);
    expect(j.ids).toEqual(ex.greedy);
    expect(typeof j.text).toBe("string");
    expect(j.tokens_per_s).toBeGreaterThan(0);
    expect(Object.keys(j)).toEqual(["ids", "text", "tokens_per_s"]);
    // The streamed text precedes the JSON line.
    expect(r.stdout.startsWith(j.text as string)).toBe(true);
  }, SLOW);

  test("a training run directory is read from RUN_DIR/hf", () => {
    const runDir = join(tmp, "run");
    mkdirSync(runDir);
    symlinkSync(MODEL, join(runDir, "hf"));
    const r = run("generate", ["--model", runDir, "--prompt-ids", ex.prompt.join(","), "--max-new-tokens", "5", "--json"]);
    expect(r.code).toBe(0);
    expect(lastJson(r.stdout).ids).toEqual(ex.greedy.slice(0, 5));
  }, SLOW);

  test("sampling is deterministic for a seed (text prompt, temperature, top-k, top-p)", () => {
    const args = (seed: string): string[] => ["--model", MODEL, "--prompt", "the quick brown fox", "--max-new-tokens", "20", "--temperature", "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", seed, "--json"];
    const a = lastJson(run("generate", args("1")).stdout), b = lastJson(run("generate", args("1")).stdout), c = lastJson(run("generate", args("2")).stdout);
    expect(a.ids).toEqual(b.ids);
    expect(a.text).toBe(b.text as string);
    expect(a.ids).not.toEqual(c.ids);
    expect((a.ids as number[]).length).toBe(20);
  }, SLOW);

  test("--chat renders the prompt with a chat template and generates", () => {
    const r = run("generate", ["--model", MODEL, "--prompt", "Hello", "--chat", "--max-new-tokens", "3", "--json"]);
    expect(r.code).toBe(0);
    expect((lastJson(r.stdout).ids as number[]).length).toBe(3);
  }, SLOW);

  test("--dtype bf16: bf16 Linear weights give PyTorch's greedy continuation on this fixture too", () => {
    const r = run("generate", ["--model", MODEL, "--prompt-ids", ex.prompt.join(","), "--max-new-tokens", "50", "--json", "--dtype", "bf16"]);
    expect(r.code).toBe(0);
    expect(lastJson(r.stdout).ids).toEqual(ex.greedy);
  }, SLOW);

  test("--profile prints a per-op table of the decode steps (matmul and attention_decode rows) to stderr", () => {
    for (const [dtype, matmul] of [["f32", "matmul_forward"], ["bf16", "matmul_forward_wbf16"]]) {
      const r = run("generate", ["--model", MODEL, "--prompt-ids", ex.prompt.join(","), "--max-new-tokens", "8", "--json", "--profile", "--dtype", dtype!]);
      expect(r.code).toBe(0);
      expect(lastJson(r.stdout).ids).toEqual(ex.greedy.slice(0, 8)); // stdout keeps its contract
      expect(r.stderr).toMatch(new RegExp(`profile: 7 decode steps at batch 1 on cpu \\(1 threads\\), ${dtype} weights: [\\d.]+ ms/token`));
      // L = 2 layers: 7 Linear layers each per token (the LM head is the 15th), one attention_decode per layer
      expect(r.stderr).toMatch(new RegExp(`\\| ${matmul} \\| 15 \\| [\\d.]+ \\| [\\d.]+% \\| [\\d.]+ \\| [\\d.]+ \\|`));
      expect(r.stderr).toMatch(/\| attention_decode \| 2 \|/);
      expect(r.stderr).toMatch(/\| all kernels \|/);
      expect(r.stderr).toMatch(/ms per token; the rest/);
    }
  }, SLOW);

  test("bad flags, missing directories and long prompts are one-line errors", () => {
    const long = Array.from({ length: 129 }, () => "5").join(",");
    const cases: [string[], number, RegExp][] = [
      [["--model", MODEL, "--prompt-ids", "1,2", "--bogus"], 2, /^generate: .*bogus/],
      [["--prompt-ids", "1,2"], 2, /^generate: missing --model DIR$/],
      [["--model", MODEL], 2, /^generate: give exactly one of --prompt TEXT or --prompt-ids 1,2,3$/],
      [["--model", MODEL, "--prompt", "a", "--prompt-ids", "1"], 2, /exactly one of/],
      [["--model", MODEL, "--prompt-ids", "1,x"], 2, /--prompt-ids must be comma-separated non-negative integers/],
      [["--model", MODEL, "--prompt-ids", "1", "--temperature=-1"], 2, /--temperature must be a number >= 0, got "-1"/],
      [["--model", MODEL, "--prompt-ids", "1", "--top-p", "0"], 2, /--top-p must be a number in \(0, 1\]/],
      [["--model", MODEL, "--prompt-ids", "1", "--max-new-tokens", "2.5"], 2, /--max-new-tokens must be an integer >= 0/],
      [["--model", join(tmp, "nope"), "--prompt-ids", "1"], 1, /^generate: model directory '.*nope' does not exist$/],
      [["--model", tmp, "--prompt-ids", "1"], 1, /has no config\.json, nor hf\/config\.json/],
      [["--model", MODEL, "--prompt-ids", long], 1, /^generate: the prompt has 129 tokens but the model's context is 128; shorten it$/],
      [["--model", MODEL, "--prompt-ids", "1,512"], 1, /prompt id 512 at index 1 is outside the vocabulary \[0, 512\)/],
      [["--model", MODEL, "--prompt-ids", "1", "--dtype", "f16"], 2, /^generate: --dtype must be f32, bf16 or auto, got "f16"$/],
    ];
    for (const [args, code, re] of cases) {
      const r = run("generate", args);
      expect([args.join(" "), r.code]).toEqual([args.join(" "), code]);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(re);
    }
  }, SLOW);
});

describe("bun run eval", () => {
  test("raw uint16 .bin: loss agrees with PyTorch's on the same windows (< 1e-5 relative), --seq 32 and the default (the context, 128)", () => {
    const bin = join(FIX, "gen_eval/tokens.bin");
    const a = run("eval", ["--model", MODEL, "--data", bin, "--seq", "32"]);
    expect(a.code).toBe(0);
    const ja = lastJson(a.stdout);
    expect(ja.tokens).toBe(ex.eval_count_32);
    expect(rel(ja.loss as number, ex.eval_loss_32)).toBeLessThan(1e-5);
    expect(rel(ja.perplexity as number, Math.exp(ex.eval_loss_32))).toBeLessThan(1e-4);
    const b = lastJson(run("eval", ["--model", MODEL, "--data", bin]).stdout);
    expect(b.tokens).toBe(ex.eval_count_128);
    expect(rel(b.loss as number, ex.eval_loss_128)).toBeLessThan(1e-5);
    expect(rel(b.loss as number, ex.eval_loss_32)).toBeGreaterThan(1e-4); // different windows, different loss
  }, SLOW);

  test("a prepared shard directory (TLSHARD val_000.bin) and a text file tokenised with the model's tokenizer", () => {
    const shards = join(tmp, "shards");
    mkdirSync(shards);
    writeShard(join(shards, "val_000.bin"), ex.eval_tokens.slice(0, 300), { vocabSize: 512 });
    writeShard(join(shards, "val_001.bin"), ex.eval_tokens.slice(300), { vocabSize: 512 });
    const s = lastJson(run("eval", ["--model", MODEL, "--data", shards, "--seq", "32"]).stdout);
    expect(s.tokens).toBe(ex.eval_count_32);
    expect(rel(s.loss as number, ex.eval_loss_32)).toBeLessThan(1e-5);
    const t = lastJson(run("eval", ["--model", MODEL, "--data", join(FIX, "gen_eval/text.txt"), "--seq", "32"]).stdout);
    expect(t.tokens).toBe(ex.text_count_32);
    expect(rel(t.loss as number, ex.text_loss_32)).toBeLessThan(1e-5);
  }, SLOW);

  test("errors are one line", () => {
    const bin = join(FIX, "gen_eval/tokens.bin");
    const odd = join(tmp, "odd.bin");
    writeFileSync(odd, new Uint8Array(5));
    const cases: [string[], number, RegExp][] = [
      [["--model", MODEL], 2, /^eval: missing --data PATH$/],
      [["--model", MODEL, "--data", bin, "--seq", "0"], 2, /--seq must be a positive integer, got "0"/],
      [["--model", MODEL, "--data", bin, "--seq", "129"], 1, /--seq 129 exceeds the model's context 128/],
      [["--model", MODEL, "--data", join(tmp, "missing.bin")], 1, /--data '.*missing\.bin' does not exist/],
      [["--model", MODEL, "--data", odd], 1, /size \(5 bytes\) is odd/],
      [["--model", join(tmp, "none"), "--data", bin], 1, /model directory '.*none' does not exist/],
    ];
    for (const [args, code, re] of cases) {
      const r = run("eval", args);
      expect([args.join(" "), r.code]).toEqual([args.join(" "), code]);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(re);
    }
  }, SLOW);
});

describe("chat templates", () => {
  test("the built-in TinyLlama-Chat (Zephyr) template renders as transformers does", () => {
    const chat = loadChatTemplate(MODEL); // the fixture has no tokenizer_config.json
    expect(chat.source).toMatch(/built-in/);
    expect(chat.template).toBe(ZEPHYR_TEMPLATE);
    const msgs = [{ role: "system" as const, content: "Be brief." }, { role: "user" as const, content: "Hi!" }];
    expect(renderChat(chat, msgs)).toBe("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n");
    expect(renderChat(chat, msgs, false)).toBe("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n");
  });

  test("a directory's tokenizer_config.json chat_template (and its special tokens) wins", () => {
    const dir = join(tmp, "chatdir");
    mkdirSync(dir);
    copyFileSync(join(MODEL, "config.json"), join(dir, "config.json"));
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        bos_token: { content: "<s>", lstrip: false }, eos_token: "</s>",
        chat_template: "{{ bos_token }}{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}",
      }),
    );
    const chat = loadChatTemplate(dir);
    expect(chat.source).toBe("tokenizer_config.json");
    expect(renderChat(chat, [{ role: "user", content: "x" }])).toBe("<s>[USER] x</s>[ASSISTANT]");
  });
});
