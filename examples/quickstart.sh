#!/usr/bin/env bash
# The shortest way to see kiln work: installs the Debian packages that are missing, builds a Release
# kiln in build/ and runs `kiln demo`, which trains a small MLP and a small CNN on synthetic data.
# usage: examples/quickstart.sh [kiln demo options...]   (KILN_CMAKE_ARGS adds configure arguments)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== deps"
scripts/install-deps.sh --with-data

echo "== build (Release, in build/)"
read -r -a extra_args <<<"${KILN_CMAKE_ARGS:-}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF "${extra_args[@]}"
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"

echo "== kiln --version"
build/kiln --version

echo "== kiln demo"
build/kiln demo "$@"
