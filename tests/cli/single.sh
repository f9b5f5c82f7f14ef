#!/usr/bin/env bash
# Proves a single-replica cluster (n = 1, f = 0) works end to end through the CLI: cluster
# init --replicas 1, up, a config put whose certificate (one signature, the quorum of 1)
# verifies offline while a copy with one flipped byte does not, config get, status -w json
# with the one replica answering as primary, kill -9 and up again with the certified write
# still there (durable), another write after the restart, and down. Also that 2 and 3
# replicas are refused with what to use instead.
#
#   tests/cli/single.sh PATH/TO/twinbft      (twinbft-replica must be next to it)
set -euo pipefail

twinbft="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-single-XXXXXX")"
dir="$work/c"
cleanup() {
    # Whatever happened, no replica outlives the test.
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
    echo "cli_single: FAIL: $*" >&2
    [[ -f "$dir/replica-0/log" ]] && { echo "--- replica-0/log" >&2; tail -5 "$dir/replica-0/log" >&2; }
    exit 1
}

# run CODE ARGS...: twinbft ARGS must exit CODE; its stdout is left in $out.
run() {
    local want="$1" rc=0
    shift
    out="$("$twinbft" "$@" 2>"$work/err")" || rc=$?
    [[ $rc == "$want" ]] || fail "twinbft $* exited $rc, want $want: $out $(cat "$work/err")"
}

# The number of signatures in a saved certificate (Certificate.signatures is field 6).
signatures() {
    python3 - "$1" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
i, count = 0, 0
def varint():
    global i
    v, shift = 0, 0
    while True:
        b = data[i]; i += 1
        v |= (b & 0x7F) << shift; shift += 7
        if b < 0x80: return v
while i < len(data):
    key = varint()
    field, wire = key >> 3, key & 7
    if wire == 0: varint()
    elif wire == 2:
        n = varint(); i += n
        count += field == 6
    else: sys.exit("unexpected wire type %d" % wire)
print(count)
PY
}

# A base port no other test holds (tests/common/ports.sh), below the ephemeral range (32768
# and up).
tb_test_base 30200 200 || fail "no free ports"

echo "== 2 and 3 replicas are refused, saying what to use instead"
for n in 2 3; do
    rc=0
    "$twinbft" cluster init --dir "$work/n$n" --replicas "$n" 2>"$work/err" || rc=$?
    [[ $rc == 2 ]] || fail "--replicas $n exited $rc, want 2"
    grep -q "use 1 replica for development, or 4 or more" "$work/err" ||
        fail "--replicas $n message: $(cat "$work/err")"
    [[ ! -e "$work/n$n" ]] || fail "--replicas $n created $work/n$n"
done

echo "== cluster init --replicas 1, up"
run 0 cluster init --dir "$dir" --replicas 1 --base-port "$base" --cluster-id cli-single
[[ ! -e "$dir/replica-1" ]] || fail "replica-1 exists for a 1-replica cluster"
run 0 up --dir "$dir" --timeout 60s --log-level warn
[[ "$(grep -c "started, pid" <<<"$out")" == 1 ]] || fail "up: $out"
export TWINBFT_CLUSTER="$dir/cluster.conf" TWINBFT_IDENTITY="$dir/admin"
t=(--timeout 30s)

echo "== a certified config put, verified offline"
run 0 config put plant/mode auto --cert-out "$work/put.cert" "${t[@]}"
grep -q "^ok" <<<"$out" || fail "config put: $out"
[[ "$(signatures "$work/put.cert")" == 1 ]] || fail "the certificate has $(signatures "$work/put.cert") signatures, want 1"
run 0 verify "$work/put.cert"
grep -q "^valid: seq [0-9]* " <<<"$out" || fail "verify: $out"
seq="$(sed -n 's/^valid: seq \([0-9]*\) .*/\1/p' <<<"$out")"
size="$(stat -c %s "$work/put.cert")"
python3 - "$work/put.cert" "$work/flipped.cert" "$((size / 2))" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[int(sys.argv[3])] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
rc=0
"$twinbft" verify "$work/flipped.cert" >"$work/out" 2>&1 || rc=$?
((rc != 0)) || fail "a certificate with a flipped byte verified: $(cat "$work/out")"
run 0 config get plant/mode "${t[@]}"
grep -q "^plant/mode = auto  (version 1," <<<"$out" || fail "config get: $out"

echo "== status -w json: the one replica answers, as primary"
run 0 status -w json "${t[@]}"
python3 - "$out" <<'PY' || fail "status json: $out"
import json, sys
rows = json.loads(sys.argv[1])
assert len(rows) == 1, rows
r = rows[0]
assert r["answered"] and r["primary"] and r["id"] == 0 and r["peers"] == 0, r
assert not r["in_view_change"] and r["executed"] >= 1, r
PY

echo "== kill -9, up again: the certified write is still there"
pid="$(cat "$dir/replica-0/pid")"
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
run 0 up --dir "$dir" --timeout 60s --log-level warn
[[ "$(grep -c "started, pid" <<<"$out")" == 1 ]] || fail "up after kill -9: $out"
run 0 log -w json "${t[@]}"
grep -q "\"seq\":$seq," <<<"$out" || fail "certified seq $seq is missing from log after restart"
run 0 config get plant/mode "${t[@]}"
grep -q "^plant/mode = auto  (version 1," <<<"$out" || fail "config get after restart: $out"
run 0 config put plant/mode manual --expect-version 1 --cert-out "$work/put2.cert" "${t[@]}"
run 0 verify "$work/put2.cert"
run 0 config get plant/mode "${t[@]}"
grep -q "^plant/mode = manual  (version 2," <<<"$out" || fail "config get of the second put: $out"

echo "== down"
run 0 down --dir "$dir" --timeout 30s
[[ "$(grep -c ": stopped (SIGTERM)" <<<"$out")" == 1 ]] || fail "down: $out"
[[ ! -e "$dir/replica-0/pid" ]] || fail "pid file left behind"
echo "cli_single: ok"
