#!/usr/bin/env bash
# A wiped replica rejoins a large state by chunked state transfer (issue 10), on real
# processes: a 4-replica cluster is loaded with TWINS twins (twinbft bench --op register),
# replica 3 is stopped and its data directory removed, and it is started again while an
# honest load runs. It must reach a checkpoint with the digest the others have there, within
# two checkpoint intervals of them. Prints the time it took, the state-transfer bytes it
# received and the others served, its peak RSS, and the load's throughput meanwhile against
# the same load before the wipe. Then replica 3 is stopped again while about 1,000 writes
# are made, and restarted: it must catch up from the others' retained log, moving no state,
# and the script prints the bytes it replayed.
#
#   tests/integration/rejoin.sh BIN_DIR [TWINS]
#
# TWINS defaults to 200,000 (ctest label "scale": about 6 minutes on a 2-core machine, most
# of it loading); the issue's target is 1,000,000 (about 25 minutes of loading).
set -euo pipefail

it_name=rejoin
bin="$1"
twins="${2:-200000}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-rejoin-XXXXXX")"
dir="$work/c"
source "$here/lib.sh"
loader=""
it_cleanup_extra() {
    [[ -n "$loader" ]] && kill "$loader" 2>/dev/null
    return 0
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

it_base 3200 150
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
# A retained log long enough for the ~1,000 missed writes, short enough that the wiped
# replica cannot replay the whole history from it (the load runs past it).
log_retain=2048
sed -i -e "s/^log_retain = .*/log_retain = $log_retain/" "$dir/cluster.conf"
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up"
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")
status_json() {
    "$bin/twinbft" status "${conf[@]}" -w json >"$work/status.json" 2>/dev/null || true
}
executed() {
    status_json
    python3 -c 'import json,sys; print(min(r["executed"] for r in json.load(open(sys.argv[1])) if r.get("answered")))' "$work/status.json"
}

echo "== registering $twins twins"
loaded=0
while ((loaded < twins || $(executed) < 2 * log_retain + 1000)); do
    "$bin/twinbft" bench "${conf[@]}" --clients 16 --op register --duration 60s --warmup 0s \
        --no-estop-probe --quiet -w json >"$work/load.json" 2>"$work/bench.err" ||
        fail "bench: $(tail -3 "$work/bench.err")"
    [[ "$(it_field "$work/load.json" errors)" == 0 ]] || fail "registrations failed"
    loaded=$((loaded + $(it_field "$work/load.json" ops)))
done
db_mib="$(du -sm "$dir/replica-0/data" | cut -f1)"
echo "   $loaded twins; replica 0's data directory: $db_mib MiB"

# The honest load before the wipe, for comparison.
it_bench 15s "$work/before.json" --op config --value-bytes 64 --no-estop-probe
before="$(it_field "$work/before.json" ops_per_s)"

it_stop_replica 3
rm -rf "$dir/replica-3/data"
echo "== replica 3 stopped and its data directory removed; restarting it under load"

it_bench 40s "$work/during.json" --op config --value-bytes 64 --no-estop-probe &
loader=$!
sleep 2
start_ms=$(($(date +%s%N) / 1000000))
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up of replica 3"
rejoined=""
for _ in $(seq 1500); do
    status_json
    if python3 - "$work/status.json" <<'PY'
import json, sys
try:
    rows = {r["id"]: r for r in json.load(open(sys.argv[1])) if r.get("answered")}
except (ValueError, KeyError):
    sys.exit(1)
if 3 not in rows or len(rows) < 4:
    sys.exit(1)
# Caught up: a checkpoint of its own with the digest another replica has there, and
# executed within two checkpoint intervals (128 seqs) of the furthest.
r3 = rows[3]
others = [rows[i] for i in (0, 1, 2)]
same = any(o["state_digest_seq"] == r3["state_digest_seq"]
           and o["state_digest"] == r3["state_digest"] for o in others)
close = r3["executed"] + 128 >= max(o["executed"] for o in others)
sys.exit(0 if same and close and r3["state_digest_seq"] > 0 else 1)
PY
    then
        rejoined=$(($(date +%s%N) / 1000000 - start_ms))
        break
    fi
    sleep 0.2
done
[[ -n "$rejoined" ]] || fail "replica 3 did not reach the others' checkpoint with their digest"
wait "$loader" || fail "the honest load failed"
loader=""
during="$(it_field "$work/during.json" ops_per_s)"
errors="$(it_field "$work/during.json" errors)"
[[ "$errors" == 0 ]] || fail "$errors requests of the honest load failed"

port() { echo $((base + 100 + $1)); }
bytes_in="$(it_metric "$(port 3)" twinbft_state_transfer_bytes_in_total)"
bad="$(it_metric "$(port 3)" twinbft_state_transfer_chunks_bad_total)"
done_n="$(it_metric "$(port 3)" twinbft_state_transfers_completed_total)"
served=0
for i in 0 1 2; do
    served=$((served + $(it_metric "$(port "$i")" twinbft_state_transfer_bytes_out_total)))
done
rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$dir/replica-3/pid")/status")"
((done_n >= 1)) || fail "replica 3 installed no state by transfer"
((bad == 0)) || fail "correct peers served $bad bad chunks"
echo "== replica 3 rejoined in $rejoined ms: received $((bytes_in / 1048576)) MiB by state" \
    "transfer ($done_n transfer(s)), the others served $((served / 1048576)) MiB; its peak RSS" \
    "$((rss_kib / 1024)) MiB"

# A replica that missed about 1,000 writes catches up from the retained log.
wait_caught_up() {
    for _ in $(seq 1500); do
        status_json
        if python3 - "$work/status.json" <<'PY'
import json, sys
try:
    rows = {r["id"]: r for r in json.load(open(sys.argv[1])) if r.get("answered")}
except (ValueError, KeyError):
    sys.exit(1)
if len(rows) < 4:
    sys.exit(1)
sys.exit(0 if len({r["executed"] for r in rows.values()}) == 1
         and len({r["app_digest"] for r in rows.values()}) == 1 else 1)
PY
        then
            return 0
        fi
        sleep 0.2
    done
    return 1
}
wait_caught_up || fail "replica 3 did not catch up once the load ended"
it_stop_replica 3
"$bin/twinbft" bench "${conf[@]}" --clients 8 --op config --value-bytes 64 --rate 100 \
    --duration 10s --warmup 0s --no-estop-probe --quiet -w json >"$work/missed.json" \
    2>"$work/bench.err" || fail "bench: $(tail -3 "$work/bench.err")"
missed="$(it_field "$work/missed.json" ops)"
start_ms=$(($(date +%s%N) / 1000000))
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up of replica 3"
wait_caught_up || fail "replica 3 did not catch up after missing $missed writes"
caught=$(($(date +%s%N) / 1000000 - start_ms))
log_bytes="$(it_metric "$(port 3)" twinbft_log_replayed_bytes_total)"
log_batches="$(it_metric "$(port 3)" twinbft_log_replayed_total)"
xfer_bytes="$(it_metric "$(port 3)" twinbft_state_transfer_bytes_in_total)"
echo "== replica 3 missed $missed writes and caught up in $caught ms: replayed $log_batches" \
    "batches ($((log_bytes / 1024)) KiB) from the retained log, $xfer_bytes bytes of state"
((xfer_bytes == 0)) || fail "replica 3 fetched the state instead of replaying the log"

echo "   replica 3's log on state transfer:"
grep -i "transfer\|checkpoint" "$dir/replica-3/log" | head -20 | sed 's/^/     /'
python3 -c 'import sys; b, d = float(sys.argv[1]), float(sys.argv[2]); print("   honest load: %.0f ops/s before, %.0f ops/s during the rejoin (%.0f%%)" % (b, d, 100 * d / b if b else 0))' \
    "$before" "$during"
