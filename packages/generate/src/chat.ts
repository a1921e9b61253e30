/**
 * Chat prompts: the model directory's `chat_template` (tokenizer_config.json), rendered with
 * @huggingface/jinja exactly as transformers' apply_chat_template renders it, or TinyLlama-Chat's
 * Zephyr-style template when the directory has none.
 */
import { Template } from "@huggingface/jinja";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** TinyLlama-1.1B-Chat-v1.0's template (Zephyr style): `<|user|>\n{text}</s>\n<|assistant|>\n`. */
export const ZEPHYR_TEMPLATE =
  "{% for message in messages %}\n" +
  "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n" +
  "{% endif %}\n" +
  "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n" +
  "{% endfor %}";

export interface ChatTemplate {
  template: string;
  bosToken: string;
  eosToken: string;
  /** "tokenizer_config.json" or "built-in (TinyLlama-Chat / Zephyr)" */
  source: string;
}

/** A special-token field of tokenizer_config.json: a string or an AddedToken object {content}. */
function tokenString(v: unknown, fallback: string): string {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return fallback;
}

/** The chat template of a model directory (its tokenizer_config.json), or the built-in fallback. */
export function loadChatTemplate(dir: string): ChatTemplate {
  const path = join(dir, "tokenizer_config.json");
  let cfg: Record<string, unknown> = {};
  if (existsSync(path)) {
    try {
      cfg = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${path}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  const bosToken = tokenString(cfg.bos_token, "<s>"), eosToken = tokenString(cfg.eos_token, "</s>");
  let t = cfg.chat_template;
  // Newer files may hold a list of named templates; the "default" one is what apply_chat_template uses.
  if (Array.isArray(t)) {
    const named = t as { name?: string; template?: string }[];
    t = (named.find((x) => x.name === "default") ?? named[0])?.template;
  }
  if (typeof t === "string" && t.length > 0) return { template: t, bosToken, eosToken, source: "tokenizer_config.json" };
  return { template: ZEPHYR_TEMPLATE, bosToken, eosToken, source: "built-in (TinyLlama-Chat / Zephyr)" };
}

/** The prompt text for `messages`, ending with the assistant's turn when addGenerationPrompt. */
export function renderChat(chat: ChatTemplate, messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  return new Template(chat.template).render({
    messages,
    bos_token: chat.bosToken,
    eos_token: chat.eosToken,
    add_generation_prompt: addGenerationPrompt,
  });
}
