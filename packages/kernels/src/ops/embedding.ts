/** Token embedding: out[..., :] = wte[tokens[...], :], and its scatter-add backward. */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/**
 * Throws a ShapeError naming the first id outside [0, V) (other than `ignore`) and its position.
 * The kernels check too, but an Error from here says which batch element is wrong.
 */
export function checkTokenIds(op: string, name: string, ids: Tensor, V: number, ignore?: number): void {
  chk.dtype(op, name, ids, "i32");
  if (ids.numel === 0) return;
  // data() is a zero-copy view on the CPU backend; other backends copy the (small) id tensor down.
  const a = (ids.backend.kind === "cpu" ? ids.data() : ids.read()) as Int32Array;
  for (let i = 0; i < a.length; i++) {
    const t = a[i]!;
    if ((t < 0 || t >= V) && t !== ignore) {
      const pos = unravel(i, ids.shape);
      throw new ShapeError(
        `${op}: ${name}${fmtShape(pos)} = ${t} is outside the vocabulary [0, ${V})` +
          (ignore === undefined ? "" : ` and is not the ignore index ${ignore}`) +
          `; check the tokenizer's vocabulary size against the model's`,
      );
    }
  }
}

function unravel(i: number, shape: readonly number[]): number[] {
  const pos = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    pos[d] = i % n;
    i = Math.floor(i / n);
  }
  return pos;
}

function dims(op: string, tokens: Tensor, wte: Tensor): { N: number; C: number; V: number } {
  chk.dtype(op, "tokens", tokens, "i32");
  chk.dtype(op, "wte", wte, "f32");
  if (wte.shape.length !== 2) throw new ShapeError(`${op}: 'wte' must be 2-D (V, C), got ${fmtShape(wte.shape)}`);
  const [V, C] = wte.shape as [number, number];
  const N = tokens.numel;
  chk.int32Range(op, "N", N);
  return { N, C, V };
}

/** out (..., C) = rows of wte (V, C) picked by tokens (...) i32. */
export function embeddingForward(out: Tensor, tokens: Tensor, wte: Tensor): void {
  const op = "embedding_forward";
  const be = chk.sameBackend(op, { out, tokens, wte });
  const { N, C, V } = dims(op, tokens, wte);
  chk.dtype(op, "out", out, "f32");
  chk.shape(op, "out", out, [...tokens.shape, C]);
  if (N === 0 || C === 0) return;
  checkTokenIds(op, "tokens", tokens, V);
  be.check(op, be.lib.tl_embedding_forward(out.ptr(op), tokens.ptr(op), wte.ptr(op), N, C, V));
}

/** dwte (V, C) += scatter-add of dout (..., C) into the rows named by tokens (...). Deterministic. */
export function embeddingBackward(dwte: Tensor, dout: Tensor, tokens: Tensor): void {
  const op = "embedding_backward";
  const be = chk.sameBackend(op, { dwte, dout, tokens });
  const { N, C, V } = dims(op, tokens, dwte);
  chk.dtype(op, "dout", dout, "f32");
  chk.shape(op, "dout", dout, [...tokens.shape, C]);
  if (N === 0 || C === 0) return;
  checkTokenIds(op, "tokens", tokens, V);
  be.check(op, be.lib.tl_embedding_backward(dwte.ptr(op), dout.ptr(op), tokens.ptr(op), N, C, V));
}
