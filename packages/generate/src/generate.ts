/**
 * The generation loop: prefill the prompt, then sample / step until EOS, the token budget, or a
 * full cache. New tokens are streamed as text through the tokenizer's streaming decoder.
 */
import { ShapeError } from "@tinyllama/kernels";
import type { Tokenizer } from "@tinyllama/tokenizer";
import { Sampler, type SamplingOptions } from "./sampler.ts";
import type { InferenceSession } from "./session.ts";

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to produce (default 128). */
  maxNewTokens?: number;
  /** Token ids that end generation (not included in the output). Default: the model's eosId. */
  stopIds?: readonly number[];
  /** For streamed text (onText) and the returned text. */
  tokenizer?: Tokenizer | null;
  /** Called for every new token, with the text that became complete (may be ""). */
  onToken?: (id: number, text: string) => void;
  /** Called once after the prompt's prefill, before the first decode step (e.g. to start a profiler). */
  onPrefilled?: () => void;
}

export interface GenerateResult {
  /** New token ids (without the stop token). */
  ids: number[];
  /** Their text ("" without a tokenizer). */
  text: string;
  stop: "eos" | "length" | "context";
  promptTokens: number;
  prefillSeconds: number;
  /** Time of the decode steps (every new token after the first), sampling included. */
  decodeSeconds: number;
  /** Decode steps run (session.step calls): the tokens decodeSeconds covers. */
  steps: number;
  /** New tokens per second of generation, prefill included. */
  tokensPerSecond: number;
}

/** Generates a continuation of one prompt (the session must have B = 1). */
export function generate(session: InferenceSession, prompt: ArrayLike<number>, opts: GenerateOptions = {}): GenerateResult {
  if (session.B !== 1) throw new ShapeError(`generate: the session has B=${session.B}; generate one sequence with a B=1 session`);
  const maxNew = opts.maxNewTokens ?? 128;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new RangeError(`generate: maxNewTokens must be an integer >= 0, got ${maxNew}`);
  if (prompt.length === 0) throw new ShapeError("generate: the prompt is empty (give at least one token, e.g. BOS)");
  if (prompt.length > session.maxT)
    throw new ShapeError(`generate: the prompt has ${prompt.length} tokens but the context holds ${session.maxT}; shorten the prompt`);
  const sampler = new Sampler(opts);
  const stop = new Set(opts.stopIds ?? [session.cfg.eosId]);
  const stream = opts.tokenizer?.streamDecoder();
  const ids: number[] = [];
  let text = "";
  let why: GenerateResult["stop"] = "length";
  let steps = 0;
  const t0 = performance.now();
  let logits = session.prefill(prompt);
  const host = (): ArrayLike<number> => (session.backend.kind === "cpu" ? logits.data() : logits.read());
  opts.onPrefilled?.();
  const t1 = performance.now();
  for (let i = 0; i < maxNew; i++) {
    const id = sampler.sample(host());
    if (stop.has(id)) {
      why = "eos";
      break;
    }
    ids.push(id);
    const piece = stream ? stream.push(id) : "";
    text += piece;
    opts.onToken?.(id, piece);
    if (i + 1 === maxNew) break;
    if (session.pos >= session.maxT) {
      why = "context";
      break;
    }
    logits = session.step([id]);
    steps++;
  }
  if (stream) {
    const rest = stream.flush();
    if (rest) {
      text += rest;
      opts.onToken?.(-1, rest);
    }
  }
  const t2 = performance.now();
  const total = (t2 - t0) / 1000;
  return {
    ids,
    text,
    stop: why,
    promptTokens: prompt.length,
    prefillSeconds: (t1 - t0) / 1000,
    decodeSeconds: (t2 - t1) / 1000,
    steps,
    tokensPerSecond: total > 0 ? ids.length / total : 0,
  };
}
