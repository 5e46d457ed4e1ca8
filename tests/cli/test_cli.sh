#!/usr/bin/env bash
# Runs the kiln command as a user would and checks exit statuses and what it prints:
# help and version succeed, unknown commands and options exit 2 with a clear message, planned
# commands say they are not supported yet, and the demo trains to a useful accuracy.
# usage: test_cli.sh PATH_TO_KILN
set -uo pipefail
kiln="$1"
passed=0
failed=0
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# expect STATUS PATTERN -- ARGS...: runs kiln ARGS, checks the exit status and that the combined
# output matches the extended regular expression PATTERN.
expect() {
    local want="$1" pattern="$2"
    shift 3
    "$kiln" "$@" >"$out" 2>&1
    local got=$?
    if [[ $got == "$want" ]] && grep -Eq -- "$pattern" "$out"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: kiln $* -> status $got (want $want), output should match /$pattern/:"
        sed 's/^/    /' "$out"
    fi
}

expect 0 'usage: kiln' -- --help
expect 0 'usage: kiln' -- -h
expect 0 'demo' -- help
expect 0 '^kiln [0-9]+\.[0-9]+\.[0-9]+' -- --version
expect 0 'OpenBLAS' -- --version
expect 0 'HDF5' -- --version
expect 2 'usage' --
expect 2 "unknown command 'frobnicate'" -- frobnicate
expect 2 "did you mean 'demo'" -- dmeo
expect 2 'bogus' -- --bogus
expect 1 'cannot read config' -- train no-such-model.yaml
expect 0 'usage: kiln train' -- train --help
expect 2 'which config' -- train
expect 2 'KEY=VALUE' -- train x.yaml --set train.epochs
expect 2 "unknown option '--fast'" -- train x.yaml --fast
expect 2 'not supported yet' -- serve model.h5
expect 0 'not supported yet' -- tune --help
expect 0 'usage: kiln demo' -- demo --help
expect 2 "unknown option '--nope'" -- demo --nope
expect 2 'epochs' -- demo --epochs 0
expect 2 'epochs' -- demo --epochs many
expect 2 'model' -- demo --model rnn
# kiln data on files written here: a CSV, a ragged CSV, and usage errors.
tmp="$(mktemp -d)"
trap 'rm -f "$out"; rm -rf "$tmp"' EXIT
printf 'a,b,label\n1,2,0\n3,4,1\n5,6,1\n' >"$tmp/ok.csv"
printf 'a,b,label\n1,2,0\n3,4\n' >"$tmp/ragged.csv"
expect 0 'usage: kiln data' -- data --help
expect 0 'usage: kiln data' -- help data
expect 0 'x: f32 \[3, 2\]' -- data info "$tmp/ok.csv"
expect 0 'classes: 2' -- data info "$tmp/ok.csv"
expect 1 'ragged.csv:3: expected 3 fields, got 2' -- data info "$tmp/ragged.csv"
expect 1 'nope.csv' -- data info "$tmp/nope.csv"
expect 0 'wrote .*ok.h5: 3 samples' -- data convert "$tmp/ok.csv" -o "$tmp/ok.h5"
expect 0 'x: f32 \[3, 2\]' -- data info "$tmp/ok.h5"
expect 2 'needs -o' -- data convert "$tmp/ok.csv"
expect 2 'needs --labels' -- data info "$tmp/images-idx3-ubyte"
expect 2 "unknown action 'frob'" -- data frob
expect 0 'mlp: test accuracy (9[0-9]|100)\.[0-9]%' -- demo --model mlp --epochs 15 --quiet
expect 0 'epoch +2/2 +loss [0-9.]+ +train acc' -- demo --model cnn --epochs 2

echo "test_cli: $passed passed, $failed failed"
((failed == 0))
