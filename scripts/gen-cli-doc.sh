#!/usr/bin/env bash
# Regenerates docs/cli.md from the help texts of a built kiln, so that the page never drifts from
# the binary: scripts/gen-cli-doc.sh [PATH_TO_KILN] (default build/kiln).
set -euo pipefail
kiln="${1:-build/kiln}"
out="$(cd "$(dirname "$0")/.." && pwd)/docs/cli.md"
{
    cat <<'EOF'
# The kiln command

Every subcommand prints its own help with `kiln <command> --help`; this page collects them.
This page is generated: run `scripts/gen-cli-doc.sh build/kiln` when a help text changes.

## Exit statuses

Every status any `kiln` command returns (each command's help lists its own):

| status | meaning | from |
|---|---|---|
| 0 | done; `kiln serve` after SIGTERM or SIGINT, once what was in flight is answered | every command |
| 1 | the work failed, and the message says why (a file that cannot be read, a config the trainer refuses, a port in use, a sweep whose every trial failed) | every command |
| 2 | a bad command line, found before any work starts: an unknown option, a missing or malformed value, a `--set` that does not apply (its message points into the override, `--set:1:COL`), an output file whose name says no format | every command |
| 3 | a rank waited past `dist.timeout` for a collective (a killed or stuck rank): the rank that noticed names what it waited for | `kiln train`, `kiln tune` |
| 4 | the run or sweep folder is in use by another kiln process (`kiln.lock` names it) | `kiln train`, `kiln tune` |
| 75 | stopped by SIGTERM, SIGINT or SIGUSR1: training and sweeps after writing a checkpoint (continue with `--resume`), the other commands at once, leaving no partial output | `kiln train`, `kiln tune`, `kiln export`, `kiln predict` |

## kiln

```
EOF
    "$kiln" --help
    echo '```'
    for c in train tune export predict serve slurm runs data demo; do
        printf '\n## kiln %s\n\n```\n' "$c"
        "$kiln" "$c" --help
        echo '```'
    done
    cat <<'EOF'

## kiln --version

Prints the version and what this build links: compiler, build type, OpenBLAS (configuration and
threads), MPI, HDF5, libyaml and CUDA.
EOF
} >"$out"
echo "wrote $out"
