#!/usr/bin/env bash
# Builds one libFuzzer target, tests/fuzz/fuzz_NAME.c, with clang, without CMake (libFuzzer wants
# its own -fsanitize=fuzzer build of the code under test), and runs it from a copy of
# tests/fuzz/corpus-NAME for a time budget. ctest runs each as test_fuzz_NAME (label fuzz).
# Targets: infer (the inference-request parser), idx, csv, hdf5 (the data set readers), config
# (the YAML config loader), modelfile (the model-file loader), runjson (run records and --where
# expressions: the runs index, kiln runs), onnx (the ONNX importer).
#
# usage: tests/fuzz/run.sh BUILD_DIR NAME [SECONDS]   (default 30 s; BUILD_DIR/include holds the
# generated kiln/version.h). The library is compiled once into BUILD_DIR/fuzz/ (make keeps it up
# to date, with a lock so that targets run side by side share it); a crash, leak, hang or UB leaves
# its input in BUILD_DIR/fuzz-artifacts/NAME/. FUZZ_ARGS adds libFuzzer options (-jobs=2, ...).
# The hdf5 and modelfile targets read recipes that edit the real files in tests/fuzz/seeds-NAME
# (fuzz_h5.h says why); this script points them there with FUZZ_SEEDS.
# Exits 77 (skipped) without clang, libFuzzer (libclang-rt-14-dev) or a dependency's pkg-config
# file, and non-zero when the fuzzer finds a failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
usage="usage: run.sh BUILD_DIR NAME [SECONDS]"
build="$(cd "${1:?$usage}" && pwd)"
target="${2:?$usage}"
seconds="${3:-30}"
name="test_fuzz_$target"
source="$root/tests/fuzz/fuzz_$target.c"
if [[ ! -f $source ]]; then
    echo "$name: no fuzz target $source" >&2
    exit 2
fi

# shellcheck source=../skip.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip.sh"
cc="$(command -v clang || command -v clang-14 || true)"
[[ -n "$cc" ]] || skip_missing "$name" "clang not found"
# The inference parser needs jansson alone; the others link the whole library and its
# dependencies (MPI's pkg-config name is Open MPI's).
if [[ $target == infer ]]; then
    packages=(jansson)
else
    packages=(jansson yaml-0.1 hdf5 zlib openblas libmicrohttpd ompi-c sqlite3 nettle libprotobuf-c)
fi
for p in "${packages[@]}"; do
    pkg-config --exists "$p" || skip_missing "$name" "$p not found by pkg-config"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# clang links -fsanitize=fuzzer only where libclang-rt-14-dev put libFuzzer; try a stub first so
# that its absence is a skip, not a failure.
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    >"$tmp/probe.c"
if ! "$cc" -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" 2>"$tmp/probe.err"; then
    sed 's/^/    /' "$tmp/probe.err"
    skip_missing "$name" "clang cannot link libFuzzer (install libclang-rt-14-dev)"
fi

# The flags kiln's CMake build gives (C17 with POSIX 2008, for strdup); an undeclared function
# is an error, as its pointer result would be cut to an int. Word splitting of pkg-config's
# output is intended: it is several flags.
# shellcheck disable=SC2046
cflags=(-std=c17 -D_POSIX_C_SOURCE=200809L -DKILN_BUILD_TYPE='"fuzz"' -g -O1 -Wall -Wextra
    -Werror=implicit-function-declaration -fno-sanitize-recover=undefined
    -I"$root/include" -I"$root" -I"$build/include" -I"$build/gen/onnx"
    $(pkg-config --cflags "${packages[@]}"))
# shellcheck disable=SC2046
libs=($(pkg-config --libs "${packages[@]}") -lpthread -lm)

if [[ $target == infer ]]; then
    sources=("$root/serve/codec/decode.c" "$root/ops/status.c" "$root/ops/tensor.c")
else
    # The library's sources, as CMakeLists.txt lists them, compiled once for every target: a
    # generated Makefile rebuilds what changed (-MMD dependencies), under a lock.
    lib="$build/fuzz"
    mkdir -p "$lib"
    srcs="$(sed -n '/^add_library(libkiln/,/)/p' "$root/CMakeLists.txt" |
        grep -oE '^[[:space:]]*[a-z0-9_/]+\.c[[:space:]]*$' | sed 's/[[:space:]]//g')"
    # The ONNX importer's protobuf reader, which the CMake build generates into the build folder
    # (generated here too when the CMake build has not run yet).
    gen="$build/gen/onnx"
    if [[ ! -f $gen/onnx.pb-c.c ]]; then
        mkdir -p "$gen"
        protoc-c --c_out="$gen" -I/usr/include/onnx /usr/include/onnx/onnx.proto
    fi
    {
        echo "ROOT := $root"
        echo "CC := $cc"
        printf 'CFLAGS :='
        printf ' %q' "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined
        echo
        echo "OBJS := $(echo "$srcs" | sed 's|^\(.*\)\.c$|obj/\1.o|' | tr '\n' ' ') obj/gen/onnx.pb-c.o"
        echo 'libkiln-fuzz.a: $(OBJS)'
        printf '\trm -f $@ && ar rcs $@ $^\n'
        echo 'obj/%.o: $(ROOT)/%.c'
        printf '\t@mkdir -p $(@D)\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n'
        echo "obj/gen/onnx.pb-c.o: $gen/onnx.pb-c.c"
        printf '\t@mkdir -p $(@D)\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n'
        echo '-include $(OBJS:.o=.d)'
    } >"$tmp/Makefile"
    # Targets run side by side (ctest -j): the Makefile is compared, replaced and made under one
    # lock, so that no target sees another's half-done library.
    if ! (
        flock 9
        if ! cmp -s "$tmp/Makefile" "$lib/Makefile"; then
            cp "$tmp/Makefile" "$lib/Makefile"
            rm -rf "$lib/obj" "$lib/libkiln-fuzz.a" # other flags: build everything again
        fi
        make -s -C "$lib" -j"$(nproc)" libkiln-fuzz.a
    ) 9>"$lib/lock" >"$tmp/make.log" 2>&1; then
        cat "$tmp/make.log" >&2
        echo "$name: building the library for fuzzing failed" >&2
        exit 1
    fi
    sources=("$lib/libkiln-fuzz.a")
fi
"$cc" "${cflags[@]}" -fsanitize=fuzzer,address,undefined "$source" "${sources[@]}" "${libs[@]}" \
    -o "$tmp/fuzz_$target"

cp -R "$root/tests/fuzz/corpus-$target" "$tmp/corpus"
# The HDF5 targets' recipes start from real files (tests/fuzz/fuzz_h5.h).
if [[ -d $root/tests/fuzz/seeds-$target ]]; then
    export FUZZ_SEEDS="$root/tests/fuzz/seeds-$target"
fi
artifacts="$build/fuzz-artifacts/$target"
mkdir -p "$artifacts"
cd "$tmp"
# The targets write each input to a file under TMPDIR (fuzz_util.h); keep those with the rest.
export TMPDIR="$tmp"
# shellcheck disable=SC2086
if ! ./fuzz_"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} corpus; then
    cp fuzz_"$target" "$artifacts/"
    echo "$name: the fuzzer found a failure; its input is in $artifacts/" >&2
    echo "    replay it with: ${FUZZ_SEEDS:+FUZZ_SEEDS=$FUZZ_SEEDS }$artifacts/fuzz_$target" \
        "$artifacts/crash-..." >&2
    exit 1
fi
echo "$name: no failure in $seconds s"
