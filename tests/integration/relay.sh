#!/usr/bin/env bash
# A client that cannot reach the primary (issue 9, item 1), on real processes: its cluster
# file gives replica 0, the primary of view 0, an address where nothing listens, so each
# request reaches only the three backups. They hold it for half the request timeout, relay
# it to the primary, and the primary, vouched for by f+1 of them, orders it in the same
# view. Every write must complete with no view change, and replica 0's metrics must show
# the relayed requests it took. (Without relays each write cost a view change: the backups
# suspect the primary after twice the request timeout.) Prints each write's wait.
#
#   tests/integration/relay.sh BIN_DIR      (twinbft and twinbft-replica)
set -euo pipefail

it_name=relay
bin="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-relay-XXXXXX")"
dir="$work/c"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap it_cleanup EXIT
fail() { it_fail "$@"; }

it_base 16000 300
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
"$bin/twinbft" up --dir "$dir" --log-level info >/dev/null || fail "up"
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")

# The same cluster file, but replica 0 is out of this client's reach (port 1: refused).
awk '/^\[replica 0\]/ { r0 = 1 } /^\[replica [1-9]/ { r0 = 0 }
     r0 && /^address *=/ { print "address = 127.0.0.1:1"; next } { print }' \
    "$dir/cluster.conf" >"$dir/no-primary.conf"
grep -q "127.0.0.1:1$" "$dir/no-primary.conf" || fail "could not write the client's cluster file"

metric() { # metric REPLICA NAME: its value on the replica's /metrics
    it_metric "$((base + 100 + $1))" "$2"
}

echo "== five writes from a client that reaches only the backups"
waits=()
for k in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$bin/twinbft" config put "relay/$k" "$k" --cluster "$dir/no-primary.conf" \
        --identity "$dir/admin" --timeout 60s >/dev/null 2>"$work/put.err" ||
        fail "write $k failed: $(tail -3 "$work/put.err")"
    waits+=($((($(date +%s%N) - t0) / 1000000)))
done
echo "waits (ms): ${waits[*]}"

"$bin/twinbft" status "${conf[@]}" -w json >"$work/status.json" || fail "status"
python3 - "$work/status.json" <<'PY' || fail "a view change happened"
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r.get("answered")]
views = sorted({(r["view"], r["in_view_change"]) for r in rows})
print("replicas answering: %d, (view, in view change): %s" % (len(rows), views))
sys.exit(0 if len(rows) == 4 and views == [(0, False)] else 1)
PY
taken="$(metric 0 twinbft_relayed_requests_taken_total)" || fail "metrics of replica 0"
sent=0
for i in 1 2 3; do
    s="$(metric "$i" twinbft_requests_relayed_total)" || fail "metrics of replica $i"
    sent=$((sent + s))
done
echo "requests relayed by the backups: $sent; taken by the primary on f+1 relays: $taken"
# Each write is one request (the cluster check before it is a query, not ordered).
((taken >= 5)) || fail "the primary took $taken relayed requests, expected at least 5"
