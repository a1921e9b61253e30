/** SwiGLU's fused elementwise half: out = silu(gate) * up. */
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/** out, gate, up: same shape. out may alias gate or up. */
export function swigluForward(out: Tensor, gate: Tensor, up: Tensor): void {
  const op = "swiglu_forward";
  const be = chk.sameBackend(op, { out, gate, up });
  for (const [n, t] of Object.entries({ out, gate, up })) chk.dtype(op, n, t, "f32");
  chk.shape(op, "up", up, gate.shape);
  chk.shape(op, "out", out, gate.shape);
  if (gate.numel === 0) return;
  be.check(op, be.lib.tl_swiglu_forward(out.ptr(op), gate.ptr(op), up.ptr(op), gate.numel));
}

/** dgate += dout * up * silu'(gate); dup += dout * silu(gate). Either gradient may be omitted. */
export function swigluBackward(grads: { dgate?: Tensor | null; dup?: Tensor | null }, dout: Tensor, gate: Tensor, up: Tensor): void {
  const op = "swiglu_backward";
  const { dgate, dup } = grads;
  const be = chk.sameBackend(op, { dgate, dup, dout, gate, up });
  for (const [n, t] of Object.entries({ dgate, dup, dout, gate, up })) chk.dtype(op, n, t, "f32");
  for (const [n, t] of Object.entries({ dgate, dup, dout, up })) chk.shape(op, n, t, gate.shape);
  if (gate.numel === 0 || (!dgate && !dup)) return;
  be.check(op, be.lib.tl_swiglu_backward(dgate ? dgate.ptr(op) : null, dup ? dup.ptr(op) : null, dout.ptr(op), gate.ptr(op), up.ptr(op), gate.numel));
}
