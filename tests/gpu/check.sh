#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with an NVIDIA GPU: builds kiln with
# KILN_CUDA=ON in build-gpu/ and runs every test labelled gpu (they skip, exit 77, without a
# device): test_cuda (saxpy) and test_cuda_ops (every op's CUDA kernels against the CPU's, the
# optimizers and clipping). When $OUT names a folder, the card, the build log, each test's output
# and summary.txt (one line per test, then ctest's totals) are written there.
# usage: bash tests/gpu/check.sh      (needs the build dependencies and CUDA in /usr/local/cuda)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="${OUT:-}"
log() { if [ -n "$out" ]; then tee -a "$out/$1"; else cat; fi; }
[ -n "$out" ] && mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | log card.txt
gpu_tests=(test_cuda test_cuda_ops)
{
    cmake -S . -B build-gpu -DKILN_CUDA=ON -DKILN_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
        cmake --build build-gpu -j"$(nproc)" --target kiln "${gpu_tests[@]}"
} 2>&1 | log build.txt
build=${PIPESTATUS[0]}
if [ "$build" -ne 0 ]; then
    echo "check.sh: the build failed (status $build)" | log summary.txt
    exit "$build"
fi
build-gpu/kiln --version | log card.txt
ctest --test-dir build-gpu -L gpu --output-on-failure 2>&1 | log ctest.txt
status=${PIPESTATUS[0]}
if [ -n "$out" ]; then
    grep -E '^ *[0-9]+/[0-9]+ Test' "$out/ctest.txt" >"$out/summary.txt"
    grep -E 'tests passed|tests failed|Skipped' "$out/ctest.txt" >>"$out/summary.txt"
    cat "$out/summary.txt"
fi
exit "$status"
