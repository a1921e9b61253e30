import { getBackend, rmsnormBackward, rmsnormForward, swigluForward, add } from "@tinyllama/kernels";
const be = getBackend();
const N = 2048, C = 288;
const x = be.tensor([N, C]), w = be.tensor([C]), out = be.tensor([N, C]), rstd = be.tensor([N]), dout = be.tensor([N, C]), dinp = be.tensor([N, C]), dw = be.tensor([C]);
x.data().fill(0.5); w.data().fill(1); dout.data().fill(0.1);
for (const th of [1, 2, 1, 2]) {
  be.threads = th;
  const ts: Record<string, number[]> = { f: [], b: [], add: [] };
  for (let i = 0; i < 30; i++) {
    let t0 = performance.now(); rmsnormForward(out, rstd, x, w, 1e-5); ts.f!.push(performance.now() - t0);
    t0 = performance.now(); rmsnormBackward({ dinp, dweight: dw }, dout, x, w, rstd); ts.b!.push(performance.now() - t0);
    t0 = performance.now(); add(out, x, dout); ts.add!.push(performance.now() - t0);
  }
  const med = (a: number[]) => a.sort((p, q) => p - q)[a.length >> 1]!.toFixed(3);
  console.log(th, "fwd", med(ts.f!), "bwd", med(ts.b!), "add", med(ts.add!), "ms");
}
