/** DataLoader over files: a directory of shards, one shard, or a raw uint16 .bin (nanoGPT / llama2.c). */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { WindowLoader, type LoaderOptions } from "./loader.ts";
import { openTokenFile, type Shard } from "./shard.ts";

export interface Corpus {
  files: Shard[];
  tokens: number;
  /** The shards' vocabulary size (0 if only raw files, which do not record it). */
  vocabSize: number;
}

/**
 * The token files at `path`: a file as is; a directory's `<split>_NNN.bin` shards in numeric
 * order, or else its `<split>.bin` (nanoGPT's layout).
 */
export function corpusFiles(path: string, split = "train"): string[] {
  if (!existsSync(path)) throw new Error(`DataLoader: '${path}' does not exist`);
  if (!statSync(path).isDirectory()) return [path];
  const names = readdirSync(path);
  const re = new RegExp(`^${split.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}_(\\d+)\\.bin$`);
  const shards = names
    .map((n) => ({ n, m: re.exec(n) }))
    .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
    .sort((a, b) => Number(a.m[1]) - Number(b.m[1]) || (a.n < b.n ? -1 : 1))
    .map((x) => join(path, x.n));
  if (shards.length > 0) return shards;
  if (names.includes(`${split}.bin`)) return [join(path, `${split}.bin`)];
  const bins = names.filter((n) => n.endsWith(".bin"));
  throw new Error(
    `DataLoader: no '${split}_NNN.bin' shards or '${split}.bin' in '${path}'` +
      (bins.length ? ` (it has ${bins.slice(0, 5).join(", ")}${bins.length > 5 ? ", ..." : ""}; pass split or a file path)` : "; run `bun run prepare` to create shards"),
  );
}

export function openCorpus(path: string, split = "train"): Corpus {
  const files = corpusFiles(path, split).map(openTokenFile);
  const vocabs = new Set(files.filter((f) => f.format === "tlshard").map((f) => f.vocabSize));
  if (vocabs.size > 1) throw new Error(`DataLoader: the shards in '${path}' disagree on vocab size (${[...vocabs].join(", ")}); they come from different tokenizers`);
  return { files, tokens: files.reduce((n, f) => n + f.tokens.length, 0), vocabSize: [...vocabs][0] ?? 0 };
}

export interface DataLoaderOptions extends LoaderOptions {
  /** A directory of shards, one TLSHARD file, or a raw uint16 token file. */
  path: string;
  /** Which shards of a directory: "train" (default) or "val". */
  split?: string;
}

/** Batches of B windows of T+1 tokens from token files; see WindowLoader for modes, ranks and state. */
export class DataLoader extends WindowLoader {
  readonly corpus: Corpus;
  constructor(opts: DataLoaderOptions) {
    if (opts === null || typeof opts !== "object" || typeof opts.path !== "string") throw new TypeError("DataLoader: options { path, B, T, ... } are required");
    const corpus = openCorpus(opts.path, opts.split);
    super(
      corpus.files.map((f) => f.tokens),
      opts,
      `'${opts.path}'${corpus.files.length > 1 || corpus.files[0]!.path !== opts.path ? ` (${corpus.files.length} file${corpus.files.length > 1 ? "s" : ""})` : ""}`,
    );
    this.corpus = corpus;
  }
}
