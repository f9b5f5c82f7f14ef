#!/usr/bin/env bash
# Defences at the network edge (issue 9, items 5 and 6), on real processes: an attacker with a
# genuine client identity (edge_attack.py) goes for the primary of a 4-replica cluster while an
# honest client (tb_load) keeps writing through it.
#
#   item 5, decode amplification: frames of 64 MiB that decode to 40 to 70 times their size,
#     frames of a replica-only kind within the client limit, and Requests of unknown fields;
#   item 6, memory pinned by partial frames: 16 links each announcing a 64 MiB frame, 16 links
#     each filling a frame of the client limit and never finishing it, and links trickling.
#
# It asserts what must hold whatever the machine's speed: the attacked replica's memory stays
# bounded (its peak RSS grows by less than 256 MiB; undefended, the first attack took it to
# 3.8 GiB and the second to 1.07 GiB), honest requests keep completing, no replica dies, and
# the replica counted each defence at work. It prints the honest client's throughput as a
# share of fault-free, its median and its longest gap between completions: on a busy 2-core
# machine the attacker's own CPU shows in those, so they are reported, not asserted.
#
#   tests/integration/edge.sh BIN_DIR TB_LOAD
set -euo pipefail

bin="$1"
load="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-edge-XXXXXX")"
dir="$work/c"
attackers=()
it_name=edge
source "$here/lib.sh"
it_cleanup_extra() {
    for p in "${attackers[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

# Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default) that counts as
# RSS: keep it small, so that RSS shows what the replica holds.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

# Replicas on P..P+3 and their HTTP on P+100..P+103, in a range no other test uses.
it_base 5000 400
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null ||
    fail "cluster init"
# Two attacking identities: each has a memory budget of its own.
for name in mallory mallet; do
    "$bin/twinbft" cluster identity --dir "$dir" --name "$name" >/dev/null || fail "identity"
done
"$bin/twinbft" up --dir "$dir" --timeout 30s >/dev/null || fail "up"
victim_pid="$(cat "$dir/replica-0/pid")"
conf="$dir/cluster.conf"

kb() { # a field of /proc/PID/status, in kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
metric() { # the sum of a counter over the attacked replica's /metrics
    python3 - "$((base + 100))" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read()
print(sum(int(l.split()[-1]) for l in text.decode().splitlines() if l.startswith(sys.argv[2] + " ")))
PY
}
field() { # key=value from a tb_load line
    sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$1"
}
next=1
honest() { # SECONDS OUT: the honest client's run
    "$load" "$conf" "$dir/admin" "$next" "$1" >"$2" || fail "tb_load: $(cat "$2")"
    next="$(field "$2" next)"
}
attack() { # IDENTITY MODE ARGS...: one attacker against replica 0, in the background
    python3 "$here/edge_attack.py" "$2" 127.0.0.1 "$base" "$dir/$1" "${@:3}" \
        >>"$work/attack.out" 2>&1 &
    attackers+=($!)
}
stop_attacks() {
    for p in "${attackers[@]}"; do wait "$p" || true; done
    attackers=()
    cat "$work/attack.out"
    : >"$work/attack.out"
}
alive() {
    for i in 0 1 2 3; do
        kill -0 "$(cat "$dir/replica-$i/pid")" 2>/dev/null || fail "replica $i died ($1)"
        if grep -q "assertion failed" "$dir/replica-$i/log"; then
            fail "replica $i: $(grep "assertion failed" "$dir/replica-$i/log" | head -1)"
        fi
    done
}
report() { # NAME OUT RSS_BEFORE_KB
    python3 - "$1" "$(field "$work/free.out" ops_per_s)" "$(field "$2" ops_per_s)" \
        "$(field "$2" median_ms)" "$(field "$2" max_gap_ms)" "$(field "$2" completed)" \
        "$(field "$2" errors)" "$3" "$(kb "$victim_pid" VmHWM)" <<'PY'
import sys
name = sys.argv[1]
free, ops, median, gap = map(float, sys.argv[2:6])
done, errors, before, peak = map(int, sys.argv[6:10])
print("edge: %s: honest client %.1f ops/s (%.0f%% of fault-free), median %.1f ms, longest gap "
      "%.0f ms, %d completed, %d timed out; attacked replica RSS %.1f MiB before, peak %.1f MiB"
      % (name, ops, 100 * ops / free if free else 0, median, gap, done, errors, before / 1024,
         peak / 1024))
PY
}
check() { # NAME OUT RSS_BEFORE_KB
    alive "$1"
    (($(field "$2" completed) > 0)) || fail "$1: no honest request completed under the attack"
    local peak
    peak="$(kb "$victim_pid" VmHWM)"
    ((peak - $3 < 256 * 1024)) ||
        fail "$1: the attacked replica's RSS rose from $(($3 / 1024)) to $((peak / 1024)) MiB"
}

echo "== fault-free"
honest 10 "$work/free.out"
cat "$work/free.out"
alive "fault-free"

echo "== item 5: frames of 64 and 8 MiB that decode to 40 to 70 times their size, at replica 0"
rss="$(kb "$victim_pid" VmRSS)"
attack mallory amplify --duration 12 --size $((64 << 20)) --kind fetch
attack mallet amplify --duration 12 --size $((8 << 20)) --kind fetch
sleep 1
honest 10 "$work/item5a.out"
stop_attacks
report "item 5, large frames" "$work/item5a.out" "$rss"
check "item 5, large frames" "$work/item5a.out" "$rss"
oversize="$(metric twinbft_links_closed_oversize_total)"
echo "edge: item 5: $oversize links closed for oversized frames"
((oversize > 0)) || fail "item 5: no oversized frame was refused at its header"

echo "== item 5: frames within the client limit: a replica-only kind, and unknown fields"
rss="$(kb "$victim_pid" VmRSS)"
attack mallory amplify --duration 12 --size 65000 --kind fetch
attack mallet amplify --duration 12 --size 65000 --kind request
sleep 1
honest 10 "$work/item5b.out"
stop_attacks
report "item 5, small frames" "$work/item5b.out" "$rss"
check "item 5, small frames" "$work/item5b.out" "$rss"
refused="$(metric twinbft_client_frames_refused_total)"
echo "edge: item 5: $refused client frames of a replica-only kind refused unread"
((refused > 0)) || fail "item 5: no frame of a replica-only kind was refused"

echo "== item 6: partial frames pinning memory on replica 0"
rss="$(kb "$victim_pid" VmRSS)"
attack mallory slow --duration 18 --links 16
attack mallory slow --duration 18 --links 16 --announce 65000 --fill 64999 --rate 1000000
# Four frames: within mallet's budget, so only their deadline (11 s) closes them.
attack mallet slow --duration 18 --links 4 --announce 65000 --fill 64999 --rate 2000
sleep 1
honest 16 "$work/item6.out"
stop_attacks
report "item 6" "$work/item6.out" "$rss"
check "item 6" "$work/item6.out" "$rss"
budget="$(metric twinbft_links_closed_budget_total)"
idle="$(metric twinbft_links_closed_idle_total)"
# The attackers have closed their links; the replica lets go of their frames as it sees that.
for _ in $(seq 100); do
    held="$(metric twinbft_client_frame_bytes)"
    ((held == 0)) && break
    sleep 0.1
done
echo "edge: item 6: $budget links closed over the memory budget, $idle for a stalled frame," \
    "$held bytes held in unfinished client frames after the attack"
((budget > 0)) || fail "item 6: no link was closed over the memory budget"
((idle > 0)) || fail "item 6: no stalled frame was closed at its deadline"
((held == 0)) || fail "item 6: $held bytes still held by unfinished frames after the attack"
echo "edge: ok"
