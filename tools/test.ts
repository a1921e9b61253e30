/**
 * The README's test command. Runs `bun test` (all packages and cross-package tests, or the paths
 * given), streams its output, and ends with the plain line "N passed, N failed[, N skipped]" that CI
 * reads. Exits non-zero on any failure and when no test ran.
 */
export {};

const args = process.argv.slice(2);
// Kernel builds, Chromium and training tests take longer than bun's 5 s default per test.
const proc = Bun.spawn([process.execPath, "test", "--timeout", process.env.TINYLLAMA_TEST_TIMEOUT_MS ?? "300000", ...args], {
  stdout: "inherit",
  stderr: "pipe",
  env: { ...process.env, TINYLLAMA_QUIET: process.env.TINYLLAMA_QUIET ?? "1" },
});

let tail = "";
const decoder = new TextDecoder();
const reader = proc.stderr.getReader();
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  process.stderr.write(value);
  tail = (tail + decoder.decode(value, { stream: true })).slice(-4000);
}
const code = await proc.exited;

const count = (word: string): number => Number(new RegExp(`^\\s*(\\d+) ${word}\\b`, "m").exec(tail)?.[1] ?? 0);
const passed = count("pass");
const failed = count("fail");
const skipped = count("skip");

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
if (passed === 0) console.error("no test ran");
process.exit(code !== 0 || failed > 0 || passed === 0 ? 1 : 0);
