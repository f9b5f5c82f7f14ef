#!/usr/bin/env bash
# A primary that censors one client (issue 9, item 1), on real processes: replica 0, the
# primary of view 0, runs with --byzantine censor:eve (a fault-injection build) and never
# takes eve's requests, while it orders everyone else's. Under a steady load from other
# clients, each of eve's writes must still complete: eve's requests age on their own at the
# backups and force a view change, however much else executes. (Before, any execution
# restarted the backups' request timers, and eve waited as long as the others wrote.)
# Prints the other clients' throughput as a share of fault-free and eve's longest wait.
#
#   tests/integration/censor.sh BIN_DIR      (twinbft, twinbft-replica with fault injection)
set -euo pipefail

it_name=censor
bin="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-censor-XXXXXX")"
dir="$work/c"
pids=()
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_logs="$work/log-*" # the replicas run in the foreground of this script, not under `up`
it_cleanup_extra() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

"$bin/twinbft-replica" --help | grep -q "censor:PRINCIPAL" ||
    fail "twinbft-replica is not a fault-injection build (-DTWINBFT_FAULT_INJECTION=ON)"

it_base 14000 500
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
for i in 0 1 2 3; do
    extra=()
    [[ $i == 0 ]] && extra=(--byzantine censor:eve)
    "$bin/twinbft-replica" --config "$dir/cluster.conf" --id "$i" --data "$work/data-$i" \
        --log-level info "${extra[@]}" >"$work/log-$i" 2>&1 &
    pids+=($!)
done
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")
for _ in $(seq 100); do
    "$bin/twinbft" status "${conf[@]}" >/dev/null 2>&1 && break
    sleep 0.2
done
"$bin/twinbft" cluster identity --dir "$dir" --name eve --roles operator "${conf[@]}" >/dev/null ||
    fail "the admin could not grant eve a role"

field() { it_field "$@"; }

echo "== fault-free load (eve idle)"
"$bin/twinbft" bench "${conf[@]}" --clients 8 --duration 4 --quiet -w json >"$work/base.json" \
    2>/dev/null || fail "bench"

echo "== eve writes 5 times while the others load the censoring primary"
"$bin/twinbft" bench "${conf[@]}" --clients 8 --duration 20 --quiet -w json \
    >"$work/load.json" 2>/dev/null &
load=$!
sleep 2
longest=0
for k in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$bin/twinbft" config put "eve/$k" "$k" --cluster "$dir/cluster.conf" --identity "$dir/eve" \
        --timeout 60s >/dev/null 2>"$work/eve.err" || fail "eve's write $k failed: $(cat "$work/eve.err")"
    ms=$((($(date +%s%N) - t0) / 1000000))
    ((ms > longest)) && longest=$ms
done
wait "$load" || fail "the load failed"
[[ "$(field "$work/load.json" errors)" == 0 ]] || fail "the other clients' requests failed"
# At least one backup's own timer must have fired on eve's request; the others may have
# joined the view change on its word (f+1 VIEW-CHANGEs) before theirs did, under load.
suspected=0
for i in 1 2 3; do
    grep -q "a request waited too long" "$work/log-$i" && suspected=$((suspected + 1))
done
((suspected > 0)) || fail "no backup ever suspected the censoring primary"
echo "backups whose own request timer suspected the primary: $suspected of 3"
python3 - "$(field "$work/base.json" ops_per_s)" "$(field "$work/load.json" ops_per_s)" \
    "$(field "$work/load.json" max_ms)" "$longest" <<'PY'
import sys
base, run, longest, eve = map(float, sys.argv[1:])
print("other clients: %.0f ops/s fault-free, %.0f ops/s with the censoring primary (%.0f%%), "
      "their longest wait %.0f ms; eve's 5 writes all completed, the slowest in %.0f ms"
      % (base, run, 100 * run / base, longest, eve))
# Eve started 2 s into a 20 s load: were her requests only timed out once the others stopped
# writing (the old rule), her first write would take 18 s or more.
if eve >= 15000:
    sys.exit("censor: FAIL: eve waited %.0f ms: her requests waited for the others to stop" % eve)
PY
