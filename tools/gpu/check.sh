#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU but no network and no Bun (see README.md):
#   1. unpacks Bun and the node_modules subset from the carried .device/ (tools/gpu/pack.sh)
#   2. builds the CPU and CUDA libraries there (or uses .device/prebuilt when it cannot)
#   3. runs test/cuda/{abi,parity} (CUDA vs CPU parity of every op; TINYLLAMA_CUDA_SYNC=1 so a fault names its op)
#   4. runs tools/gpu/bench.ts (per-kernel time and throughput against measured ceilings)
# Budget: under 5 minutes. Usage: tools/gpu/check.sh [--prebuilt] [--no-bench] [--quick-bench]
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
DEV=${TINYLLAMA_DEVICE_DIR:-.device}
WORK=${TMPDIR:-/tmp}/tinyllama-gpu
mkdir -p "$WORK"
PREBUILT=0; BENCH=1; BENCH_ARGS=()
for a in "$@"; do
  case "$a" in
    --prebuilt) PREBUILT=1 ;;
    --no-bench) BENCH=0 ;;
    --quick-bench) BENCH_ARGS+=(--quick) ;;
    *) echo "check.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
phase() { echo; echo "== [$(( $(date +%s) - START ))s] $*"; }
unxz_to() { # unxz_to FILE.xz OUT: xz if present, else Python's lzma
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}

phase "machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L 2>&1 | head -4
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
else echo "nvidia-smi: not available"; fi
ls -l /dev/nvidia0 2>/dev/null || echo "/dev/nvidia0: absent"
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
echo "nvcc: ${NVCC:-none} $( [ -n "$NVCC" ] && "$NVCC" --version | tail -1)"
echo "cc:   $(command -v cc || command -v gcc || echo none)"
echo "cores: $(nproc)"
echo "cuBLASLt candidates:"
{ ldconfig -p 2>/dev/null | grep -o '/[^ ]*libcublasLt\.so[.0-9]*'; ls -1 /usr/local/cuda/lib64/libcublasLt.so* 2>/dev/null;
  ls -1d /usr/lib/python3*/*-packages/nvidia/cu*/lib/libcublasLt.so* /usr/local/lib/python3*/*-packages/nvidia/cu*/lib/libcublasLt.so* \
    ~/.local/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so* 2>/dev/null; } | sort -u | sed 's/^/  /' || true

phase "bun"
if command -v bun >/dev/null 2>&1; then BUN=$(command -v bun)
elif [ -x node_modules/bun/bin/bun.exe ]; then BUN=node_modules/bun/bin/bun.exe
elif [ -f "$DEV/bun.xz" ]; then
  BUN="$WORK/bun"
  [ -x "$BUN" ] || { unxz_to "$DEV/bun.xz" "$BUN.tmp" && chmod +x "$BUN.tmp" && mv "$BUN.tmp" "$BUN"; } || { echo "check.sh: could not unpack $DEV/bun.xz" >&2; exit 1; }
else echo "check.sh: no bun and no $DEV/bun.xz: run tools/gpu/pack.sh and carry .device" >&2; exit 1; fi
echo "bun $("$BUN" --version) at $BUN"
# Workspace packages are symlinks in node_modules (the hoisted layout npm would make); third-party ones come from the carry.
mkdir -p node_modules/@tinyllama
for d in packages/*/; do n=$(basename "$d"); [ -e "node_modules/@tinyllama/$n" ] || ln -sfn "../../packages/$n" "node_modules/@tinyllama/$n"; done
if [ -f "$DEV/node_modules.tar.xz" ]; then unxz_to "$DEV/node_modules.tar.xz" "$WORK/nm.tar" && tar -C node_modules -xf "$WORK/nm.tar"; fi

phase "build"
export TINYLLAMA_QUIET=1
if [ -z "$NVCC" ] || [ "$PREBUILT" = 1 ]; then
  [ -f "$DEV/prebuilt/libtinyllama_cuda.so" ] || { echo "check.sh: no nvcc here and no $DEV/prebuilt/libtinyllama_cuda.so" >&2; exit 1; }
  export TINYLLAMA_CUDA_LIB="$PWD/$DEV/prebuilt/libtinyllama_cuda.so"
  echo "using the prebuilt CUDA library (nvcc 13, needs a CUDA 13 driver): $TINYLLAMA_CUDA_LIB"
else
  export TINYLLAMA_CUDA_ARCH=${TINYLLAMA_CUDA_ARCH:-90} # this GPU only: a third of the full build
fi
if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  export TINYLLAMA_CPU_LIB="$PWD/$DEV/prebuilt/libtinyllama_cpu.so"
  echo "no C compiler: using the prebuilt portable CPU library $TINYLLAMA_CPU_LIB"
fi
timeout 240 "$BUN" tools/build-kernels.ts --cuda || { echo "check.sh: build failed" >&2; exit 1; }

phase "tests (test/cuda: abi + parity)"
TESTS_RC=0
# not emu.test.ts: the CPU emulator has nothing to add where the real GPU is
TINYLLAMA_CUDA_SYNC=1 timeout 240 "$BUN" test --timeout 120000 test/cuda/abi.test.ts test/cuda/parity.test.ts || TESTS_RC=$?

if [ "$BENCH" = 1 ]; then
  phase "benchmark"
  timeout 150 "$BUN" tools/gpu/bench.ts ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"} || echo "check.sh: benchmark failed (rc $?)"
fi
phase "done (tests rc $TESTS_RC)"
exit $TESTS_RC
