// bun run tokenize --tokenizer PATH|llama2 (--text "..." | --file PATH) [--no-bos] [--eos] [--ids-only]
// Prints ids, pieces and counts. PATH is a tokenizer.json, a tokenizer.model, or a directory holding one.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@tinyllama/tokenizer";

const USAGE = 'usage: bun run tokenize --tokenizer PATH|llama2 (--text "..." | --file PATH) [--no-bos] [--eos] [--ids-only]';
const args = process.argv.slice(2);
const value = (name: string): string | undefined => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) fail(`${name} needs a value`);
  return v;
};
function fail(msg: string): never {
  console.error(`tokenize: ${msg}\n${USAGE}`);
  process.exit(2);
}

if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const which = value("--tokenizer") ?? "llama2";
const text = value("--text");
const file = value("--file");
if ((text === undefined) === (file === undefined)) fail("give exactly one of --text and --file");

let tok: Tokenizer;
try {
  tok = which === "llama2" ? await Tokenizer.llama2() : Tokenizer.fromFile(which);
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
const input = text ?? readFileSync(file as string, "utf8");
const t0 = performance.now();
const ids = tok.encode(input, { bos: !args.includes("--no-bos"), eos: args.includes("--eos") });
const ms = performance.now() - t0;

if (args.includes("--ids-only")) {
  console.log(Array.from(ids).join(" "));
} else {
  if (ids.length <= 2000) {
    console.log(`ids:    ${JSON.stringify(Array.from(ids))}`);
    console.log(`pieces: ${JSON.stringify(Array.from(ids, (id) => tok.idToToken(id)))}`);
  } else console.log(`(${ids.length} ids; pass --ids-only to print them all)`);
  const bytes = new TextEncoder().encode(input).length;
  console.log(`tokens: ${ids.length}  characters: ${input.length}  bytes: ${bytes}  bytes/token: ${(bytes / Math.max(1, ids.length)).toFixed(2)}  vocab: ${tok.vocabSize}  time: ${ms.toFixed(1)} ms`);
}
