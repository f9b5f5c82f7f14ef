#!/usr/bin/env bash
# A half-open TCP flood (issue 9, item 4), on real processes: while an honest client loads a
# 4-replica cluster, an attacker on another loopback address (127.0.0.2) keeps 2,000
# connections open to every replica that never start TLS, opening a new one whenever one is
# closed. Each replica runs at most 16 handshakes from that address (timed out after 3 s);
# the rest wait, accepted but unread, for a slot or for 10 s, so the attacker cannot turn its
# connections over faster than that. Members' addresses keep reserved capacity, so the
# honest load goes on and no view change happens. Prints the honest client's throughput as a
# share of fault-free and the longest wait. (On a 2-core machine the attacker's and the
# kernel's accept/close work takes CPU from everyone: the assertion is generous, the printed
# numbers are precise.)
#
#   tests/integration/flood.sh BIN_DIR      (twinbft and twinbft-replica)
set -euo pipefail

it_name=flood
bin="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-flood-XXXXXX")"
dir="$work/c"
attacker=""
source "$here/lib.sh"
it_cleanup_extra() {
    [[ -n "$attacker" ]] && kill "$attacker" 2>/dev/null
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

if ! python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0))' 2>/dev/null; then
    echo "flood: SKIP: cannot bind 127.0.0.2 here"
    exit 77
fi

it_base 15000 500
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up"
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")

bench() { it_bench "$@"; }
field() { it_field "$@"; }
views() {
    "$bin/twinbft" status "${conf[@]}" -w json 2>/dev/null |
        python3 -c 'import json,sys; print(sum(r.get("view_changes", 0) for r in json.load(sys.stdin)))'
}

echo "== fault-free load"
bench 6 "$work/base.json"
vc_before="$(views)"

echo "== the same load under a half-open flood of 2,000 connections per replica"
python3 "$here/half_open.py" 127.0.0.2 14 2000 "$base" "$((base + 1))" "$((base + 2))" \
    "$((base + 3))" >"$work/attacker.out" 2>&1 &
attacker=$!
sleep 2
bench 10 "$work/flood.json"
wait "$attacker" || true
attacker=""
cat "$work/attacker.out"
vc_after="$(views)"
[[ "$(field "$work/flood.json" errors)" == 0 ]] || fail "honest requests failed under the flood"
[[ "$vc_after" == "$vc_before" ]] || fail "view changes under the flood: $vc_before before, $vc_after after"
waited=0
for i in 0 1 2 3; do
    port=$(sed -n "/^\[replica $i\]/,/^\[/s/^http *= *[0-9.]*:\([0-9]*\).*/\1/p" "$dir/cluster.conf" | head -1)
    n=$(it_metric "$port" twinbft_tls_waited_total) || fail "metrics of replica $i"
    waited=$((waited + n))
done
((waited > 0)) || fail "no connection waited for a handshake slot: the flood did not reach the limit"
python3 - "$(field "$work/base.json" ops_per_s)" "$(field "$work/flood.json" ops_per_s)" \
    "$(field "$work/flood.json" max_ms)" "$(field "$work/flood.json" certified_share)" "$waited" <<'PY'
import sys
base, run, longest, certified, waited = map(float, sys.argv[1:])
share = run / base
print("honest client: %.0f ops/s fault-free, %.0f ops/s under the flood (%.0f%%), longest wait "
      "%.0f ms, certified %.1f%%, %d connections waited for a handshake slot, no view change"
      % (base, run, 100 * share, longest, 100 * certified, waited))
if certified < 1.0 or share < 0.25:
    sys.exit("flood: FAIL: the honest client lost too much under the flood")
PY
