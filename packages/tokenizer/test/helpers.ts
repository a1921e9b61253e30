// Shared test inputs: the nlp-corpus sentences and the committed adversarial set.
import corpus from "nlp-corpus";
import { readFileSync } from "node:fs";

type Case = string | { name: string; repeat: string; count: number };

export function adversarial(): { name: string; text: string }[] {
  const raw = JSON.parse(readFileSync(new URL("./fixtures/adversarial.json", import.meta.url), "utf8")) as Case[];
  return raw.map((c) => (typeof c === "string" ? { name: JSON.stringify(c.slice(0, 40)), text: c } : { name: c.name, text: c.repeat.repeat(c.count) }));
}

let sentences: string[] | undefined;
export function corpusSentences(): string[] {
  sentences ??= (corpus as { all(): string[] }).all();
  return sentences;
}

export function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** First differing index, for readable failure messages. */
export function describeMismatch(text: string, ours: ArrayLike<number>, ref: ArrayLike<number>): string {
  let i = 0;
  while (i < ours.length && i < ref.length && ours[i] === ref[i]) i++;
  return `${JSON.stringify(text.slice(0, 120))}: first difference at token ${i}: ours ${JSON.stringify(Array.from(ours).slice(i, i + 8))} ref ${JSON.stringify(Array.from(ref).slice(i, i + 8))}`;
}
