/**
 * Causal grouped-query attention (scale 1/sqrt(HD)), FlashAttention-2 style: the kernels never
 * build a (T,T) matrix; the forward saves lse (B,NH,T) and the backward recomputes the
 * probabilities from it. Query head h reads KV head h / (NH/NKV).
 */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

export interface AttentionDims {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  HD: number;
}

function same(op: string, aName: string, a: Tensor, bName: string, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(`${op}: '${aName}' ${fmtShape(a.shape)} must have the same shape as '${bName}' ${fmtShape(b.shape)}`);
}

/** Reads B, T, NH, NKV, HD from q (B,T,NH,HD), k and v (B,T,NKV,HD), checking they agree. */
function dims(op: string, q: Tensor, k: Tensor, v: Tensor): AttentionDims {
  if (q.shape.length !== 4) throw new ShapeError(`${op}: 'q' must be 4-D (B, T, NH, HD), got ${fmtShape(q.shape)}`);
  if (k.shape.length !== 4) throw new ShapeError(`${op}: 'k' must be 4-D (B, T, NKV, HD), got ${fmtShape(k.shape)}`);
  const [B, T, NH, HD] = q.shape as [number, number, number, number];
  const [kB, kT, NKV, kHD] = k.shape as [number, number, number, number];
  if (kB !== B || kT !== T || kHD !== HD)
    throw new ShapeError(`${op}: 'k' ${fmtShape(k.shape)} must match 'q' ${fmtShape(q.shape)} in B, T and HD (only the head count may differ)`);
  same(op, "v", v, "k", k);
  if (NKV === 0 || NH % NKV !== 0)
    throw new ShapeError(`${op}: query heads NH=${NH} ('q' ${fmtShape(q.shape)}) must be a multiple of kv heads NKV=${NKV} ('k' ${fmtShape(k.shape)})`);
  chk.int32Range(op, "B*T", B * T);
  chk.int32Range(op, "NH*HD", NH * HD);
  return { B, T, NH, NKV, HD };
}

function lseShape(op: string, lse: Tensor, q: Tensor, d: AttentionDims): void {
  const want = [d.B, d.NH, d.T];
  if (lse.shape.length !== 3 || lse.shape.some((x, i) => x !== want[i]))
    throw new ShapeError(`${op}: 'lse' ${fmtShape(lse.shape)} must be (B, NH, T) = ${fmtShape(want)} for 'q' ${fmtShape(q.shape)}`);
}

function overlaps(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes;
}

/** out (B,T,NH,HD) = softmax(q k^T / sqrt(HD) + causal mask) v; lse (B,NH,T) is saved for backward. */
export function attentionForward(out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor): void {
  forward("attention_forward", "f32", out, lse, q, k, v);
}

/**
 * The forward of a bf16 step: out (B,T,NH,HD) bf16 and lse (B,NH,T) fp32 from bf16 q, k, v, with
 * fp32 scores, softmax and accumulation (tensor cores on CUDA); attentionBackwardBf16 is its backward.
 */
export function attentionForwardBf16(out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor): void {
  forward("attention_forward_bf16", "bf16", out, lse, q, k, v);
}

function forward(op: string, dtype: "f32" | "bf16", out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor): void {
  const be = chk.sameBackend(op, { out, lse, q, k, v });
  for (const [n, t] of Object.entries({ out, q, k, v })) chk.dtype(op, n, t, dtype);
  chk.dtype(op, "lse", lse, "f32");
  const d = dims(op, q, k, v);
  same(op, "out", out, "q", q);
  lseShape(op, lse, q, d);
  for (const [n, t] of Object.entries({ q, k, v }))
    if (overlaps(out, t) || overlaps(lse, t)) throw new ShapeError(`${op}: outputs 'out'/'lse' overlap the input '${n}' ${fmtShape(t.shape)}`);
  if (overlaps(out, lse)) throw new ShapeError(`${op}: 'out' ${fmtShape(out.shape)} and 'lse' ${fmtShape(lse.shape)} overlap`);
  if (q.numel === 0 || k.numel === 0) return;
  const fn = dtype === "f32" ? be.lib.tl_attention_forward : be.lib.tl_attention_forward_bf16;
  be.check(op, fn(out.ptr(op), lse.ptr(op), q.ptr(op), k.ptr(op), v.ptr(op), d.B, d.T, d.NH, d.NKV, d.HD));
}

/** dq (B,T,NH,HD), dk, dv (B,T,NKV,HD) += gradients of attention given dout, the inputs, out and lse. */
export function attentionBackward(grads: { dq: Tensor; dk: Tensor; dv: Tensor }, dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor): void {
  backward("attention_backward", "f32", grads, dout, q, k, v, out, lse);
}

/**
 * The backward of attentionForwardBf16: fp32 dq, dk, dv += gradients, from bf16 dout, q, k, v, out
 * and the fp32 lse (tensor cores on CUDA).
 */
export function attentionBackwardBf16(grads: { dq: Tensor; dk: Tensor; dv: Tensor }, dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor): void {
  backward("attention_backward_bf16", "bf16", grads, dout, q, k, v, out, lse);
}

function backward(
  op: string,
  inDtype: "f32" | "bf16",
  grads: { dq: Tensor; dk: Tensor; dv: Tensor },
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
): void {
  const { dq, dk, dv } = grads;
  if (!dq || !dk || !dv) throw new ShapeError(`${op}: dq, dk and dv are all required`);
  const named = { dq, dk, dv, dout, q, k, v, out, lse };
  const be = chk.sameBackend(op, named);
  for (const [n, t] of Object.entries({ dq, dk, dv, lse })) chk.dtype(op, n, t, "f32");
  for (const [n, t] of Object.entries({ dout, q, k, v, out })) chk.dtype(op, n, t, inDtype);
  const d = dims(op, q, k, v);
  same(op, "dq", dq, "q", q);
  same(op, "dk", dk, "k", k);
  same(op, "dv", dv, "v", v);
  same(op, "dout", dout, "q", q);
  same(op, "out", out, "q", q);
  lseShape(op, lse, q, d);
  const gs = { dq, dk, dv };
  const ins = { dout, q, k, v, out, lse };
  for (const [gn, g] of Object.entries(gs)) {
    for (const [n, t] of Object.entries(ins))
      if (overlaps(g, t)) throw new ShapeError(`${op}: gradient '${gn}' ${fmtShape(g.shape)} overlaps input '${n}' ${fmtShape(t.shape)}`);
    for (const [n, t] of Object.entries(gs))
      if (n !== gn && overlaps(g, t)) throw new ShapeError(`${op}: gradients '${gn}' and '${n}' overlap`);
  }
  if (q.numel === 0 || k.numel === 0) return;
  be.check(
    op,
    (inDtype === "f32" ? be.lib.tl_attention_backward : be.lib.tl_attention_backward_bf16)(
      dq.ptr(op), dk.ptr(op), dv.ptr(op), dout.ptr(op), q.ptr(op), k.ptr(op), v.ptr(op), out.ptr(op), lse.ptr(op),
      d.B, d.T, d.NH, d.NKV, d.HD,
    ),
  );
}
