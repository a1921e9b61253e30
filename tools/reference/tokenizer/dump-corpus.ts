// Writes the nlp-corpus sentences for the SentencePiece scripts: JSON lines (exact strings, for encoding)
// and plain text, one sentence per line with inner newlines as spaces (spm_train's input format).
// Usage: bun tools/reference/tokenizer/dump-corpus.ts OUT_DIR
import corpus from "nlp-corpus";
import { writeFileSync, mkdirSync } from "node:fs";

const dir = process.argv[2] ?? "/tmp/tinyllama-tokenizer";
mkdirSync(dir, { recursive: true });
const sentences = corpus.all();
writeFileSync(`${dir}/corpus.jsonl`, sentences.map((s) => JSON.stringify(s)).join("\n") + "\n");
writeFileSync(`${dir}/corpus.txt`, sentences.map((s) => s.replace(/[\r\n]+/g, " ")).join("\n") + "\n");
console.log(`${sentences.length} sentences -> ${dir}/corpus.jsonl, ${dir}/corpus.txt`);
