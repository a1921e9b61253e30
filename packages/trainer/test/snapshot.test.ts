import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { latestSnapshot, listSnapshots, readSnapshot, snapshotName, writeSnapshot } from "@tinyllama/trainer";

const bytes = (...v: number[]) => new Uint8Array(v);

describe("snapshots", () => {
  test("write, list, read back, keep the last K", () => {
    const root = mkdtempSync(join(tmpdir(), "tl-snap-"));
    for (const step of [1, 2, 3, 4]) writeSnapshot(root, step, { "a.bin": bytes(step, 2, 3), "b.json": [bytes(123), bytes(125)] }, 2);
    expect(listSnapshots(root)).toEqual([3, 4]);
    expect(readdirSync(root).some((n) => n.startsWith(".tmp"))).toBe(false);
    const s = readSnapshot(join(root, snapshotName(4)));
    expect(s.step).toBe(4);
    expect([...s.files.get("a.bin")!]).toEqual([4, 2, 3]);
    expect([...s.files.get("b.json")!]).toEqual([123, 125]);
  });

  test("a truncated or corrupted newest snapshot is skipped for the previous one, with a message", () => {
    const root = mkdtempSync(join(tmpdir(), "tl-snap-"));
    writeSnapshot(root, 10, { "w.bin": new Uint8Array(1000).fill(7) }, 0);
    writeSnapshot(root, 20, { "w.bin": new Uint8Array(1000).fill(8) }, 0);
    writeSnapshot(root, 30, { "w.bin": new Uint8Array(1000).fill(9) }, 0);
    truncateSync(join(root, snapshotName(30), "w.bin"), 500);
    const flipped = new Uint8Array(1000).fill(8);
    flipped[17] = 0;
    writeFileSync(join(root, snapshotName(20), "w.bin"), flipped);
    const warnings: string[] = [];
    const got = latestSnapshot(root, (m) => warnings.push(m));
    expect(got?.step).toBe(10);
    expect(got?.files.get("w.bin")![0]).toBe(7);
    expect(warnings.length).toBe(2);
    expect(warnings[0]).toContain("truncated");
    expect(warnings[1]).toContain("SHA-256");
  });

  test("an empty or missing root has no snapshot", () => {
    expect(latestSnapshot(join(tmpdir(), "tl-does-not-exist-" + process.pid))).toBeNull();
  });
});
