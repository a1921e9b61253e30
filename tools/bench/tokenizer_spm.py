#!/usr/bin/python3
"""SentencePiece peer for packages/tokenizer/bench/tokenizer.bench.ts (needs python3-sentencepiece).

encode MODEL CORPUS_JSONL THREADS: times one batch encode call over all sentences; prints JSON {seconds, bytes, tokens}.
train INPUT_TXT VOCAB OUT_PREFIX: times spm_train (BPE, Llama options) in-process; prints JSON {seconds}.
"""
import json, sys, time
import sentencepiece as spm

def encode(model, corpus, threads):
    sp = spm.SentencePieceProcessor(model_file=model)
    sentences = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    sp.encode(sentences[:1000], num_threads=threads)  # warm up
    t = time.perf_counter()
    ids = sp.encode(sentences, num_threads=threads)
    dt = time.perf_counter() - t
    print(json.dumps({"seconds": dt, "bytes": sum(len(s.encode("utf-8")) for s in sentences), "tokens": sum(map(len, ids))}))

def train(inp, vocab, prefix):
    t = time.perf_counter()
    spm.SentencePieceTrainer.train(input=inp, model_prefix=prefix, model_type="bpe", vocab_size=int(vocab),
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, num_threads=2, minloglevel=2)
    print(json.dumps({"seconds": time.perf_counter() - t}))

if sys.argv[1] == "encode":
    encode(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    train(sys.argv[2], sys.argv[3], sys.argv[4])
