/**
 * Decode-time attention over a KV cache (generation): one new query per sequence attends to the
 * cached keys/values at positions 0..pos. Query head h reads kv head h / (NH/NKV) in place.
 */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

function overlaps(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes;
}

/**
 * out (B,NH,HD) = softmax(q k_cache[:, 0..pos]^T / sqrt(HD)) v_cache[:, 0..pos], per sequence and head.
 * q (B,NH,HD) holds the new token's queries (after RoPE at position pos); kCache, vCache
 * (B,maxT,NKV,HD) must hold keys (after RoPE) and values at positions 0..pos.
 */
export function attentionDecode(out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, pos: number): void {
  const op = "attention_decode";
  const be = chk.sameBackend(op, { out, q, kCache, vCache });
  for (const [n, t] of Object.entries({ out, q, kCache, vCache })) chk.dtype(op, n, t, "f32");
  if (q.shape.length !== 3) throw new ShapeError(`${op}: 'q' must be 3-D (B, NH, HD), got ${fmtShape(q.shape)}`);
  if (kCache.shape.length !== 4) throw new ShapeError(`${op}: 'kCache' must be 4-D (B, maxT, NKV, HD), got ${fmtShape(kCache.shape)}`);
  const [B, NH, HD] = q.shape as [number, number, number];
  const [kB, maxT, NKV, kHD] = kCache.shape as [number, number, number, number];
  if (kB !== B || kHD !== HD)
    throw new ShapeError(`${op}: 'kCache' ${fmtShape(kCache.shape)} must match 'q' ${fmtShape(q.shape)} in B and HD`);
  chk.shape(op, "vCache", vCache, kCache.shape);
  chk.shape(op, "out", out, q.shape);
  if (NKV === 0 || NH % NKV !== 0)
    throw new ShapeError(`${op}: query heads NH=${NH} ('q' ${fmtShape(q.shape)}) must be a multiple of kv heads NKV=${NKV} ('kCache' ${fmtShape(kCache.shape)})`);
  if (HD > 1024) throw new ShapeError(`${op}: head dim HD=${HD} exceeds the kernel's limit of 1024`);
  if (!Number.isInteger(pos) || pos < 0 || pos >= maxT)
    throw new ShapeError(`${op}: pos=${pos} must be an integer in [0, maxT) = [0, ${maxT}) for 'kCache' ${fmtShape(kCache.shape)}`);
  chk.int32Range(op, "B*maxT*NKV*HD / HD", B * maxT * NKV);
  for (const [n, t] of Object.entries({ q, kCache, vCache }))
    if (overlaps(out, t)) throw new ShapeError(`${op}: 'out' ${fmtShape(out.shape)} overlaps the input '${n}' ${fmtShape(t.shape)}`);
  if (out.numel === 0) return;
  be.check(op, be.lib.tl_attention_decode(out.ptr(op), q.ptr(op), kCache.ptr(op), vCache.ptr(op), B, NH, NKV, HD, maxT, pos));
}
