/**
 * Worker thread for `prepare`: builds the tokenizer from a module specifier, then turns batches
 * of document texts into token ids.
 *   in:  { kind: "init", source: TokenizerModule }       out: { kind: "ready", info } | { kind: "error", message }
 *   in:  { kind: "encode", id, texts: string[] }          out: { kind: "encoded", id, flat, lengths } | { kind: "error", id, message }
 */
import { encodeBatch, infoOf, loadTokenizerModule, type TokenizerLike, type TokenizerModule } from "./tokenizer.ts";

export type WorkerRequest = { kind: "init"; source: TokenizerModule } | { kind: "encode"; id: number; texts: string[] };
export type WorkerReply =
  | { kind: "ready"; info: ReturnType<typeof infoOf> }
  | { kind: "encoded"; id: number; flat: Int32Array; lengths: Int32Array }
  | { kind: "error"; id?: number; message: string };

interface WorkerScope {
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(msg: WorkerReply, transfer?: Transferable[]): void;
}
const scope = globalThis as unknown as WorkerScope;

let tokenizer: TokenizerLike | undefined;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

scope.onmessage = (ev) => {
  const req = ev.data;
  if (req.kind === "init") {
    loadTokenizerModule(req.source).then(
      (tok) => {
        tokenizer = tok;
        scope.postMessage({ kind: "ready", info: infoOf(tok) });
      },
      (e) => scope.postMessage({ kind: "error", message: message(e) }),
    );
    return;
  }
  try {
    if (!tokenizer) throw new Error("tokenize worker: 'encode' before 'init'");
    const { flat, lengths } = encodeBatch(tokenizer, req.texts);
    scope.postMessage({ kind: "encoded", id: req.id, flat, lengths }, [flat.buffer, lengths.buffer]);
  } catch (e) {
    scope.postMessage({ kind: "error", id: req.id, message: message(e) });
  }
};
