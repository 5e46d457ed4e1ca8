#!/usr/bin/env bash
# cmake --install into a temporary prefix, then a small C program that parses a config and
# trains a step of a model with libkiln is compiled and linked against the installed files both
# ways another project would: with pkg-config (kiln.pc) and with CMake (find_package(kiln),
# kiln::kiln). The installed kiln runs too.
# usage: test_install.sh BUILD_DIR [SANITIZE]   (SANITIZE: the build's KILN_SANITIZE, which the
#        program is compiled with too)
set -uo pipefail
build="$1"
sanitize="${2:-}"
name="test_install"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
flags=()
[ -n "$sanitize" ] && flags=("-fsanitize=$sanitize")

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.txt" 2>&1
check "cmake --install exits 0" test $? -eq 0
p="$tmp/prefix"
check "installs bin/kiln" test -x "$p/bin/kiln"
check "... which runs" bash -c "'$p/bin/kiln' --version | grep -q '^kiln '"
lib="$(find "$p" -name libkiln.a | head -n 1)"
pc="$(find "$p" -name kiln.pc | head -n 1)"
config="$(find "$p" -name kilnConfig.cmake | head -n 1)"
check "the library" test -s "$lib"
check "the public headers, version.h included" \
    test -s "$p/include/kiln/graph.h" -a -s "$p/include/kiln/train.h" -a -s "$p/include/kiln/version.h"
check "no private header" test -z "$(find "$p/include" -name '*_impl.h')"
check "a CMake package config" test -s "$config"
check "a pkg-config file" test -s "$pc"

mkdir "$tmp/app"
cat >"$tmp/app/prog.c" <<'C'
/* A config parsed from YAML (libyaml, the schema) and one training step of the model it
 * describes on a batch of zeros (the graph, the ops, OpenBLAS, the optimizer). */
#include <stdio.h>
#include <string.h>

#include "kiln/config.h"
#include "kiln/graph.h"
#include "kiln/model.h"
#include "kiln/version.h"

int main(void)
{
    static const char yaml[] = "model: {layers: [{dense: {units: 4}}]}\n"
                               "data: {dataset: fashion-mnist}\n";
    kl_error err = {0};
    kl_config *cfg = kl_config_parse("app.yaml", yaml, strlen(yaml), NULL, 0, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    kl_model_options o = {.batch = 2, .outputs = 3, .task = KL_TASK_CLASSIFICATION,
                          .input = KL_SHAPE(5), .trainable = true, .seed = 1};
    kl_model m;
    if (kl_model_build(&cfg->model, &o, &m, &err) != KL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    kl_graph_zero_grad(m.g);
    kl_status st = kl_graph_forward(m.g, &err);
    if (st == KL_OK)
        st = kl_graph_backward(m.g, &err);
    printf("kiln %s: %zu parameters, status %d\n", KL_VERSION, kl_graph_param_count(m.g), (int)st);
    kl_model_free(&m);
    kl_config_free(cfg);
    return st == KL_OK ? 0 : 1;
}
C
want="kiln $(sed -n 's/#define KL_VERSION "\(.*\)"/\1/p' "$p/include/kiln/version.h"): 39 parameters, status 0"

# pkg-config: the flags kiln.pc gives, nothing else.
PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --cflags --libs kiln >"$tmp/pc.txt" 2>&1
check "pkg-config knows kiln" test $? -eq 0
cc -std=c17 "${flags[@]}" "$tmp/app/prog.c" -o "$tmp/app/prog-pc" $(cat "$tmp/pc.txt") \
    >"$tmp/cc.txt" 2>&1
check "a program compiles and links with pkg-config's flags" test $? -eq 0
check "and runs: $want" bash -c "'$tmp/app/prog-pc' | grep -qx '$want'"

# CMake: find_package(kiln) and kiln::kiln.
cat >"$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.22)
project(app LANGUAGES C)
find_package(kiln 0.1 REQUIRED)
add_executable(prog prog.c)
target_link_libraries(prog PRIVATE kiln::kiln)
CM
sflags="${flags[*]:-}"
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$p" -DCMAKE_C_FLAGS="$sflags" \
    -DCMAKE_EXE_LINKER_FLAGS="$sflags" >"$tmp/cm.txt" 2>&1 &&
    cmake --build "$tmp/app/build" >>"$tmp/cm.txt" 2>&1
check "a CMake project finds kiln and links kiln::kiln" test $? -eq 0
check "and runs: $want" bash -c "'$tmp/app/build/prog' | grep -qx '$want'"

if [ $fails -ne 0 ]; then
    for f in "$tmp"/*.txt; do echo "--- $f"; tail -n 30 "$f"; done
    exit 1
fi
echo "$name: all passed"
