#!/usr/bin/env bash
# Installs the Debian 12 packages kiln needs, and only those that are missing: the build and test
# packages by default, Fashion-MNIST with --with-data, the benchmark peers with --bench.
# tests/run.sh, .ci/run and examples/quickstart.sh call it; it works on a minimal Debian 12
# (debootstrap --variant=minbase) as root and does nothing, quickly, when all is present.
set -euo pipefail

# Compiler, build tools and the libraries libkiln links; onnx.proto (libonnx-dev) and protobuf-c
# (protoc-c generates the ONNX importer's reader at build time); libxgboost (XGBoost models in
# predict and serve).
build_pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev
    libhdf5-dev libyaml-dev zlib1g-dev libjansson-dev libmicrohttpd-dev libsqlite3-dev
    nettle-dev libonnx-dev protobuf-c-compiler libprotobuf-c-dev libxgboost-dev)
# What the test suites use besides the build: Python checks of HDF5 files and golden values,
# xmllint for the sweep report's page, curl for the HTTP server, clang and its libFuzzer runtime
# for the request parser's fuzz target, a Prometheus server that scrapes kiln serve's /metrics in
# tests/serve/test_monitor.sh, headless Chromium, which loads kiln runs report's page in
# tests/cli/test_runs_report.sh; ONNX's backend test data (libonnx-testdata), its Python package
# (python3-onnx: test models built with onnx.helper), PyTorch (python3-torch: the peer that
# exports ONNX models) for the ONNX importer's tests; ONNX Runtime comes from the npm registry
# where npm is installed (tests/onnx/ skips it otherwise); python3-xgboost trains the boosters
# kiln's XGBoost scoring is checked against, python3-sklearn the models of the scikit-learn test;
# python3-yaml reads model files' /config in tests/cli/formats_reader.py; iproute2 (`ip`) makes
# the network namespaces of the simulated cluster's tests (tests/cluster/).
test_pkgs=(python3 python3-numpy python3-h5py python3-yaml procps libxml2-utils curl clang
    libclang-rt-14-dev prometheus chromium libonnx-testdata python3-onnx python3-torch
    python3-xgboost python3-sklearn iproute2)
# Real data: Fashion-MNIST (IDX, gzip) in /usr/share/datasets/fashion-mnist/.
data_pkgs=(dataset-fashion-mnist)
# The peers bench/ measures against (PyTorch 1.13 CPU, Optuna 3.1) and the tools of the serving
# benchmark (wrk, the load generator; nginx, the HTTP ceiling), iperf3 (the simulated cluster's
# link probe, bench/cluster/probe.sh); never a test dependency.
bench_pkgs=(python3-torch python3-optuna wrk nginx iperf3)

usage() {
    cat <<EOF
usage: scripts/install-deps.sh [--with-data] [--bench] [--check] [--list]

Installs the Debian 12 packages kiln needs that are not installed yet (apt-get, as root).

  (default)    build and test packages: ${build_pkgs[*]} ${test_pkgs[*]}
  --with-data  also ${data_pkgs[*]} (Fashion-MNIST in /usr/share/datasets/fashion-mnist/)
  --bench      also ${bench_pkgs[*]} (benchmark peers only)
  --check      install nothing: report what is missing and exit 1 if anything is
  --list       print the selected package names, one a line, and exit
  -h, --help   show this help
EOF
}

say() { printf 'install-deps: %s\n' "$*"; }
die() {
    printf 'install-deps: %s\n' "$*" >&2
    exit 1
}

with_data=0 with_bench=0 check_only=0 list_only=0
for arg in "$@"; do
    case "$arg" in
    --with-data) with_data=1 ;;
    --bench) with_bench=1 ;;
    --check) check_only=1 ;;
    --list) list_only=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        printf "install-deps: unknown option '%s'\n" "$arg" >&2
        usage >&2
        exit 2
        ;;
    esac
done

wanted=("${build_pkgs[@]}" "${test_pkgs[@]}")
if ((with_data)); then wanted+=("${data_pkgs[@]}"); fi
if ((with_bench)); then wanted+=("${bench_pkgs[@]}"); fi

if ((list_only)); then
    printf '%s\n' "${wanted[@]}"
    exit 0
fi

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script is for Debian 12"

# A package counts as present only when dpkg has it fully installed (not just its config files).
is_installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -qx 'install ok installed'
}

missing_pkgs() {
    local pkg
    for pkg in "${wanted[@]}"; do
        is_installed "$pkg" || printf '%s\n' "$pkg"
    done
}

mapfile -t missing < <(missing_pkgs)
if ((${#missing[@]} == 0)); then
    say "all ${#wanted[@]} packages present"
    exit 0
fi

if ((check_only)); then
    say "${#missing[@]} of ${#wanted[@]} packages missing: ${missing[*]}"
    exit 1
fi

if ((EUID != 0)); then
    die "${#missing[@]} package(s) missing: ${missing[*]}
installing them needs root: run 'sudo $0${*:+ $*}' (or as root: apt-get install ${missing[*]})"
fi

say "installing ${#missing[@]} of ${#wanted[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -q update ||
    die "apt-get update failed: check /etc/apt/sources.list and that a Debian mirror is reachable"
apt-get -q install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"

mapfile -t missing < <(missing_pkgs)
if ((${#missing[@]} != 0)); then
    die "still not installed after apt-get install: ${missing[*]}"
fi
say "all ${#wanted[@]} packages present"
