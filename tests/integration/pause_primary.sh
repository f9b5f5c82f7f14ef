#!/usr/bin/env bash
# A primary that drops out and returns (issue 9, item 2), on real processes: under a steady
# load, the primary of a 4-replica cluster is frozen (SIGSTOP) for 10 s, so the others change
# view without it, then let go (SIGCONT). Its clocks jumped 10 s: its timers all fire at once,
# as after an isolation. The load must go on through the view change with no failed request,
# and afterwards every replica must be back in one working view, caught up, without waiting
# for another view change. Prints the honest client's throughput as a share of fault-free and
# the longest wait.
#
#   tests/integration/pause_primary.sh BIN_DIR      (twinbft and twinbft-replica)
set -euo pipefail

it_name=pause_primary
bin="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-pause-XXXXXX")"
dir="$work/c"
stopped=""
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_cleanup_extra() {
    [[ -n "$stopped" ]] && kill -CONT "$stopped" 2>/dev/null
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

it_base 13000 500
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
"$bin/twinbft" up --dir "$dir" --log-level info >/dev/null || fail "up"
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")

bench() { it_bench "$@"; }
field() { it_field "$@"; }

echo "== fault-free load"
bench 4 "$work/base.json"

echo "== the primary is frozen for 10 s under the same load"
primary="$(field "$work/base.json" primary)"
pid="$(cat "$dir/replica-$primary/pid")"
bench 25 "$work/pause.json" &
load=$!
sleep 4
kill -STOP "$pid"
stopped="$pid"
sleep 10
kill -CONT "$pid"
stopped=""
wait "$load" || fail "the load failed"
[[ "$(field "$work/pause.json" errors)" == 0 ]] || fail "requests failed while the primary was frozen"
python3 - "$(field "$work/base.json" ops_per_s)" "$(field "$work/pause.json" ops_per_s)" \
    "$(field "$work/pause.json" max_ms)" "$(field "$work/pause.json" certified_share)" \
    "$(field "$work/pause.json" view_changes)" <<'PY'
import sys
base, run, longest, certified, vcs = map(float, sys.argv[1:])
print("honest client: %.0f ops/s fault-free, %.0f ops/s with the primary frozen 10 s of 25 "
      "(%.0f%%), longest wait %.0f ms, certified %.1f%%, view changes %d"
      % (base, run, 100 * run / base, longest, 100 * certified, vcs))
if run <= 0 or certified < 1.0:
    sys.exit("pause_primary: FAIL: the others did not serve every request with a certificate")
PY

echo "== every replica is back in one working view, caught up"
for _ in $(seq 300); do
    "$bin/twinbft" status "${conf[@]}" -w json >"$work/status.json" 2>/dev/null || true
    if python3 - "$work/status.json" <<'PY'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(1)
live = [r for r in rows if r.get("answered")]
ok = (len(live) == 4 and len({r["view"] for r in live}) == 1
      and not any(r["in_view_change"] for r in live) and len({r["executed"] for r in live}) == 1)
if ok:
    print("all 4 replicas in view %d, executed %d" % (live[0]["view"], live[0]["executed"]))
sys.exit(0 if ok else 1)
PY
    then
        exit 0
    fi
    sleep 0.2
done
python3 -m json.tool "$work/status.json" >&2 || true
fail "the replicas did not agree on one working view within 60 s of the load"
