/**
 * bun run prepare --input FILES|DIRS --out DIR [--tokenizer llama2|PATH] [--val-fraction f]
 *                 [--shard-tokens n] [--threads n] [--txt-docs paragraph|file] [--bos] [--force]
 *
 * Tokenises .txt / .jsonl corpora into TLSHARD shards (train_000.bin ..., val_000.bin ..., meta.json)
 * with @tinyllama/tokenizer in worker threads. This module is also the workers' tokenizer module:
 * they import it and call createTokenizer(), so the CLI only runs when it is the entry point.
 */
import { existsSync } from "node:fs";
import { prepare, progressBar, type TokenizerLike } from "@tinyllama/data";

/** The part of @tinyllama/tokenizer this script uses. */
interface TinyTokenizer {
  encode(text: string, options?: { bos?: boolean; eos?: boolean; special?: boolean }): Int32Array;
  readonly eosId: number;
  readonly bosId: number;
  readonly vocabSize: number;
}
interface TokenizerPackage {
  Tokenizer: { llama2(): Promise<TinyTokenizer>; fromFile(path: string): TinyTokenizer };
}

const PACKAGE = "@tinyllama/tokenizer";

async function loadTokenizerPackage(): Promise<TokenizerPackage> {
  const name: string = PACKAGE; // a variable specifier: the package may not be installed when this is type-checked
  try {
    return (await import(name)) as TokenizerPackage;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/cannot find (module|package)|could not resolve|not found/i.test(msg))
      throw new Error(`${PACKAGE} is not installed in this checkout (it is developed on the 'tokenizer' branch); merge it and run 'npm install', then retry`);
    throw e;
  }
}

/** Worker entry: the tokenizer named by --tokenizer ("llama2" or a tokenizer.json / tokenizer.model path or directory). */
export async function createTokenizer(options: { spec: string }): Promise<TokenizerLike> {
  const { Tokenizer } = await loadTokenizerPackage();
  const tok = options.spec === "llama2" ? await Tokenizer.llama2() : Tokenizer.fromFile(options.spec);
  return {
    // Raw text, no BOS/EOS (prepare appends EOS per document) and no special-token parsing, as
    // SentencePiece encodes TinyLlama's pretraining data.
    encode: (text) => tok.encode(text, { bos: false, eos: false, special: false }),
    eosId: tok.eosId,
    bosId: tok.bosId >= 0 ? tok.bosId : undefined,
    vocabSize: tok.vocabSize,
    id: options.spec === "llama2" ? "llama2" : `file:${options.spec}`,
  };
}

const USAGE = `usage: bun run prepare --input FILES|DIRS... --out DIR [options]
  --input PATH...        .txt / .jsonl files or directories (searched recursively); repeatable
  --out DIR              output directory for train_NNN.bin, val_NNN.bin, meta.json
  --tokenizer SPEC       llama2 (default) or a tokenizer.json / tokenizer.model path or directory
  --val-fraction F       fraction of documents held out for validation (default 0.01)
  --shard-tokens N       tokens per shard file (default 100000000)
  --threads N            tokenizer worker threads (default: all cores)
  --txt-docs MODE        paragraph (default: blank-line separated) or file (one document per .txt)
  --bos                  prepend BOS to each document (TinyLlama does not)
  --force                replace shards already in --out`;

interface Args {
  inputs: string[];
  out?: string;
  tokenizer: string;
  valFraction?: number;
  shardTokens?: number;
  threads?: number;
  txtDocuments?: "paragraph" | "file";
  bos: boolean;
  force: boolean;
}

function fail(msg: string): never {
  process.stderr.write(`prepare: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function num(flag: string, v: string | undefined, integer: boolean): number {
  const n = Number(v);
  if (v === undefined || v.startsWith("--") || !Number.isFinite(n) || (integer && !Number.isInteger(n))) fail(`${flag} needs a${integer ? "n integer" : " number"}, got '${v ?? ""}'`);
  return n;
}

export function parseArgs(argv: string[]): Args {
  const a: Args = { inputs: [], tokenizer: "llama2", bos: false, force: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) fail(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--input":
        a.inputs.push(value());
        while (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) a.inputs.push(argv[++i]!);
        break;
      case "--out":
        a.out = value();
        break;
      case "--tokenizer":
        a.tokenizer = value();
        break;
      case "--val-fraction":
        a.valFraction = num(flag, argv[++i], false);
        break;
      case "--shard-tokens":
        a.shardTokens = num(flag, argv[++i], true);
        break;
      case "--threads":
        a.threads = num(flag, argv[++i], true);
        break;
      case "--txt-docs": {
        const v = value();
        if (v !== "paragraph" && v !== "file") fail(`--txt-docs must be paragraph or file, got '${v}'`);
        a.txtDocuments = v;
        break;
      }
      case "--bos":
        a.bos = true;
        break;
      case "--force":
        a.force = true;
        break;
      case "-h":
      case "--help":
        process.stdout.write(USAGE + "\n");
        process.exit(0);
      default:
        fail(`unknown argument '${flag}'`);
    }
  }
  return a;
}

async function main(argv: string[]): Promise<void> {
  // "prepare" is also npm's install-time lifecycle script name: stay silent when npm runs it bare.
  if (argv.length === 0 && (process.env.npm_command === "install" || process.env.npm_command === "ci")) return;
  const a = parseArgs(argv);
  if (a.inputs.length === 0) fail("--input is required");
  if (!a.out) fail("--out is required");
  if (a.tokenizer !== "llama2" && !existsSync(a.tokenizer)) fail(`--tokenizer '${a.tokenizer}' is neither 'llama2' nor an existing path`);
  await loadTokenizerPackage(); // fail here, once, with the clear message, rather than in every worker
  const meta = await prepare({
    inputs: a.inputs,
    out: a.out,
    tokenizer: { module: import.meta.path, options: { spec: a.tokenizer } },
    valFraction: a.valFraction,
    shardTokens: a.shardTokens,
    threads: a.threads,
    txtDocuments: a.txtDocuments,
    bos: a.bos,
    overwrite: a.force,
    onProgress: progressBar(),
  });
  process.stderr.write(
    `prepare: ${meta.train.documents} train documents (${meta.train.tokens} tokens, ${meta.train.shards.length} shards), ` +
      `${meta.val.documents} val documents (${meta.val.tokens} tokens) -> ${a.out}\n`,
  );
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`prepare: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
