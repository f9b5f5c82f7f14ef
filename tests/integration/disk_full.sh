#!/usr/bin/env bash
# A replica whose disk fills up holds, says why, and comes back by itself when space returns
# (issue 9, item 12), on real processes:
#   1. a 4-replica cluster, replica 3's data directory on a small tmpfs of its own;
#   2. a fault-free load (the baseline);
#   3. the tmpfs is filled with a ballast file but for a few hundred KiB, and the same load
#      runs: replica 3 must hold (never SIGBUS, never a core assertion, never exit) with a
#      log line that names the directory and says to free space, stop voting, and still
#      answer status, while the others serve every request;
#   4. the ballast goes and replica 3, the same process, resumes by itself and catches up.
# It prints the honest client's throughput as a share of the fault-free one and the longest
# wait. Needs a tmpfs mount (root); elsewhere it is skipped (exit 77).
#
#   tests/integration/disk_full.sh BIN_DIR      (twinbft and twinbft-replica)
set -euo pipefail

it_name=disk_full
bin="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-diskfull-XXXXXX")"
small="$work/small"
dir="$work/c"
mkdir -p "$small"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_cleanup_extra() {
    "$bin/twinbft" down --dir "$dir" --timeout 10s >/dev/null 2>&1 || true
    umount "$small" 2>/dev/null || true
}
trap it_cleanup EXIT
fail() { it_fail "$@"; }

if ! mount -t tmpfs -o size=64m tmpfs "$small" 2>/dev/null; then
    echo "disk_full: SKIP: cannot mount a tmpfs here (needs root)"
    exit 77
fi

# Ports below the ephemeral range, from the PID so that parallel runs rarely collide.
it_base 12000 500
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
mkdir -p "$dir/replica-3"
ln -s "$small" "$dir/replica-3/data"
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up"

bench() { it_bench "$@"; }
field() { it_field "$@"; }

echo "== fault-free load"
bench 4 "$work/base.json"

echo "== replica 3's disk fills up under the same load"
free_kib=$(df -k --output=avail "$small" | tail -1)
fallocate -l "$(((free_kib - 256) * 1024))" "$small/ballast" || fail "cannot fill the tmpfs"
pid3="$(cat "$dir/replica-3/pid" 2>/dev/null || echo 0)"
# holding: replica 3's twinbft_disk_full_holding (its status page is base + 100 + 3).
holding() {
    it_metric "$((base + 103))" twinbft_disk_full_holding
}
# Load until the disk is full and replica 3 holds; a slow (sanitizer, busy) machine may need
# more than one round to write the last 256 KiB. The last round's numbers are reported.
for _ in $(seq 10); do
    bench 6 "$work/full.json"
    [[ "$(holding || true)" == 1 ]] && break
done
[[ "$(holding || true)" == 1 ]] || fail "replica 3 does not say it holds on a full disk"
kill -0 "$pid3" 2>/dev/null || fail "replica 3 exited instead of holding"
grep -q "no space left" "$dir/replica-3/log" || fail "replica 3's log does not say the disk is full"
grep -q "free space there and it resumes by itself" "$dir/replica-3/log" ||
    fail "replica 3's log does not say what to do"
grep -Eq "SIGBUS|assertion failed" "$dir/replica-3/log" && fail "replica 3 crashed instead of holding"
"$bin/twinbft" status --cluster "$dir/cluster.conf" --identity "$dir/admin" -w json \
    >"$work/status-full.json" 2>/dev/null || true
python3 - "$work/status-full.json" <<'PY' || fail "replica 3 did not answer status, or not as disk full, while holding"
import json, sys
rows = json.load(open(sys.argv[1]))
sys.exit(0 if any(r.get("id") == 3 and r.get("answered") and r.get("disk_full") for r in rows)
         else 1)
PY
[[ "$(field "$work/full.json" errors)" == 0 ]] || fail "the others failed requests"
ops_base="$(field "$work/base.json" ops_per_s)"
ops_full="$(field "$work/full.json" ops_per_s)"
python3 - "$ops_base" "$ops_full" "$(field "$work/full.json" max_ms)" \
    "$(field "$work/full.json" certified_share)" <<'PY'
import sys
base, full, longest, certified = map(float, sys.argv[1:])
print("honest client: %.0f ops/s fault-free, %.0f ops/s with a full disk (%.0f%%), "
      "longest wait %.0f ms, certified %.1f%%" % (base, full, 100 * full / base, longest, 100 * certified))
if full <= 0 or certified < 1.0:
    sys.exit("disk_full: FAIL: the others did not serve every request with a certificate")
PY

echo "== space returns: replica 3 resumes by itself and catches up"
rm -f "$small/ballast"
for _ in $(seq 100); do
    [[ "$(holding || true)" == 0 ]] && break
    sleep 0.1
done
[[ "$(holding || true)" == 0 ]] || fail "replica 3 still holds after space returned"
kill -0 "$pid3" 2>/dev/null || fail "replica 3 exited"
bench 2 "$work/after.json"
for _ in $(seq 300); do
    if "$bin/twinbft" status --cluster "$dir/cluster.conf" --identity "$dir/admin" -w json \
        >"$work/status.json" 2>/dev/null &&
        python3 - "$work/status.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
done = [r.get("executed") for r in rows if r.get("answered", True) and "executed" in r]
sys.exit(0 if len(done) == 4 and len(set(done)) == 1 else 1)
PY
    then
        echo "replica 3 resumed by itself and caught up: $(python3 -c 'import json,sys; print([r["executed"] for r in json.load(open(sys.argv[1]))])' "$work/status.json")"
        exit 0
    fi
    sleep 0.2
done
fail "replica 3 did not catch up after it resumed"
