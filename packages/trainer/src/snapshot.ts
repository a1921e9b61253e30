/**
 * Crash-safe checkpoint directories. A snapshot is a folder `step-NNNNNNNN/` holding named files
 * and a manifest with each file's size and SHA-256. It is written into a temporary folder, every
 * file fsynced, then renamed into place, so a reader sees a whole snapshot or none; a truncated or
 * corrupted one fails verification and is skipped for the previous one.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

const MANIFEST = "manifest.json";
const PREFIX = "step-";

interface Manifest {
  format: "tinyllama-snapshot";
  version: 1;
  step: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

function sha256(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

function writeFileSynced(path: string, parts: readonly Uint8Array[]): void {
  const fd = openSync(path, "w");
  try {
    for (const p of parts) {
      let off = 0;
      while (off < p.byteLength) off += writeSync(fd, p, off, p.byteLength - off);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function snapshotName(step: number): string {
  return `${PREFIX}${String(step).padStart(8, "0")}`;
}

/** Writes `files` as snapshot `step` under `root` atomically and keeps only the newest `keep` (0: all). */
export function writeSnapshot(root: string, step: number, files: Record<string, Uint8Array | readonly Uint8Array[]>, keep: number): string {
  mkdirSync(root, { recursive: true });
  const final = join(root, snapshotName(step));
  const tmp = join(root, `.tmp-${snapshotName(step)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const manifest: Manifest = { format: "tinyllama-snapshot", version: 1, step, files: {} };
  for (const [name, data] of Object.entries(files)) {
    const parts = data instanceof Uint8Array ? [data] : data;
    writeFileSynced(join(tmp, name), parts);
    const h = new Bun.CryptoHasher("sha256");
    let bytes = 0;
    for (const p of parts) {
      h.update(p);
      bytes += p.byteLength;
    }
    manifest.files[name] = { bytes, sha256: h.digest("hex") };
  }
  writeFileSynced(join(tmp, MANIFEST), [new TextEncoder().encode(JSON.stringify(manifest, null, 1))]);
  fsyncDir(tmp);
  if (existsSync(final)) rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncDir(root);
  if (keep > 0) for (const old of listSnapshots(root).slice(0, -keep)) rmSync(join(root, snapshotName(old)), { recursive: true, force: true });
  return final;
}

/** Steps of the snapshots under root (by folder name, unverified), oldest first. */
export function listSnapshots(root: string): number[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((n) => n.startsWith(PREFIX) && /^\d+$/.test(n.slice(PREFIX.length)))
    .map((n) => Number(n.slice(PREFIX.length)))
    .sort((a, b) => a - b);
}

/** Reads and verifies one snapshot; throws an Error saying what is wrong with it. */
export function readSnapshot(dir: string): { step: number; files: Map<string, Uint8Array> } {
  const mpath = join(dir, MANIFEST);
  if (!existsSync(mpath)) throw new Error(`${dir}: no ${MANIFEST} (incomplete snapshot)`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(mpath, "utf8")) as Manifest;
  } catch (e) {
    throw new Error(`${dir}: ${MANIFEST} is not valid JSON (${(e as Error).message})`);
  }
  if (manifest.format !== "tinyllama-snapshot" || manifest.version !== 1) throw new Error(`${dir}: unknown snapshot format`);
  const files = new Map<string, Uint8Array>();
  for (const [name, meta] of Object.entries(manifest.files)) {
    const p = join(dir, name);
    if (!existsSync(p)) throw new Error(`${dir}: file ${name} is missing`);
    const data = new Uint8Array(readFileSync(p));
    if (data.byteLength !== meta.bytes) throw new Error(`${dir}: ${name} is ${data.byteLength} bytes, manifest says ${meta.bytes} (truncated?)`);
    if (sha256(data) !== meta.sha256) throw new Error(`${dir}: ${name} fails its SHA-256 check (corrupted)`);
    files.set(name, data);
  }
  return { step: manifest.step, files };
}

/**
 * The newest snapshot under root that verifies, skipping broken ones with a message through
 * `warn`; null if there is none.
 */
export function latestSnapshot(root: string, warn: (msg: string) => void = () => {}): { step: number; dir: string; files: Map<string, Uint8Array> } | null {
  for (const step of listSnapshots(root).reverse()) {
    const dir = join(root, snapshotName(step));
    try {
      return { ...readSnapshot(dir), dir };
    } catch (e) {
      warn(`skipping checkpoint ${dir}: ${(e as Error).message}`);
    }
  }
  return null;
}
