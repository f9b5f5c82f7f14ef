#!/usr/bin/env bash
# Show twinbft at work. Until the replica daemon exists, the demo is one simulated run:
# four replicas, one of them Byzantine, on the real consensus code in one process, under
# seeded network faults, narrated step by step.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TB_ROOT"

build_dir=build
sim="$build_dir/bin/twinbft-sim"
sim_args=(--seed-start 7 --seeds 1 --replicas 4 --byzantine 1 --faults all --narrate)

echo "twinbft demo"
echo "The replica daemon is not written yet, so this demo is the simulated scenario:"
echo "4 replicas (f = 1, one of them Byzantine) run the real PBFT core in one process,"
echo "seed 7, with every fault the simulator can inject, and the run is narrated."

tb_phase "[1/4] packages"
tb_install_missing "${TB_PACKAGES[@]}"

tb_phase "[2/4] configure ($build_dir)"
cmake -S . -B "$build_dir" -DTWINBFT_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo

tb_phase "[3/4] build (-j$(nproc))"
cmake --build "$build_dir" -j "$(nproc)"

tb_phase "[4/4] simulate: $sim ${sim_args[*]}"
if [[ ! -x "$sim" ]]; then
    echo "error: the build did not produce $sim (the simulator is built from tests/sim)" >&2
    exit 1
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
"$sim" "${sim_args[@]}" | tee "$log"
rc="${PIPESTATUS[0]}"
set -e

tb_phase "summary"
last="$(grep -E '^seeds=[0-9]+ violations=[0-9]+ stuck=[0-9]+' "$log" | tail -n 1 || true)"
if [[ -z "$last" ]]; then
    echo "the simulator did not print its result line (exit status $rc)"
    exit $((rc == 0 ? 1 : rc))
fi
violations="$(sed -E 's/.*violations=([0-9]+).*/\1/' <<<"$last")"
stuck="$(sed -E 's/.*stuck=([0-9]+).*/\1/' <<<"$last")"
echo "result: $last"
if ((rc == 0 && violations == 0 && stuck == 0)); then
    echo "No invariant was violated and the run was not stuck, despite one Byzantine"
    echo "replica and the injected faults."
else
    echo "The run did not pass: $violations invariant violation(s), $stuck stuck run(s)," \
        "simulator exit status $rc."
    echo "To see every step: $sim ${sim_args[*]/--narrate/--verbose}"
    exit $((rc == 0 ? 1 : rc))
fi
