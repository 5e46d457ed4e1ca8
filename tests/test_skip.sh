#!/usr/bin/env bash
# tests/skip.sh as the test scripts use it: a missing thing CI installs skips (77) on a laptop
# and fails (1) under CI=true; a missing capability skips either way; part_missing counts a
# failure through the caller's check only under CI.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
fails=0
status() { # CI value, shell code: prints its exit status
    CI="$1" bash -c "source '$here/skip.sh'; $2" >/dev/null 2>&1
    echo $?
}
expect() { # description, want, got
    if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAILED: $1 (got $3, want $2)"; fails=$((fails + 1)); fi
}
expect "skip_missing off CI skips" 77 "$(status false 'skip_missing t "no x"')"
expect "skip_missing under CI fails" 1 "$(status true 'skip_missing t "no x"')"
expect "skip_cannot under CI still skips" 77 "$(status true 'skip_cannot t "no pty"')"
part='n=0; check() { [ "$2" = false ] && n=1; }; part_missing "a part"; exit $n'
expect "part_missing off CI is no failure" 0 "$(status false "$part")"
expect "part_missing under CI is a failure" 1 "$(status true "$part")"
[ $fails -eq 0 ] && echo "test_skip: all passed"
exit $((fails != 0))
