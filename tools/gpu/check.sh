#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU but no network and no Bun (see README.md):
#   1. unpacks Bun and the node_modules subset from the carried .device/ (tools/gpu/pack.sh)
#   2. builds the CPU and CUDA libraries there (or uses .device/prebuilt when it cannot)
#   3. runs test/cuda/{abi,parity,model_bf16} (CUDA vs CPU parity of every op, TINYLLAMA_CUDA_SYNC=1 so a
#      fault names its op; the whole model's bf16 step and 50-step loss curve against the CPU's fp32)
#   4. runs tools/gpu/step.ts: the TinyLlama-1.1B bf16 training step at micro-batch 8 x 2048 (tokens/s, MFU, memory)
#   5. runs tools/gpu/bench.ts (per-kernel time and throughput against measured ceilings; 120 s at most)
#   6. runs tools/gpu/sanitize.ts under compute-sanitizer memcheck, racecheck and synccheck (when installed, 40 s
#      each at most, in the time left): out-of-bounds accesses, shared-memory races and barrier misuse the CPU
#      emulator cannot see
# Budget: under 5 minutes. Exit status: non-zero if a test or the training step failed.
# Usage: tools/gpu/check.sh [--prebuilt] [--no-bench] [--quick-bench] [--no-step] [--no-sanitize]
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
DEV=${TINYLLAMA_DEVICE_DIR:-.device}
WORK=${TMPDIR:-/tmp}/tinyllama-gpu
mkdir -p "$WORK"
PREBUILT=0; BENCH=1; STEP=1; SANITIZE=1; BENCH_ARGS=()
for a in "$@"; do
  case "$a" in
    --prebuilt) PREBUILT=1 ;;
    --no-bench) BENCH=0 ;;
    --quick-bench) BENCH_ARGS+=(--quick) ;;
    --no-step) STEP=0 ;;
    --no-sanitize) SANITIZE=0 ;;
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
# python3's own site-packages (a virtualenv's even when VIRTUAL_ENV is not set in this shell) for the
# cuBLASLt loader, which also searches next to every python3 on PATH and /opt/*/{.venv,venv} itself
PYSITE=$(python3 -c 'import site,sys; print(":".join(site.getsitepackages()))' 2>/dev/null) || PYSITE=""
if [ -n "$PYSITE" ]; then export TINYLLAMA_PYTHON_SITE="${TINYLLAMA_PYTHON_SITE:+$TINYLLAMA_PYTHON_SITE:}$PYSITE"; fi
echo "python3: $(command -v python3 || echo none); TINYLLAMA_PYTHON_SITE=${TINYLLAMA_PYTHON_SITE:-}"
echo "cuBLASLt candidates:"
{ ldconfig -p 2>/dev/null | grep -o '/[^ ]*libcublasLt\.so[.0-9]*'; ls -1 /usr/local/cuda/lib64/libcublasLt.so* 2>/dev/null;
  ls -1d /usr/lib/python3*/*-packages/nvidia/cu*/lib/libcublasLt.so* /usr/local/lib/python3*/*-packages/nvidia/cu*/lib/libcublasLt.so* \
    ~/.local/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so* \
    /opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so* /opt/*/venv/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so* \
    /opt/*/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so* 2>/dev/null
  IFS=: read -ra sites <<< "${TINYLLAMA_PYTHON_SITE:-}"
  for d in ${sites[@]+"${sites[@]}"}; do ls -1d "$d"/nvidia/cu*/lib/libcublasLt.so* 2>/dev/null; done; } | sort -u | sed 's/^/  /' || true

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

left() { echo $(( 295 - ($(date +%s) - START) )); } # seconds of the 5-minute budget still free

phase "tests (test/cuda: abi + parity + model_bf16)"
TESTS_RC=0
# not emu.test.ts: the CPU emulator has nothing to add where the real GPU is
LOG="$WORK/tests.log"
TINYLLAMA_CUDA_SYNC=1 timeout 200 "$BUN" test --timeout 120000 test/cuda/abi.test.ts test/cuda/parity.test.ts 2>&1 | tee "$LOG"
TESTS_RC=${PIPESTATUS[0]}
# the model test without per-launch syncs (it is a whole training run); a fault still fails it at the next sync
timeout 120 "$BUN" test --timeout 120000 test/cuda/model_bf16.test.ts 2>&1 | tee -a "$LOG"
RC2=${PIPESTATUS[0]}; [ "$RC2" = 0 ] || TESTS_RC=$RC2
# on a GPU machine a skipped GPU test is a failure, not a pass: the library did not build or cannot reach the GPU
if grep -q "skipped: no CUDA GPU" "$LOG"; then
  echo "check.sh: FAILED: the CUDA tests were skipped on this machine ($(grep -m1 -o 'skipped: no CUDA GPU.*' "$LOG"))"
  [ "$TESTS_RC" != 0 ] || TESTS_RC=1
fi
[ "$TESTS_RC" = 0 ] || echo "check.sh: FAILED: test/cuda (rc $TESTS_RC): see the failures above"

STEP_RC=0
if [ "$STEP" = 1 ]; then
  phase "training step: tinyllama-1.1b, bf16, micro-batch 8 x 2048 (budget $(left) s)"
  T=$(left); [ "$T" -gt 120 ] && T=120
  if [ "$T" -lt 30 ]; then echo "check.sh: FAILED: no time left for the training step ($T s): rerun with --no-bench --quick-bench"; STEP_RC=1
  else timeout "$T" "$BUN" tools/gpu/step.ts --precision bf16 --batch 8 --seq 2048 --steps 3 --profile || STEP_RC=$?
    [ "$STEP_RC" = 0 ] || echo "check.sh: FAILED: training step (rc $STEP_RC; 124 = out of time)"; fi
fi

if [ "$BENCH" = 1 ]; then
  T=$(left); [ "$T" -gt 120 ] && T=120
  phase "benchmark (budget $T s)"
  if [ "$T" -lt 20 ]; then echo "check.sh: benchmark SKIPPED: the 5-minute budget is spent (run it alone: --no-step)"
  else timeout "$T" "$BUN" tools/gpu/bench.ts ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"} || echo "check.sh: benchmark failed or ran out of time (rc $?)"; fi
fi
SAN_RC=0
if [ "$SANITIZE" = 1 ]; then
  SAN=$(command -v compute-sanitizer || ls -1 /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer /opt/nvidia/*/*/compute-sanitizer 2>/dev/null | head -1 || true)
  phase "compute-sanitizer on tools/gpu/sanitize.ts (every shared-memory / warp-level kernel once, small shapes)"
  if [ -z "$SAN" ]; then echo "compute-sanitizer: not found (skipped)"
  else
    for tool in memcheck racecheck synccheck; do
      T=$(left); [ "$T" -gt 40 ] && T=40
      if [ "$T" -lt 15 ]; then echo "$tool: SKIPPED (the 5-minute budget is spent: run check.sh --no-step --no-bench for it)"; continue; fi
      SLOG="$WORK/sanitize-$tool.log"
      timeout "$T" "$SAN" --tool "$tool" --error-exitcode 99 --print-limit 10 "$BUN" tools/gpu/sanitize.ts > "$SLOG" 2>&1
      rc=$?
      summary=$(grep -m1 -o "ERROR SUMMARY: [0-9]* error[s]*" "$SLOG" || true)
      if [ "$rc" = 99 ]; then echo "$tool: FAILED: ${summary:-errors reported}"; grep -m20 -E "^=+ (Invalid|Race|Barrier|Error|Warning|ERROR)|^=+ +at " "$SLOG" | head -20; SAN_RC=1
      elif [ "$rc" = 0 ]; then echo "$tool: ok (${summary:-no summary line}; $(grep -c '^ok ' "$SLOG") kernels)"
      else echo "$tool: did not complete (rc $rc; 124 = out of time): $(tail -2 "$SLOG" | tr '\n' ' ')"; fi
    done
  fi
fi

RC=$(( TESTS_RC != 0 || STEP_RC != 0 || SAN_RC != 0 ))
phase "done (tests rc $TESTS_RC, sanitizer rc $SAN_RC, training step rc $STEP_RC)$( [ $RC = 0 ] && echo ': OK' || echo ': FAILED')"
exit $RC
