// nlp-corpus ships no types; we use only all().
declare module "nlp-corpus" {
  const corpus: { all(): string[]; some(n: number): string[] };
  export default corpus;
}
