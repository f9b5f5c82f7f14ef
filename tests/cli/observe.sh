#!/usr/bin/env bash
# Proves that reading a replica's status and metrics while it is under load never disturbs
# it: a 4-replica cluster takes writes from twinbft bench while `twinbft status` and
# scrapes of every replica's /metrics run in a loop, and afterwards every replica is alive,
# the bench saw no error, and all four replicas agree on the executed state. (Under group
# commit a turn's executed writes wait for the turn's commit; a status read in between
# once tripped an assertion and killed the replica.) Then a clean down and up: the cluster
# goes on in the same view, since every vote was stored at the stop.
#
#   tests/cli/observe.sh PATH/TO/twinbft      (twinbft-replica must be next to it)
set -euo pipefail

twinbft="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-observe-XXXXXX")"
dir="$work/c"
cleanup() {
    [[ -n "${loop_pid:-}" ]] && kill "$loop_pid" 2>/dev/null || true
    if [[ -f "$dir/cluster.conf" ]]; then
        "$twinbft" down --dir "$dir" --timeout 10s >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    tb_test_ports_release
}
# shellcheck source=tests/common/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/ports.sh"
trap cleanup EXIT

fail() {
    echo "cli_observe: FAIL: $*" >&2
    for i in 0 1 2 3; do
        [[ -f "$dir/replica-$i/log" ]] || continue
        echo "--- replica-$i/log" >&2
        tail -5 "$dir/replica-$i/log" >&2
    done
    exit 1
}

# A free block of ports: replicas on P..P+3, their HTTP on P+100..P+103.
# Below the kernel's ephemeral range (32768 and up): an outgoing connection of another test
# may hold any port there, and this cluster's HTTP ports are base + 100 and up.
tb_test_base 20000 1200 || fail "no free ports"
"$twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null ||
    fail "cluster init"
"$twinbft" up --dir "$dir" --timeout 30s >/dev/null || fail "up"
cluster=(--cluster "$dir/cluster.conf" --identity "$dir/admin" --timeout 30s)

# The observers: status from every replica and a scrape of every /metrics, over and over.
observe() {
    while true; do
        "$twinbft" "${cluster[@]}" status -w json >/dev/null 2>&1 || true
        python3 - "$base" <<'PY' || true
import sys, urllib.request
base = int(sys.argv[1])
for i in range(4):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{base + 100 + i}/metrics", timeout=5).read()
    except OSError:
        pass
PY
    done
}
observe &
loop_pid=$!

rc=0
"$twinbft" "${cluster[@]}" bench --clients 16 --duration 4 --warmup 1 --quiet -w json \
    >"$work/result.json" 2>"$work/bench.err" || rc=$?
kill "$loop_pid" 2>/dev/null || true
wait "$loop_pid" 2>/dev/null || true
loop_pid=
[[ $rc == 0 ]] || fail "bench exited $rc: $(tail -5 "$work/bench.err")"

for i in 0 1 2 3; do
    pid="$(cat "$dir/replica-$i/pid")"
    kill -0 "$pid" 2>/dev/null || fail "replica $i died under observation"
    if grep -q "assertion failed" "$dir/replica-$i/log"; then
        fail "replica $i: $(grep "assertion failed" "$dir/replica-$i/log")"
    fi
done

python3 - "$work/result.json" <<'PY' || fail "bench result: $(cat "$work/result.json")"
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["ops"] > 0, "no request completed"
assert r["errors"] == 0, f"{r['errors']} errors"
assert r["certified"] == r["ops"], "every completion certified"
PY

# Once the load stops, all four replicas execute the same history to the same state.
converged() {
    for attempt in $(seq 1 60); do
        "$twinbft" "${cluster[@]}" status -w json >"$work/status.json" 2>/dev/null || true
        if python3 - "$work/status.json" "$@" <<'PY'; then
import json, sys
try:
    s = json.loads(open(sys.argv[1]).read())
except ValueError:
    sys.exit(1)
rows = [r for r in s if r.get("answered")]
assert len(rows) == 4
assert len({r["executed"] for r in rows}) == 1 and len({r["app_digest"] for r in rows}) == 1
assert len({r["view"] for r in rows}) == 1 and not any(r["in_view_change"] for r in rows)
if len(sys.argv) > 2:  # the view it must be in, and executed beyond a seq
    assert rows[0]["view"] == int(sys.argv[2]) and rows[0]["executed"] > int(sys.argv[3])
PY
            return 0
        fi
        sleep 1
    done
    fail "replicas did not converge: $(cat "$work/status.json")"
}
converged
read -r view executed < <(python3 -c '
import json, sys
r = [r for r in json.load(open(sys.argv[1])) if r.get("answered")][0]
print(r["view"], r["executed"])' "$work/status.json")

# A clean stop (down: SIGTERM) stores every vote, so after up the replicas go on in the
# same view: no replica abstains, no view change (a kill -9 would cost one).
"$twinbft" down --dir "$dir" --timeout 30s >/dev/null || fail "down"
"$twinbft" up --dir "$dir" --timeout 30s >/dev/null || fail "up again"
"$twinbft" "${cluster[@]}" config put observe/after-restart yes >/dev/null ||
    fail "a write after the restart"
converged "$view" "$executed"
echo "cli_observe: ok"
