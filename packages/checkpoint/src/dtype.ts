// Float conversions between f32 and the 16-bit formats checkpoints are stored in.
//
// bf16 and f16 data is kept as raw bits in a Uint16Array. Widening to f32 is exact for both formats;
// narrowing rounds to nearest, ties to even, as PyTorch's `tensor.to(torch.bfloat16 / torch.float16)`
// does, so a tensor read from a PyTorch file and written back comes out bit-identical.
//
// NaN: narrowing keeps the sign and the top payload bits (forcing one mantissa bit on if the payload would
// otherwise vanish into an infinity), as hardware conversions do, so any 16-bit NaN survives a round trip through
// f32. The canonical NaN 0x7fc00000 becomes 0x7fc0 (bf16) / 0x7e00 (f16), what PyTorch's scalar paths produce;
// PyTorch's AVX2 bf16 path writes 0xffff instead, so its NaN bits depend on the code path and are not matched.

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // safetensors and GGUF are little-endian and every view here reinterprets bytes in place.
  throw new Error("@tinyllama/checkpoint needs a little-endian host");
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits -> f32 (exact: bf16 is the top half of an f32). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`bf16ToF32: out has ${out.length} elements, src ${src.length}`);
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

/** One f32 bit pattern -> bf16 bits, round to nearest even (NaN: payload truncated, kept a NaN). */
export function f32BitsToBf16(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return bf16Nan(bits);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function bf16Nan(bits: number): number {
  const h = bits >>> 16;
  return (h & 0x7f) === 0 ? h | 0x40 : h;
}

/** f32 -> bf16 bits, round to nearest even. */
export function f32ToBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length !== src.length) throw new RangeError(`f32ToBf16: out has ${out.length} elements, src ${src.length}`);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) {
    const bits = s[i]!;
    out[i] = (bits & 0x7fffffff) > 0x7f800000 ? bf16Nan(bits) : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** One f16 bit pattern -> the f32 bit pattern of the same value (exact; NaN payloads kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN with its payload
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    f32[0] = mant * 2 ** -24; // subnormal: exact in f32 (normal there)
    return (sign | u32[0]!) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 -> 127
}

/** One f16 bit pattern -> its value. */
export function f16BitsToF32(h: number): number {
  u32[0] = f16BitsToF32Bits(h);
  return f32[0]!;
}

/** f16 bits -> f32 (exact). Works on bit patterns throughout, so NaN payloads survive (JS numbers may not keep them). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`f16ToF32: out has ${out.length} elements, src ${src.length}`);
  // 64K-entry table: one lookup per element instead of branching.
  const table = f16Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = table[src[i]!]!;
  return out;
}

let table16: Uint32Array | undefined;
function f16Table(): Uint32Array {
  if (!table16) {
    table16 = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) table16[h] = f16BitsToF32Bits(h);
  }
  return table16;
}

/** One f32 bit pattern -> f16 bits, round to nearest even; overflow goes to ±inf; NaN keeps its top payload bits. */
export function f32BitsToF16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7c00 | (mant >>> 13 || 0x200) : sign | 0x7c00;
  const e = exp - 127 + 15; // f16 biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e >= 1) {
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa bumps the exponent, which is exactly the right rounding (up to inf).
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
    return sign | h;
  }
  // Subnormal result: the value is (1.mant) * 2^(e-15) = m * 2^(e-15-23), in units of 2^-24 that is m >> (14 - e).
  const shift = 14 - e;
  if (shift > 24) return sign; // below half the smallest subnormal
  const m = mant | 0x800000;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1))) h++;
  return sign | h;
}

// Engines with a native Float16Array (Bun, recent V8) convert with hardware-speed RNE; NaN payloads are redone here
// because engines canonicalize them. Elsewhere (older Node, browsers) the portable bit-level loop runs.
const NativeF16 = (globalThis as { Float16Array?: typeof Float16Array }).Float16Array;

/** f32 -> f16 bits, round to nearest even (native Float16Array when the engine has one, else f32ToF16Portable). */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length !== src.length) throw new RangeError(`f32ToF16: out has ${out.length} elements, src ${src.length}`);
  if (!NativeF16) return f32ToF16Portable(src, out);
  new NativeF16(out.buffer, out.byteOffset, out.length).set(src);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) if ((s[i]! & 0x7fffffff) > 0x7f800000) out[i] = f32BitsToF16(s[i]!);
  return out;
}

/** f32 -> f16 bits with integer operations only (the reference the native path is tested against). */
export function f32ToF16Portable(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length !== src.length) throw new RangeError(`f32ToF16: out has ${out.length} elements, src ${src.length}`);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToF16(s[i]!);
  return out;
}

/** The f32 bit pattern of a number (after rounding it to f32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}
