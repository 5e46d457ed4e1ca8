# Shared by the kiln serve test scripts (test_serve.sh, test_monitor.sh, test_online.sh,
# test_patterns.sh), sourced after they set kiln, py and name: their common start
# (serve_test_setup), counted checks, the processes they start (killed on exit whatever happens),
# and a kiln serve started on a free port and stopped with SIGTERM, which must exit 0 with no
# sanitizer report in its log.

# serve_test_setup: skips the test (exit 77) without $py or curl; unsets KILN_AUTH_TOKEN, runs
# OpenBLAS on one thread, and moves into a fresh folder $tmp, removed on exit with every process
# in pids killed; starts the clock (t_start) and the failure count (fails).
serve_test_setup() {
    # shellcheck source=../skip.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../skip.sh"
    [ -x "$py" ] || skip_missing "$name" "no $py"
    command -v curl >/dev/null || skip_missing "$name" "no curl (apt-get install curl)"
    unset KILN_AUTH_TOKEN
    export OPENBLAS_NUM_THREADS=1
    tmp="$(mktemp -d)"
    pids=()
    trap cleanup EXIT
    cd "$tmp" || exit 1
    t_start=$SECONDS
    fails=0
}

check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}

# Whether process $1 runs (a zombie, exited but not yet waited for, does not).
alive() {
    local state=""
    [ -r "/proc/$1/stat" ] && read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null
    [ -n "$state" ] && [ "$state" != Z ]
}

sanitizer_clean() { ! grep -Eq 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer' "$1"; }

# start_server LOG ARGS...: kiln serve ARGS --port 0, its output in LOG.log; sets pid, port and
# base once it listens and answers /v2/health/live. Returns 1 (counted) when it does not.
start_server() {
    local log="$1.log"
    shift
    "$kiln" serve "$@" --port 0 >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    port=""
    for _ in $(seq 1 300); do
        port=$(sed -n 's|^kiln serve: listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$log" 2>/dev/null)
        [ -n "$port" ] || ! alive "$pid" && break
        sleep 0.1
    done
    base="http://127.0.0.1:$port"
    local live=1
    for _ in $(seq 1 50); do
        [ -n "$port" ] || break
        curl -s -o /dev/null -m 2 "$base/v2/health/live" && { live=0; break; }
        sleep 0.1
    done
    check "kiln serve $* starts, says its port ($port) and answers" test $live -eq 0
    return $live
}

# stop_server PID LOGNAME: SIGTERM; it must exit 0 within 15 s, its log free of sanitizer
# reports.
stop_server() {
    local p="$1" log="$2.log" t=0
    kill -TERM "$p" 2>/dev/null
    while alive "$p" && [ $t -lt 150 ]; do
        sleep 0.1
        t=$((t + 1))
    done
    if alive "$p"; then
        kill -9 "$p"
        wait "$p" 2>/dev/null
        check "kiln serve ($2) exits within 15 s of SIGTERM" false
        return
    fi
    wait "$p"
    local rc=$?
    check "kiln serve ($2) exits 0 on SIGTERM ($rc)" test $rc -eq 0
    check "kiln serve ($2) leaves no sanitizer report in its log" sanitizer_clean "$log"
}
