#!/usr/bin/env bash
# Integration test on loopback with real processes: cluster init, four
# replicas, 2,000 intents through the probe client (f+1 matching replies
# each, the last one checked as a quorum certificate that verifies while a
# one-byte-flipped copy does not), kill -9 of the primary and more intents
# (progress resumes in a new view), then a restart of the killed replica and
# more intents with it back; a client whose certificate comes from another
# CA is refused; kill -9 of every replica, restart, and more intents with the
# request numbers going on (so exactly-once state and the log survived); and
# then what the daemon serves itself (tb_served): a status request answered
# by every replica; a subscription by the operator identity that is live
# while a second link of the same identity asks for status, and receives as
# certified pushes the two actuations addressed to it; an unordered query
# answered identically by every replica; a re-subscription from 0 that gets
# the same commands again from the outbox, also after kill -9 of every
# replica; and a clean SIGTERM shutdown of every replica.
# Usage: cluster.sh BIN_DIR PROBE_BIN SERVED_BIN
set -euo pipefail
bin="$1"
probe="$2"
served="$3"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-it-XXXXXX")"
pids=()
it_name=cluster
dir="$work/c"
it_logs="$work/log-*"
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
    tb_test_ports_release
}
trap cleanup EXIT

# A base port no other test holds (it_base), below the kernel's ephemeral range (32768 and
# up) so that no outgoing connection can hold one.
it_base 10000 1000
"$bin/twinbft" cluster init --dir "$work/c" --replicas 4 --base-port "$base" >/dev/null

start() {
    "$bin/twinbft-replica" --config "$work/c/cluster.conf" --id "$1" --data "$work/data-$1" \
        --log-level warn >>"$work/log-$1" 2>&1 &
    pids[$1]=$!
}
for i in 0 1 2 3; do start "$i"; done

echo "== 2000 intents on 4 replicas"
"$probe" "$work/c/cluster.conf" "$work/c/admin" 1 2000 120

echo "== kill -9 the primary (replica 0), then 50 more intents"
kill -9 "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
"$probe" "$work/c/cluster.conf" "$work/c/admin" 2001 50 120

echo "== restart replica 0, then 50 more intents"
start 0
"$probe" "$work/c/cluster.conf" "$work/c/admin" 2051 50 120

echo "== a client with a certificate from another CA is refused"
"$bin/twinbft" cluster init --dir "$work/other" --replicas 4 --base-port "$((base + 5))" >/dev/null
if "$probe" "$work/c/cluster.conf" "$work/other/admin" 1 1 5 >"$work/foreign.out" 2>&1; then
    echo "a foreign identity got an answer" >&2
    exit 1
fi
grep -q "completed=0" "$work/foreign.out"

echo "== kill -9 every replica, restart all, then 50 more intents"
for i in 0 1 2 3; do kill -9 "${pids[$i]}"; done
for i in 0 1 2 3; do wait "${pids[$i]}" 2>/dev/null || true; done
for i in 0 1 2 3; do start "$i"; done
"$probe" "$work/c/cluster.conf" "$work/c/admin" 2101 50 120

conf="$work/c/cluster.conf"
echo "== status: every replica answers"
"$served" "$conf" "$work/c/admin" 60 status

echo "== the operator subscribes from 0 and waits for 2 commands"
"$served" "$conf" "$work/c/operator" 180 subscribe 0 2 >"$work/sub1.out" 2>&1 &
sub=$!
for _ in $(seq 1200); do
    if (($(grep -c "more=0" "$work/sub1.out" || true) >= 4)); then break; fi
    sleep 0.1
done
if (($(grep -c "more=0" "$work/sub1.out" || true) < 4)); then
    echo "the subscription did not become live on every replica" >&2
    cat "$work/sub1.out" >&2
    exit 1
fi

echo "== a second link of the same principal (status as operator) while it subscribes"
"$served" "$conf" "$work/c/operator" 60 status | tee "$work/status2.out"
if (($(grep -cE "clients=([2-9]|[1-9][0-9])" "$work/status2.out") < 4)); then
    echo "a replica does not count both links of the operator" >&2
    exit 1
fi

echo "== intents: a site, a twin, a policy addressed to the operator, two actuations"
"$served" "$conf" "$work/c/admin" 120 intents 100000 operator
wait "$sub"
cat "$work/sub1.out"

echo "== an unordered query: every replica gives the same answer"
"$served" "$conf" "$work/c/admin" 60 query probe/2150

echo "== the operator subscribes again from 0: the same commands, from the outbox"
"$served" "$conf" "$work/c/operator" 60 subscribe 0 2 >"$work/sub2.out"
diff <(grep ^command "$work/sub1.out") <(grep ^command "$work/sub2.out")

echo "== kill -9 every replica, restart all: the outbox survived"
for i in 0 1 2 3; do kill -9 "${pids[$i]}"; done
for i in 0 1 2 3; do wait "${pids[$i]}" 2>/dev/null || true; done
for i in 0 1 2 3; do start "$i"; done
"$served" "$conf" "$work/c/operator" 60 subscribe 0 2 >"$work/sub3.out"
diff <(grep ^command "$work/sub1.out") <(grep ^command "$work/sub3.out")
grep ^command "$work/sub3.out"

echo "== SIGTERM every replica: each must exit 0"
for i in 0 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 0 1 2 3; do
    if ! wait "${pids[$i]}"; then
        echo "replica $i did not shut down cleanly; its log:" >&2
        tail -20 "$work/log-$i" >&2
        exit 1
    fi
done
pids=()
echo "integration: ok"
