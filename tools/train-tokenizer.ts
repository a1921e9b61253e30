// bun run train-tokenizer --input FILES --vocab-size N --out DIR [--character-coverage F] [--no-split-digits]
// Trains a Llama-style BPE vocabulary (▁ word prefix, byte fallback, <unk> <s> </s>) on text files (one text
// per line; FILES comma-separated or repeated --input) and writes DIR/tokenizer.json + DIR/tokenizer_config.json.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { trainBpe } from "@tinyllama/tokenizer";

const USAGE = "usage: bun run train-tokenizer --input FILE[,FILE...] --vocab-size N --out DIR [--character-coverage 0.9995] [--no-split-digits]";
const args = process.argv.slice(2);
function fail(msg: string): never {
  console.error(`train-tokenizer: ${msg}\n${USAGE}`);
  process.exit(2);
}
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const values = (name: string): string[] => args.flatMap((a, i) => (a === name ? [args[i + 1] ?? fail(`${name} needs a value`)] : []));
const inputs = values("--input").flatMap((v) => v.split(",")).filter((v) => v.length > 0);
const vocabSize = Number(values("--vocab-size")[0]);
const out = values("--out")[0];
const coverage = values("--character-coverage")[0];
if (inputs.length === 0) fail("--input is required");
if (!Number.isInteger(vocabSize)) fail("--vocab-size must be an integer");
if (!out) fail("--out is required");

const lines: string[] = [];
let bytes = 0;
for (const f of inputs) {
  let text: string;
  try {
    text = readFileSync(f, "utf8");
  } catch (e) {
    fail(`cannot read ${f}: ${e instanceof Error ? e.message : String(e)}`);
  }
  bytes += Buffer.byteLength(text);
  for (const l of text.split("\n")) lines.push(l);
}
console.log(`training a ${vocabSize}-piece BPE vocabulary on ${inputs.length} file(s), ${(bytes / 1e6).toFixed(2)} MB, ${lines.length} lines`);
const t0 = performance.now();
const tok = trainBpe(lines, {
  vocabSize,
  characterCoverage: coverage === undefined ? undefined : Number(coverage),
  splitDigits: !args.includes("--no-split-digits"),
  onProgress: (done, total) => process.stdout.write(`\r  merges ${done}/${total}`),
});
const seconds = (performance.now() - t0) / 1000;
mkdirSync(out, { recursive: true });
writeFileSync(`${out}/tokenizer.json`, JSON.stringify(tok.toJSON(), null, 1));
writeFileSync(`${out}/tokenizer_config.json`, JSON.stringify(tok.toConfigJSON(), null, 2));
let tokens = 0;
for (const l of lines) tokens += tok.encode(l, { bos: false }).length;
console.log(`\ndone in ${seconds.toFixed(2)} s: ${out}/tokenizer.json (${tok.vocabSize} pieces), ${(bytes / Math.max(1, tokens)).toFixed(3)} bytes/token on the training text`);
