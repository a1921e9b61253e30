/**
 * Device memory owned by TypeScript objects. A DeviceBuffer is one library allocation, freed
 * deterministically with free() (or `using`); a Tensor is a typed, shaped view into a buffer.
 * Every op checks that its tensors' buffers are alive, so a use after free is an Error, not a crash.
 */
import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { Backend } from "./backend.ts";
import { ShapeError, fmtShape } from "./errors.ts";

export type DType = "f32" | "bf16" | "f16" | "i32" | "u16" | "u8";

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u16: 2, u8: 1 };

type TypedArrayOf<D extends DType> = D extends "f32"
  ? Float32Array
  : D extends "i32"
    ? Int32Array
    : D extends "u8"
      ? Uint8Array
      : Uint16Array;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: readonly number[], what: string): void {
  for (const d of shape)
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`${what}: bad shape ${fmtShape(shape)}: dimensions must be non-negative integers`);
}

export class DeviceBuffer {
  #ptr: number;
  #freed = false;
  constructor(
    readonly backend: Backend,
    ptr: number,
    readonly bytes: number,
  ) {
    this.#ptr = ptr;
  }
  get alive(): boolean {
    return !this.#freed;
  }
  /** The raw address; throws if the buffer was freed. */
  address(op = "buffer"): number {
    if (this.#freed) throw new ShapeError(`${op}: buffer of ${this.bytes} bytes was already freed`);
    return this.#ptr;
  }
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.backend.freeRaw(this.#ptr);
  }
  [Symbol.dispose](): void {
    this.free();
  }
}

export class Tensor<D extends DType = DType> {
  readonly numel: number;
  constructor(
    readonly buffer: DeviceBuffer,
    readonly byteOffset: number,
    readonly shape: readonly number[],
    readonly dtype: D,
  ) {
    checkShape(shape, "Tensor");
    this.numel = numelOf(shape);
    if (byteOffset < 0 || byteOffset + this.bytes > buffer.bytes)
      throw new ShapeError(`Tensor ${fmtShape(shape)} ${dtype} at offset ${byteOffset} does not fit in a buffer of ${buffer.bytes} bytes`);
  }
  get backend(): Backend {
    return this.buffer.backend;
  }
  get bytes(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }
  /** Address of the first element, for passing to a kernel. */
  ptr(op = "tensor"): Pointer {
    return (this.buffer.address(op) + this.byteOffset) as Pointer;
  }
  /** The same memory with another shape of equal element count. */
  view(shape: readonly number[]): Tensor<D> {
    if (numelOf(shape) !== this.numel)
      throw new ShapeError(`view: cannot view ${fmtShape(this.shape)} (${this.numel} elements) as ${fmtShape(shape)}`);
    return new Tensor(this.buffer, this.byteOffset, shape, this.dtype);
  }
  /** Rows [start, start+count) along the first dimension. */
  rows(start: number, count: number): Tensor<D> {
    const n = this.shape[0] ?? 0;
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > n)
      throw new ShapeError(`rows: [${start}, ${start + count}) is outside dimension 0 of ${fmtShape(this.shape)}`);
    const rowBytes = n === 0 ? 0 : this.bytes / n;
    return new Tensor(this.buffer, this.byteOffset + start * rowBytes, [count, ...this.shape.slice(1)], this.dtype);
  }
  /**
   * A typed array over the tensor's memory (CPU backend only). It is valid until the buffer is
   * freed: keep the owner alive while you use it.
   */
  data(): TypedArrayOf<D> {
    if (this.backend.kind !== "cpu")
      throw new ShapeError(`data(): tensors on the ${this.backend.kind} backend have no host view; use read() / write()`);
    const ab = toArrayBuffer(this.ptr("data"), 0, Math.max(this.bytes, 0));
    return makeView(this.dtype, ab, this.numel) as TypedArrayOf<D>;
  }
  /** A copy of the contents in host memory (any backend). */
  read(): TypedArrayOf<D> {
    const out = makeView(this.dtype, new ArrayBuffer(this.bytes), this.numel) as TypedArrayOf<D>;
    this.backend.download(out, this);
    return out;
  }
  /** Copies host data in (any backend); the length must match exactly. */
  write(src: ArrayLike<number>): this {
    if (src.length !== this.numel)
      throw new ShapeError(`write: tensor ${fmtShape(this.shape)} holds ${this.numel} elements, got ${src.length}`);
    const typed = ArrayBuffer.isView(src) && (src as TypedArrayOf<D>).constructor === ctorOf(this.dtype) ? (src as TypedArrayOf<D>) : fromList(this.dtype, src);
    this.backend.upload(this, typed);
    return this;
  }
  zero(): this {
    this.backend.zero(this);
    return this;
  }
  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}, ${this.backend.kind})`;
  }
}

function ctorOf(dtype: DType): Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor | Uint16ArrayConstructor {
  switch (dtype) {
    case "f32":
      return Float32Array;
    case "i32":
      return Int32Array;
    case "u8":
      return Uint8Array;
    default:
      return Uint16Array;
  }
}

function makeView(dtype: DType, ab: ArrayBuffer, n: number): Float32Array | Int32Array | Uint8Array | Uint16Array {
  return new (ctorOf(dtype))(ab, 0, n);
}

function fromList(dtype: DType, src: ArrayLike<number>): Float32Array | Int32Array | Uint8Array | Uint16Array {
  const out = makeView(dtype, new ArrayBuffer(src.length * DTYPE_BYTES[dtype]), src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (dtype === "i32" && !Number.isInteger(v)) throw new ShapeError(`write: element ${i} (${v}) is not an integer`);
    out[i] = v;
  }
  return out;
}

export interface TensorSpec {
  name: string;
  shape: readonly number[];
  dtype?: DType;
}

/**
 * One allocation holding many named tensors, each 64-byte aligned (llm.c's arena). Parameters,
 * gradients, optimizer state and activations each get one, sized once per model and batch shape.
 */
export class Arena {
  readonly buffer: DeviceBuffer;
  readonly specs: readonly TensorSpec[];
  readonly #tensors = new Map<string, Tensor>();
  readonly offsets: ReadonlyMap<string, number>;
  readonly #shadows = new Map<DType, Arena>();

  constructor(backend: Backend, specs: readonly TensorSpec[], layout?: { offsets: Map<string, number>; bytes: number }) {
    const { offsets, bytes } = layout ?? Arena.plan(specs);
    this.specs = specs;
    this.offsets = offsets;
    this.buffer = backend.allocRaw(bytes);
    for (const s of specs) this.#tensors.set(s.name, new Tensor(this.buffer, offsets.get(s.name)!, s.shape, s.dtype ?? "f32"));
  }

  /** Byte offsets and total size of an arena for these specs, without allocating it. */
  static plan(specs: readonly TensorSpec[]): { offsets: Map<string, number>; bytes: number } {
    const offsets = new Map<string, number>();
    let bytes = 0;
    for (const s of specs) {
      checkShape(s.shape, `Arena tensor '${s.name}'`);
      if (offsets.has(s.name)) throw new ShapeError(`Arena: tensor name '${s.name}' appears twice`);
      offsets.set(s.name, bytes);
      bytes += Math.ceil((numelOf(s.shape) * DTYPE_BYTES[s.dtype ?? "f32"]) / 64) * 64;
    }
    return { offsets, bytes };
  }

  /**
   * An arena holding every tensor of `of` (an all-f32 arena) as `dtype`, each at the same ELEMENT
   * offset as in `of`: element i of of.flat() and of shadow.flat(dtype) belong to the same tensor
   * element, so one fused kernel can run over a flat range of both (e.g. AdamW refreshing the bf16
   * copies of fp32 master weights). Alignment: 64 bytes scaled by the element size.
   */
  static shadow(of: Arena, dtype: DType): Arena {
    const offsets = new Map<string, number>();
    for (const s of of.specs) {
      if ((s.dtype ?? "f32") !== "f32") throw new ShapeError(`Arena.shadow: tensor '${s.name}' is ${s.dtype}; only an all-f32 arena can be shadowed`);
      offsets.set(s.name, (of.offsets.get(s.name)! / 4) * DTYPE_BYTES[dtype]);
    }
    const shadow = new Arena(of.buffer.backend, of.specs.map((s) => ({ ...s, dtype })), { offsets, bytes: (of.buffer.bytes / 4) * DTYPE_BYTES[dtype] });
    of.#shadows.set(dtype, shadow);
    return shadow;
  }

  /**
   * The live shadow copy of this arena in `dtype` made by Arena.shadow, or null: lets whoever
   * updates this arena (AdamW) keep the copy current without being told about it.
   */
  shadowOf(dtype: DType): Arena | null {
    const s = this.#shadows.get(dtype);
    return s && s.buffer.alive ? s : null;
  }

  get(name: string): Tensor {
    const t = this.#tensors.get(name);
    if (!t) throw new ShapeError(`Arena: no tensor named '${name}'`);
    return t;
  }
  has(name: string): boolean {
    return this.#tensors.has(name);
  }
  get names(): string[] {
    return this.specs.map((s) => s.name);
  }
  /** The whole arena as one flat tensor of `dtype` (for fused optimizer steps, all-reduce, zeroing). */
  flat(dtype: DType = "f32"): Tensor {
    return new Tensor(this.buffer, 0, [this.buffer.bytes / DTYPE_BYTES[dtype]], dtype);
  }
  zero(): void {
    this.buffer.backend.zeroRaw(this.buffer, this.buffer.bytes);
  }
  free(): void {
    this.buffer.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }
}
