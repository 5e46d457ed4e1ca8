# Sourced by the test scripts: how a test skips what it cannot run here.
#   skip_missing NAME WHAT   something CI installs is missing (scripts/install-deps.sh
#                            --with-data: Fashion-MNIST, mpirun, python3-h5py, curl, clang,
#                            prometheus, slurm-wlm): the test skips (exit 77) on a laptop, but
#                            under CI=true it fails (exit 1), so that CI never turns green by
#                            skipping what it was meant to run.
#   skip_cannot NAME WHAT    the machine lacks a capability no package gives (a GPU, a
#                            pseudo-terminal, cgroups for a Slurm daemon): a skip everywhere.
# Both print "NAME: skipped: WHAT" (or "NAME: FAILED under CI: WHAT") first.
skip_missing() {
    if [ "${CI:-}" = true ]; then
        echo "$1: FAILED under CI: $2 (CI installs it: scripts/install-deps.sh --with-data)"
        exit 1
    fi
    echo "$1: skipped: $2"
    exit 77
}
skip_cannot() {
    echo "$1: skipped: $2"
    exit 77
}
# part_missing WHAT: a part of a test that needs what CI installs: prints "skipped: WHAT" and
# returns 1 (the caller skips the part), or under CI=true counts a failure through the caller's
# check function and returns 1.
part_missing() {
    if [ "${CI:-}" = true ]; then
        check "$1 (CI installs it)" false
    else
        echo "skipped: $1"
    fi
    return 1
}
