#!/usr/bin/env bash
# Proves the CLI drives a real cluster end to end: cluster init, up (four replicas in the
# background), config put/get, a compare-and-set conflict (exit 1), writes with a cluster
# file naming another epoch or cluster id refused before anything executes, an approved
# actuation (site, twin, policy, actuate) whose certificate --cert-out saved verifies
# offline while a copy with one flipped byte, or with its index and count rewritten, does
# not, a policy denial (exit 4), status -w json with four answering replicas, the event
# log, kill -9 of every replica then up again with every certified decision still in the
# log, and down stopping every replica.
#
#   tests/cli/e2e.sh PATH/TO/twinbft      (twinbft-replica must be next to it)
set -euo pipefail

twinbft="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-cli-XXXXXX")"
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
    echo "cli_e2e: FAIL: $*" >&2
    for log in "$dir"/replica-*/log; do
        [[ -f "$log" ]] && { echo "--- $log" >&2; tail -5 "$log" >&2; }
    done
    exit 1
}

# run CODE ARGS...: twinbft ARGS must exit CODE; its stdout is left in $out.
run() {
    local want="$1" rc=0
    shift
    out="$("$twinbft" "$@" 2>"$work/err")" || rc=$?
    [[ $rc == "$want" ]] || fail "twinbft $* exited $rc, want $want: $out $(cat "$work/err")"
}

# A base port no other test holds (tests/common/ports.sh), below the kernel's ephemeral
# range (32768 and up) so that no outgoing connection can hold one.
tb_test_base 20000 1000 || fail "no free ports"

echo "== cluster init, up"
run 0 cluster init --dir "$dir" --replicas 4 --base-port "$base" --cluster-id cli-e2e
run 0 up --dir "$dir" --timeout 120s --log-level warn
[[ "$(grep -c "started, pid" <<<"$out")" == 4 ]] || fail "up: $out"
for i in 0 1 2 3; do [[ -s "$dir/replica-$i/pid" ]] || fail "no pid file for replica $i"; done
run 0 up --dir "$dir" --timeout 120s # all running already: nothing to do, and that is fine
[[ "$(grep -c "already running" <<<"$out")" == 4 ]] || fail "second up: $out"
export TWINBFT_CLUSTER="$dir/cluster.conf" TWINBFT_IDENTITY="$dir/admin"
t=(--timeout 60s)

echo "== config put, get, compare-and-set conflict"
run 0 config put plant/mode auto "${t[@]}"
grep -q "^ok" <<<"$out" || fail "config put: $out"
run 0 config get plant/mode "${t[@]}"
grep -q "^plant/mode = auto  (version 1," <<<"$out" || fail "config get: $out"
run 1 config put plant/mode manual --expect-version 0 "${t[@]}"
grep -q "^conflict: VERSION" <<<"$out" || fail "CAS conflict: $out"

echo "== a cluster file naming another epoch or cluster id submits nothing"
# libtwinbft asks the replicas which cluster id and epoch they serve before it submits
# anything; with a stale file the write must neither execute nor time out, but be refused.
sed 's/^epoch = .*/epoch = 7/' "$dir/cluster.conf" >"$dir/epoch7.conf"
sed 's/^id = .*/id = cli-e2f/' "$dir/cluster.conf" >"$dir/other-id.conf"
grep -q "^epoch = 7$" "$dir/epoch7.conf" || fail "no epoch line to change in cluster.conf"
grep -q "^id = cli-e2f$" "$dir/other-id.conf" || fail "no id line to change in cluster.conf"
run 1 --cluster "$dir/epoch7.conf" config put stale/epoch v1 "${t[@]}"
grep -q 'the replicas serve cluster "cli-e2e" epoch 0, but .*epoch7.conf names cluster "cli-e2e" epoch 7: the intent was not submitted' "$work/err" ||
    fail "stale epoch message: $(cat "$work/err")"
run 1 --cluster "$dir/other-id.conf" config put stale/id v1 "${t[@]}"
grep -q 'the replicas serve cluster "cli-e2e" epoch 0, but .*other-id.conf names cluster "cli-e2f" epoch 0: the intent was not submitted' "$work/err" ||
    fail "other cluster id message: $(cat "$work/err")"
for key in stale/epoch stale/id; do
    run 1 config get "$key" "${t[@]}"
    grep -q "NOT_FOUND" <<<"$out" || fail "config get $key after a refused write: $out"
done

echo "== an approved actuation with its certificate"
# Policies are the operator's: the bootstrap admin grants itself that role first.
run 0 acl grant admin admin,operator "${t[@]}"
run 0 site put plant-a --name "Plant A" "${t[@]}"
run 0 twin create pump-1 --kind site --site plant-a --owner admin "${t[@]}"
run 0 policy put pump-1 speed --min 0 --max 3000 --max-step 2000 --role operator "${t[@]}"
run 0 actuate pump-1 speed 1200 --cert-out "$work/cmd.cert" "${t[@]}"
grep -qE "^approved: pump-1 speed=1200 \(seq [0-9]+\)" <<<"$out" || fail "actuate: $out"
seq="$(sed -n 's/^approved: .*(seq \([0-9]*\))$/\1/p' <<<"$out")"
[[ -s "$work/cmd.cert" ]] || fail "--cert-out wrote nothing"

echo "== verify the certificate, and a copy with one flipped byte"
run 0 verify "$work/cmd.cert"
grep -q "^valid: seq $seq " <<<"$out" || fail "verify: $out"
grep -q "result: approved: pump-1 speed=1200" <<<"$out" || fail "verify result: $out"
size="$(stat -c %s "$work/cmd.cert")"
python3 - "$work/cmd.cert" "$work/flipped.cert" "$((size / 2))" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[int(sys.argv[3])] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
rc=0
"$twinbft" verify "$work/flipped.cert" >"$work/out" 2>&1 || rc=$?
((rc != 0)) || fail "a certificate with a flipped byte verified: $(cat "$work/out")"
grep -q "invalid" "$work/out" || fail "flipped verify message: $(cat "$work/out")"

echo "== verify refuses the certificate moved to another index or count"
# The signed root carries the batch's leaf count, and the path proves the index under it:
# rewriting the Certificate's index and count fields (2 and 3) never verifies.
pos="$(sed -n 's/^valid: seq [0-9]* index \([0-9]*\) of \([0-9]*\),.*/\1 \2/p' <<<"$out")"
[[ -n "$pos" ]] || fail "verify prints no position: $out"
read -r index count <<<"$pos"
moves=("$index $((count + 1))" "$((index + 1)) $((count + 1))" "$count $count" "3 4" "10 11" "96 97")
for move in "${moves[@]}"; do
    read -r i n <<<"$move"
    [[ "$i $n" != "$index $count" ]] || continue
    python3 - "$work/cmd.cert" "$work/moved.cert" "$i" "$n" <<'PY'
import sys

def varint(b, i):
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return x, i

def enc(x):
    out = bytearray()
    while True:
        c, x = x & 0x7F, x >> 7
        out.append(c | (0x80 if x else 0))
        if not x:
            return bytes(out)

data = open(sys.argv[1], "rb").read()
out, i = bytearray(), 0
while i < len(data):
    key, j = varint(data, i)
    if key & 7 == 0:
        _, j = varint(data, j)
    elif key & 7 == 2:
        length, j = varint(data, j)
        j += length
    else:
        sys.exit("unexpected wire type %d" % (key & 7))
    if key >> 3 not in (2, 3):  # everything but index and count, as it was
        out += data[i:j]
    i = j
out += enc(2 << 3) + enc(int(sys.argv[3])) + enc(3 << 3) + enc(int(sys.argv[4]))
open(sys.argv[2], "wb").write(out)
PY
    rc=0
    "$twinbft" verify "$work/moved.cert" >"$work/out" 2>&1 || rc=$?
    ((rc == 1)) || fail "a certificate moved to index $i of $n: exit $rc: $(cat "$work/out")"
    grep -q "invalid" "$work/out" || fail "moved verify message: $(cat "$work/out")"
done

echo "== a denial exits 4 with its reason"
run 4 actuate pump-1 speed 5000 --cert-out "$work/denied.cert" "${t[@]}"
grep -q "^denied: RANGE" <<<"$out" || fail "denial: $out"
# A genuine certificate of a denial is not a command: verify says so with exit 4.
run 4 verify "$work/denied.cert"

echo "== status -w json: four replicas answer"
run 0 status -w json "${t[@]}"
python3 - "$out" <<'PY' || fail "status json: $out"
import json, sys
rows = json.loads(sys.argv[1])
assert len(rows) == 4, rows
assert all(r["answered"] for r in rows), rows
assert sorted(r["id"] for r in rows) == [0, 1, 2, 3], rows
assert sum(1 for r in rows if r["primary"]) >= 1, rows
assert all(len(r["app_digest"]) == 64 for r in rows), rows
PY

echo "== log"
run 0 log "${t[@]}"
grep -qE "^$seq +[0-9]+ .* admin +pump-1 +actuate +approved: pump-1 speed=1200" <<<"$out" ||
    fail "log has no actuation row at seq $seq: $out"
grep -qE " config_put +ok" <<<"$out" || fail "log has no config_put: $out"
grep -qE " config_put +conflict: VERSION" <<<"$out" || fail "log has no CAS conflict: $out"

echo "== kill -9 of every replica: every decision a client saw certified is still in log"
seqs=("$seq")
for i in $(seq 1 10); do
    run 0 config put "survive/$i" "v$i" --cert-out "$work/s$i.cert" "${t[@]}"
    run 0 verify "$work/s$i.cert"
    seqs+=("$(sed -n 's/^valid: seq \([0-9]*\) .*/\1/p' <<<"$out")")
done
pids=()
for i in 0 1 2 3; do pids+=("$(cat "$dir/replica-$i/pid")"); done
kill -9 "${pids[@]}"
for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
done
run 0 up --dir "$dir" --timeout 120s --log-level warn
[[ "$(grep -c "started, pid" <<<"$out")" == 4 ]] || fail "up after kill -9: $out"
run 0 log -w json "${t[@]}"
for s in "${seqs[@]}"; do
    [[ -n "$s" ]] || fail "a certified command had no seq"
    grep -q "\"seq\":$s," <<<"$out" || fail "certified seq $s is missing from log after restart"
done
run 0 config get survive/10 "${t[@]}"
grep -q "^survive/10 = v10 " <<<"$out" || fail "state after restart: $out"

echo "== down"
run 0 down --dir "$dir" --timeout 30s
[[ "$(grep -c ": stopped (SIGTERM)" <<<"$out")" == 4 ]] || fail "down: $out"
for i in 0 1 2 3; do [[ ! -e "$dir/replica-$i/pid" ]] || fail "pid file $i left behind"; done
echo "cli_e2e: ok"
