/**
 * @tinyllama/data — packed token shards (TLSHARD), corpus preparation, and the training data loader.
 * format.ts, loader.ts, rng.ts and tokenizer.ts are runtime-neutral; shard.ts, dataloader.ts,
 * documents.ts and prepare.ts use node:fs (and Bun.mmap / Web Workers where available).
 */
export {
  SHARD_MAGIC,
  SHARD_VERSION,
  HEADER_BYTES,
  dtypeForVocab,
  encodeHeader,
  decodeHeader,
  hasMagic,
  shardName,
  type ShardHeader,
  type TokenArray,
  type TokenDType,
} from "./format.ts";
export { readShard, writeShard, openTokenFile, ShardWriter, type Shard } from "./shard.ts";
export { WindowLoader, splitWindows, type LoaderMode, type LoaderOptions, type LoaderState } from "./loader.ts";
export { DataLoader, openCorpus, corpusFiles, type Corpus, type DataLoaderOptions } from "./dataloader.ts";
export { Xoshiro128, type RngState } from "./rng.ts";
export { findInputs, documentsOf, isValDocument, type Doc, type InputFile, type TxtDocuments } from "./documents.ts";
export { prepare, type PrepareMeta, type PrepareOptions, type PrepareProgress, type SplitMeta } from "./prepare.ts";
export { progressBar, formatProgress } from "./progress.ts";
export { checkTokenizer, loadTokenizerModule, type TokenizerLike, type TokenizerModule, type TokenizerInfo, type TokenizerFactory } from "./tokenizer.ts";
