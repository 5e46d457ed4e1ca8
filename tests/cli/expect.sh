# Sourced by the command-line tests: expect and check, and the counts they keep. The caller sets
# kiln (the command) and out (a scratch file for its output) before the first expect.
passed=0
failed=0

# check WHAT COMMAND...: runs COMMAND as one check of the caller's own, counted as expect's are.
check() {
    local what="$1"
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $what"
    fi
}

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
