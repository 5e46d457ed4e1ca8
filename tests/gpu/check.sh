#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with an NVIDIA GPU: builds kiln with
# KILN_CUDA=ON in build-gpu/ and runs the tests labelled gpu (they skip, exit 77, without a device).
# usage: bash tests/gpu/check.sh      (needs the build dependencies and CUDA in /usr/local/cuda)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
cmake -S . -B build-gpu -DKILN_CUDA=ON -DKILN_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-gpu -j"$(nproc)" --target kiln test_cuda
build-gpu/kiln --version
ctest --test-dir build-gpu -L gpu --output-on-failure
