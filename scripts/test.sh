#!/usr/bin/env bash
# Build twinbft with AddressSanitizer and UndefinedBehaviorSanitizer, and with fault injection
# (twinbft-replica --byzantine, for the tests that need a misbehaving replica), and run every
# test but the long scale runs.
#
#   scripts/test.sh             all labels (unit, sim, lint, ...) but scale
#   scripts/test.sh -L scale    the scale runs (minutes each)
#   scripts/test.sh -L sim      any other arguments are passed to ctest
#
# Environment:
#   TWINBFT_BUILD_DIR   build directory, relative to the repository root (default build-asan)
#   ASAN_OPTIONS, UBSAN_OPTIONS   used as given when set; strict defaults otherwise
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TB_ROOT"

build_dir="${TWINBFT_BUILD_DIR:-build-asan}"
jobs="$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS-print_stacktrace=1:halt_on_error=1}"

tb_phase "[1/4] packages"
tb_install_missing "${TB_PACKAGES[@]}"

tb_phase "[2/4] configure ($build_dir, sanitizers on)"
cmake -S . -B "$build_dir" -DTWINBFT_SANITIZE=ON -DTWINBFT_FAULT_INJECTION=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo

tb_phase "[3/4] build (-j$jobs)"
cmake --build "$build_dir" -j "$jobs"

args=("$@")
if ((${#args[@]} == 0)); then
    args=(-LE scale)
fi
tb_phase "[4/4] test (ctest ${args[*]})"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "${args[@]}"
