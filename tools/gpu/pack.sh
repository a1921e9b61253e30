#!/usr/bin/env bash
# Prepares .device/ (gitignored) for tools/gpu/check.sh on a GPU machine that has no network and
# no Bun. Run it here, on a machine with `npm install` done (and nvcc, for the prebuilt CUDA
# library); then carry .device (and nothing else: the working tree travels by itself).
#   .device/bun.xz               the Bun binary from node_modules (xz -T2 -6)
#   .device/node_modules.tar.xz  the third-party runtime packages (valibot, mitata); workspace
#                                packages are symlinks that check.sh recreates
#   .device/prebuilt/            libtinyllama_cuda.so + a portable libtinyllama_cpu.so, used only
#                                when the GPU machine cannot compile (no nvcc / no C compiler)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.device
mkdir -p "$OUT"

BUN=node_modules/bun/bin/bun.exe
[ -x "$BUN" ] || { echo "pack.sh: $BUN not found: run 'npm install' first" >&2; exit 1; }
if [ ! -f "$OUT/bun.xz" ] || [ "$BUN" -nt "$OUT/bun.xz" ]; then
  echo "== compressing $BUN (xz -T2 -6, about a minute)"
  xz -T2 -6 -c "$BUN" > "$OUT/bun.xz.tmp"
  mv "$OUT/bun.xz.tmp" "$OUT/bun.xz"
fi

echo "== node_modules subset"
PKGS=()
for p in valibot mitata; do [ -d "node_modules/$p" ] && PKGS+=("$p"); done
tar -C node_modules -cf - "${PKGS[@]}" | xz -T2 -6 > "$OUT/node_modules.tar.xz"

echo "== prebuilt libraries"
if command -v nvcc >/dev/null 2>&1 || [ -n "${NVCC:-}" ]; then
  "$BUN" tools/gpu/prebuild.ts "$OUT/prebuilt"
else
  echo "pack.sh: no nvcc here; the GPU machine will have to build the CUDA library itself" >&2
fi

du -sh "$OUT"/* | sed 's/^/  /'
total=$(du -sm "$OUT" | cut -f1)
echo "== .device is ${total} MiB (the carry limit is 64 MiB in all)"
[ "$total" -lt 64 ] || { echo "pack.sh: too large to carry" >&2; exit 1; }
