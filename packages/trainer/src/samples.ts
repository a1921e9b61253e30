/**
 * Short samples from a trained model, printed at the end of a run so a user sees what it learned.
 * A small inference copy of the model (B=1, a short window) is run over the whole window for
 * every new token: simple and plenty fast for a few dozen tokens of a small model.
 */
import { Model } from "@tinyllama/model";

export interface SampleOptions {
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  seed?: number;
}

/** xorshift32: a tiny seeded generator so samples are repeatable. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** Continues each prompt (token ids, BOS included if wanted) and returns the new ids. */
export function sampleContinuations(trained: Model, prompts: readonly Int32Array[], opts: SampleOptions = {}): Int32Array[] {
  const maxNew = opts.maxNewTokens ?? 40, temperature = opts.temperature ?? 0.8, topK = opts.topK ?? 40;
  const longest = Math.max(...prompts.map((p) => p.length));
  const T = Math.min(trained.cfg.maxSeqLen, longest + maxNew);
  const m = Model.create(trained.cfg, { backend: trained.backend, B: 1, T, training: false, init: false });
  try {
    m.backend.copy(m.params.flat("u8"), trained.params.flat("u8"));
    const next = rng(opts.seed ?? 1234);
    const V = trained.cfg.vocabSize;
    return prompts.map((prompt) => {
      const window = new Int32Array(T);
      const ids = Array.from(prompt.slice(-T + 1));
      const out: number[] = [];
      for (let i = 0; i < maxNew && ids.length < T; i++) {
        window.fill(0);
        window.set(ids);
        m.forward(window);
        // causal attention: positions after ids.length - 1 do not influence this row
        const row = m.logits().view([T, V]).rows(ids.length - 1, 1).read();
        const id = pick(row, temperature, topK, next);
        ids.push(id);
        out.push(id);
        if (id === trained.cfg.eosId) break;
      }
      return Int32Array.from(out);
    });
  } finally {
    m.free();
  }
}

function pick(logits: Float32Array, temperature: number, topK: number, next: () => number): number {
  if (temperature <= 0) return logits.indexOf(Math.max(...logits));
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, Math.max(1, topK));
  const max = logits[order[0]!]!;
  const w = order.map((i) => Math.exp((logits[i]! - max) / temperature));
  let r = next() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < order.length; j++) if ((r -= w[j]!) <= 0) return order[j]!;
  return order.at(-1)!;
}
