#!/bin/sh
# Regenerates the SentencePiece fixtures in packages/tokenizer/test/fixtures/:
#   spm-bpe4096: Llama-style BPE (byte fallback, identity normalizer, spaces kept) on all of nlp-corpus
#   spm-bpe800-ws: small BPE with SentencePiece's default whitespace handling (remove_extra_whitespaces)
#                  and no byte fallback (unknown characters -> <unk>), trained on the first 20k sentences
# Needs: apt-get install sentencepiece python3-sentencepiece
set -eu
cd "$(dirname "$0")/../../.."
T=${TMPDIR:-/tmp}/tinyllama-spm
F=packages/tokenizer/test/fixtures
mkdir -p "$T" "$F"
./node_modules/.bin/bun tools/reference/tokenizer/make-adversarial.ts
./node_modules/.bin/bun tools/reference/tokenizer/dump-corpus.ts "$T"
spm_train --input="$T/corpus.txt" --model_prefix="$F/spm-bpe4096" --model_type=bpe --vocab_size=4096 \
  --byte_fallback=true --normalization_rule_name=identity --remove_extra_whitespaces=false \
  --split_digits=true --allow_whitespace_only_pieces=true --num_threads=2 --minloglevel=1
head -n 20000 "$T/corpus.txt" > "$T/corpus20k.txt"
spm_train --input="$T/corpus20k.txt" --model_prefix="$F/spm-bpe800-ws" --model_type=bpe --vocab_size=800 \
  --byte_fallback=false --normalization_rule_name=identity --character_coverage=0.999 --num_threads=2 --minloglevel=1
rm -f "$F"/*.vocab
/usr/bin/python3 tools/reference/tokenizer/spm_reference.py "$F/spm-bpe4096.model" "$T/corpus.jsonl" "$F/adversarial.json" "$F/spm-bpe4096"
/usr/bin/python3 tools/reference/tokenizer/spm_reference.py "$F/spm-bpe800-ws.model" "$T/corpus.jsonl" "$F/adversarial.json" "$F/spm-bpe800-ws" 20000
