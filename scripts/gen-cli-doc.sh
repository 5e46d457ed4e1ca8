#!/usr/bin/env bash
# Regenerates docs/cli.md from the help texts of a built kiln, so that the page never drifts from
# the binary: scripts/gen-cli-doc.sh [PATH_TO_KILN] (default build/kiln).
set -euo pipefail
kiln="${1:-build/kiln}"
out="$(cd "$(dirname "$0")/.." && pwd)/docs/cli.md"
{
    cat <<'EOF'
# The kiln command

Every subcommand prints its own help with `kiln <command> --help`; this page collects them. A bad
command line exits with status 2 and says what is wrong; a failure of the work itself exits 1.
`kiln serve` runs until SIGTERM or SIGINT, then answers what is in flight and exits 0.
This page is generated: run `scripts/gen-cli-doc.sh build/kiln` when a help text changes.

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
