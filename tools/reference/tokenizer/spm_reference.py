#!/usr/bin/python3
"""Reference encodings from SentencePiece's own encoder, for the tokenizer parity tests.

Usage: spm_reference.py MODEL CORPUS_JSONL ADVERSARIAL_JSON OUT_PREFIX [MAX_SENTENCES]
Writes OUT_PREFIX.corpus.bin: per sentence, little-endian uint32 token count and uint32 FNV-1a hash of its ids
(ids without BOS/EOS), and OUT_PREFIX.adversarial.json: per adversarial case, {n, hash, ids (when short)}.
Needs python3-sentencepiece (apt-get install python3-sentencepiece).
"""
import json, struct, sys
import sentencepiece as spm

def fnv(ids):
    h = 2166136261
    for i in ids:
        h = ((h ^ i) * 16777619) & 0xFFFFFFFF
    return h

def expand(case):
    return case if isinstance(case, str) else case["repeat"] * case["count"]

def main():
    model, corpus, adv, out = sys.argv[1:5]
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
    sp = spm.SentencePieceProcessor(model_file=model)
    sentences = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    if limit:
        sentences = sentences[:limit]
    ids = sp.encode(sentences)
    with open(out + ".corpus.bin", "wb") as f:
        for x in ids:
            f.write(struct.pack("<II", len(x), fnv(x)))
    cases = [expand(c) for c in json.load(open(adv, encoding="utf-8"))]
    res = []
    for text in cases:
        x = sp.encode(text)
        res.append({"n": len(x), "hash": fnv(x), "ids": x if len(x) <= 2000 else None})
    json.dump(res, open(out + ".adversarial.json", "w"))
    print(f"{out}: {len(sentences)} sentences, {len(cases)} adversarial cases")

main()
