#!/usr/bin/env bash
# Builds the libFuzzer target for the inference-request parser (tests/fuzz/fuzz_infer.c) with
# clang, without CMake (libFuzzer wants its own -fsanitize=fuzzer build of the code under test),
# and runs it from a copy of tests/fuzz/corpus for a time budget. ctest runs it as
# test_fuzz_infer (label fuzz). A crash leaves its input in BUILD_DIR/fuzz-artifacts/.
# usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]   (default 30 s; BUILD_DIR/include holds the
# generated kiln/version.h). Exits 77 (skipped) without clang, libFuzzer (libclang-rt-14-dev)
# or jansson's pkg-config file, and non-zero when the fuzzer finds a crash, a leak or UB.
set -euo pipefail
name="test_fuzz_infer"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR [SECONDS]}" && pwd)"
seconds="${2:-30}"

cc="$(command -v clang || command -v clang-14 || true)"
if [[ -z "$cc" ]]; then
    echo "$name: clang not found, skipped"
    exit 77
fi
if ! pkg-config --exists jansson; then
    echo "$name: jansson (libjansson-dev) not found by pkg-config, skipped"
    exit 77
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# clang links -fsanitize=fuzzer only where libclang-rt-14-dev put libFuzzer; try a stub first so
# that its absence is a skip, not a failure.
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    >"$tmp/probe.c"
if ! "$cc" -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" 2>"$tmp/probe.err"; then
    echo "$name: clang cannot link libFuzzer (install libclang-rt-14-dev), skipped"
    sed 's/^/    /' "$tmp/probe.err"
    exit 77
fi

# The flags kiln's CMake build gives (C17 with POSIX 2008, for strdup); an undeclared function
# is an error, as its pointer result would be cut to an int. Word splitting of pkg-config's
# output is intended: it is several flags.
# shellcheck disable=SC2046
"$cc" -std=c17 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra \
    -Werror=implicit-function-declaration -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root" -I"$build/include" \
    "$root/runtime/serve/infer.c" "$root/ops/status.c" "$root/tests/fuzz/fuzz_infer.c" \
    $(pkg-config --cflags --libs jansson) -lm -o "$tmp/fuzz_infer"

cp -R "$root/tests/fuzz/corpus" "$tmp/corpus"
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
cd "$tmp"
if ! ./fuzz_infer -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" corpus; then
    cp fuzz_infer "$artifacts/"
    echo "$name: the fuzzer found a failure; its input is in $artifacts/" >&2
    echo "    replay it with: $artifacts/fuzz_infer $artifacts/crash-..." >&2
    exit 1
fi
echo "$name: no failure in $seconds s"
