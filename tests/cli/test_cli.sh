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
expect 2 'not supported yet' -- train model.yaml
expect 2 'not supported yet' -- serve model.h5
expect 0 'not supported yet' -- tune --help
expect 0 'usage: kiln demo' -- demo --help
expect 2 "unknown option '--nope'" -- demo --nope
expect 2 'epochs' -- demo --epochs 0
expect 2 'epochs' -- demo --epochs many
expect 2 'model' -- demo --model rnn
expect 0 'mlp: test accuracy (9[0-9]|100)\.[0-9]%' -- demo --model mlp --epochs 15 --quiet
expect 0 'epoch +2/2 +loss [0-9.]+ +train acc' -- demo --model cnn --epochs 2

echo "test_cli: $passed passed, $failed failed"
((failed == 0))
