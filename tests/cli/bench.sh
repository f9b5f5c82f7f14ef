#!/usr/bin/env bash
# Proves twinbft bench runs end to end on a throwaway local cluster: --local 4 with four
# clients prints one JSON object with every documented field, some requests completed,
# none failed and every one came certified, the estop probe's fields are there, no replica
# and no temporary directory outlive it; and bad arguments exit 2 with what was wrong. No
# timing is asserted (the machine may be slow, busy or sanitized).
#
#   tests/cli/bench.sh PATH/TO/twinbft      (twinbft-replica must be next to it)
set -euo pipefail

twinbft="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-clibench-XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

fail() {
    echo "cli_bench: FAIL: $*" >&2
    exit 1
}

# expect CODE PATTERN ARGS...: twinbft ARGS exits CODE and its stderr matches PATTERN.
expect() {
    local want="$1" pattern="$2" rc=0
    shift 2
    "$twinbft" "$@" >"$work/out" 2>"$work/err" || rc=$?
    [[ $rc == "$want" ]] || fail "twinbft $* exited $rc, want $want; stderr: $(cat "$work/err")"
    grep -qE -- "$pattern" "$work/err" ||
        fail "twinbft $*: stderr does not match /$pattern/: $(cat "$work/err")"
}

echo "== bad arguments exit 2"
expect 2 'give --local N .* or --cluster FILE' bench
expect 2 '--op "frob": expected config, actuate, place or mix' bench --local 4 --op frob
expect 2 '--clients "0": expected a whole number from 1' bench --local 4 --clients 0
expect 2 '--duration must be at least' bench --local 4 --duration 10ms
expect 2 '--local "65": expected a whole number from 1 to 64' bench --local 65
expect 2 '--base-port and --log-level go with --local' bench --cluster x.conf --base-port 9000
expect 2 'unrecognized option' bench --local 4 --bogus

echo "== bench --local 4 --clients 4 -w json"
# Temporary directories go under $work, so that whatever bench leaves there is seen.
rc=0
TMPDIR="$work" "$twinbft" bench --local 4 --clients 4 --duration 2 --warmup 1 -w json \
    --timeout 60s >"$work/result.json" 2>"$work/bench.err" || rc=$?
[[ $rc == 0 ]] || fail "bench exited $rc: $(tail -20 "$work/bench.err")"
python3 - "$work/result.json" <<'PY' || fail "result: $(cat "$work/result.json")"
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
assert len(lines) == 1, f"one JSON object on stdout, got {len(lines)} lines"
r = json.loads(lines[0])
fields = ["replicas", "clients", "op", "duration_s", "ops", "ops_per_s", "p50_ms", "p90_ms",
          "p99_ms", "p999_ms", "max_ms", "errors", "certified", "certified_share", "avg_batch",
          "commits_per_batch", "view_changes", "batches", "ed25519_per_batch", "estop_p50_ms",
          "estop_p99_ms", "estop_count", "replica_cpu_s", "bench_cpu_s", "rate"]
missing = [f for f in fields if f not in r]
assert not missing, f"missing fields {missing}"
assert r["replicas"] == 4 and r["clients"] == 4 and r["op"] == "config", r
assert r["rate"] is None, "closed loop: rate is null"
assert r["ops"] > 0, "no request completed"
assert r["errors"] == 0, f"{r['errors']} errors"
assert r["certified"] == r["ops"], "every completion certified"
assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"], r
assert isinstance(r["replica_cpu_s"], list) and len(r["replica_cpu_s"]) == 4, r
assert r["batches"] is not None and r["batches"] > 0, "the primary's metrics were read"
print(f"cli_bench: {r['ops']} ops, {r['ops_per_s']} ops/s, p99 {r['p99_ms']} ms")
PY
grep -q "bench: measure" "$work/bench.err" || fail "no progress line on stderr"
leftover="$(find "$work" -maxdepth 1 -name 'twinbft-bench-*')"
[[ -z "$leftover" ]] || fail "bench left $leftover behind"
if pgrep -f "twinbft-replica --config $work/" >/dev/null; then
    fail "a replica of the bench cluster is still running"
fi
echo "cli_bench: ok"
