#!/usr/bin/env bash
# Builds kiln with AddressSanitizer and UndefinedBehaviorSanitizer in build-test/ and runs every
# ctest suite: the one command behind `bash .ci/run` and behind "do the tests pass?" on a laptop.
# usage: tests/run.sh [ctest args...]   e.g. tests/run.sh -L unit, tests/run.sh -R test_optim
# Environment: KILN_CMAKE_ARGS adds configure arguments (they win over the defaults here);
# KILN_SKIP_DEPS=1 skips scripts/install-deps.sh (for machines where apt is not yours to run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="build-test"
jobs="$(nproc 2>/dev/null || echo 2)"

section() { printf '\n== %s\n' "$*"; }

section deps
if [[ "${KILN_SKIP_DEPS:-0}" == 1 ]]; then
    echo "skipped (KILN_SKIP_DEPS=1)"
else
    # The tests train on a slice of Fashion-MNIST (Debian's dataset-fashion-mnist).
    scripts/install-deps.sh --with-data
fi

section configure
# Word splitting of KILN_CMAKE_ARGS is intended: it holds several arguments.
read -r -a extra_args <<<"${KILN_CMAKE_ARGS:-}"
# Debug keeps assert() live in the tests; -O0 also gives the sanitizers exact stacks.
cmake -S . -B "$build" \
    -DKILN_SANITIZE=address,undefined \
    -DKILN_BUILD_TESTS=ON \
    -DKILN_WERROR=ON \
    -DCMAKE_BUILD_TYPE=Debug \
    "${extra_args[@]}"

section build
cmake --build "$build" -j"$jobs"

section test
# LeakSanitizer is on and every UBSan report fails its test, unless the caller chose otherwise.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# mpirun refuses root (CI containers run as root) and more ranks than cores without these.
if ((EUID == 0)); then
    export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
fi
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
