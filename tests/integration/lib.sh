# Shared by the integration scripts (sourced, bash). A script sets, before sourcing:
#   it_name   its name, for messages ("relay")
#   bin       the directory of twinbft and twinbft-replica
#   work      its scratch directory (removed by it_cleanup)
#   dir       the cluster directory (in $work), once `twinbft cluster init` made it
# and may set it_logs (a glob of replica logs; default "$dir/replica-*/log") and
# it_cleanup_extra (a function run first on exit: attackers to kill, mounts to undo).

# On exit: stop the cluster, remove the scratch directory, release the ports.
it_cleanup() {
    if declare -F it_cleanup_extra >/dev/null; then it_cleanup_extra || true; fi
    if [[ -n "${dir:-}" ]]; then
        "$bin/twinbft" down --dir "$dir" --timeout 10s >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    local lock
    for lock in "${it_port_locks[@]}"; do
        rm -rf "$lock"
    done
}

# it_base FIRST SLOTS: sets `base` to a port FIRST + 10 k (k from this process's id modulo
# SLOTS, then upwards, wrapping) such that no other test using it_base holds either block a
# cluster there uses (base..base+9 for the replicas, base+100.. for their status pages) and
# nothing listens on base..base+3 or base+100..base+103. Blocks are held as directories under
# $TMPDIR/twinbft-test-ports (mkdir is atomic) naming their holder's process id; one whose
# holder is gone is taken over. ctest runs tests in parallel: without this, two of them with
# nearby process ids started clusters on the same ports now and then.
it_port_locks=()
it_base() {
    local first="$1" slots="$2" root="${TMPDIR:-/tmp}/twinbft-test-ports" i b blk ok lock
    mkdir -p "$root"
    for ((i = 0; i < slots; i++)); do
        b=$((first + 10 * (($$ + i) % slots)))
        ok=1
        local taken=()
        for blk in $((b / 10)) $((b / 10 + 10)); do
            lock="$root/$blk"
            if ! mkdir "$lock" 2>/dev/null; then
                local holder
                holder="$(cat "$lock/pid" 2>/dev/null || true)"
                if [[ -n "$holder" ]] && ! kill -0 "$holder" 2>/dev/null; then
                    rm -rf "$lock"
                    mkdir "$lock" 2>/dev/null || ok=0
                else
                    ok=0
                fi
            fi
            ((ok)) || break
            echo $$ >"$lock/pid"
            taken+=("$lock")
        done
        if ((ok)) && python3 - "$b" <<'PY'; then
import socket, sys
b = int(sys.argv[1])
for p in list(range(b, b + 4)) + list(range(b + 100, b + 104)):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
            base="$b"
            it_port_locks+=("${taken[@]}")
            return 0
        fi
        for lock in "${taken[@]}"; do
            rm -rf "$lock"
        done
    done
    it_fail "no free ports from $first in $slots slots"
}

# it_fail MESSAGE...: says what failed and the last lines of each replica's log, exit 1.
it_fail() {
    echo "$it_name: FAIL: $*" >&2
    local log
    for log in ${it_logs:-"$dir"/replica-*/log}; do
        [[ -f "$log" ]] || continue
        echo "--- $log" >&2
        grep -v tls_link "$log" | tail -5 >&2
    done
    exit 1
}

# it_field FILE KEY: a top-level field of a JSON object file.
it_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# it_bench SECONDS OUT [ARGS...]: a closed loop of 8 clients (twinbft bench, the admin
# identity), its JSON summary in OUT.
it_bench() {
    local seconds="$1" out="$2"
    shift 2
    "$bin/twinbft" bench --cluster "$dir/cluster.conf" --identity "$dir/admin" --clients 8 \
        --duration "$seconds" --quiet -w json "$@" >"$out" 2>"$work/bench.err" ||
        it_fail "bench: $(tail -3 "$work/bench.err")"
}

# it_metric PORT NAME: the value of the sample NAME (no labels) on the /metrics served at
# 127.0.0.1:PORT; exit 2 when the page or the sample is missing.
it_metric() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read()
except OSError:
    sys.exit(2)
for line in body.decode().splitlines():
    if line.split(" ")[0] == sys.argv[2]:
        print(line.split(" ")[1])
        sys.exit(0)
sys.exit(2)
PY
}
