# Shared by the integration scripts (sourced, bash). A script sets, before sourcing:
#   it_name   its name, for messages ("relay")
#   bin       the directory of twinbft and twinbft-replica
#   work      its scratch directory (removed by it_cleanup)
#   dir       the cluster directory (in $work), once `twinbft cluster init` made it
# and may set it_logs (a glob of replica logs; default "$dir/replica-*/log") and
# it_cleanup_extra (a function run first on exit: attackers to kill, mounts to undo).

# shellcheck source=tests/common/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/ports.sh"

# On exit: stop the cluster, remove the scratch directory, release the ports.
it_cleanup() {
    if declare -F it_cleanup_extra >/dev/null; then it_cleanup_extra || true; fi
    if [[ -n "${dir:-}" ]]; then
        "$bin/twinbft" down --dir "$dir" --timeout 10s >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    tb_test_ports_release
}

# it_base FIRST SLOTS: sets `base` to a port block no other test holds (tests/common/ports.sh).
it_base() {
    tb_test_base "$1" "$2" || it_fail "no free ports from $1 in $2 slots"
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

# it_stop_replica ID: SIGTERM to replica ID of the cluster in $dir, waiting up to 10 s for it
# to exit (a clean stop); fails the test when it does not.
it_stop_replica() {
    local pid
    pid="$(cat "$dir/replica-$1/pid")"
    kill -TERM "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    it_fail "replica $1 did not stop"
}
