#!/usr/bin/env bash
# Bounded growth (issue 10), on real processes: a 4-replica cluster with small retention
# windows (history_window 4096 seqs, outbox_window and log_retain 1024 seqs) is loaded with
# actuations and placements, which add twin events to the history and commands to the
# outbox on every write. Once the windows have filled, further writes must not grow the
# data directories: the size after twice as many more seqs stays within 10% (plus 4 MiB for
# LMDB's free-page slack) of the size when the windows first filled. Prints the sizes, the
# growth per seq before and after, and the retention metrics.
#
#   tests/integration/growth.sh BIN_DIR [WINDOWS]
#
# WINDOWS (default 3): how many history windows of seqs the load runs after the first fill
# (ctest label "scale", not run by default: about 4 minutes on a 2-core machine).
set -euo pipefail

it_name=growth
bin="$1"
rounds_after="${2:-3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-growth-XXXXXX")"
dir="$work/c"
source "$here/lib.sh"
trap it_cleanup EXIT
fail() { it_fail "$@"; }

window=4096
it_base 3000 150
"$bin/twinbft" cluster init --dir "$dir" --replicas 4 --base-port "$base" >/dev/null
sed -i -e "s/^history_window = .*/history_window = $window/" \
    -e "s/^outbox_window = .*/outbox_window = 1024/" \
    -e "s/^log_retain = .*/log_retain = 1024/" "$dir/cluster.conf"
grep -q "^outbox_window = 1024" "$dir/cluster.conf" || fail "cluster init wrote no outbox_window"
"$bin/twinbft" up --dir "$dir" >/dev/null || fail "up"
conf=(--cluster "$dir/cluster.conf" --identity "$dir/admin")

executed() {
    "$bin/twinbft" status "${conf[@]}" -w json |
        python3 -c 'import json,sys; print(min(r["executed"] for r in json.load(sys.stdin) if r.get("answered")))'
}
# The four data directories' bytes, summed.
size() {
    du -sb "$dir"/replica-*/data | awk '{s += $1} END {print s}'
}
# Loads until every replica executed at least $1, in rounds of 20 s of actuations and
# placements (mix would also fill the bench's 100,000 config keys: state, not retention).
load_until() {
    local target="$1" op=actuate
    while (($(executed) < target)); do
        "$bin/twinbft" bench "${conf[@]}" --clients 16 --op "$op" --duration 20s --warmup 0s \
            --no-estop-probe --quiet -w json >"$work/bench.json" 2>"$work/bench.err" ||
            fail "bench: $(tail -3 "$work/bench.err")"
        [[ "$(it_field "$work/bench.json" errors)" == 0 ]] || fail "bench requests failed"
        op=$([[ "$op" == actuate ]] && echo place || echo actuate)
    done
}

load_until $((2 * window))
seq1="$(executed)"
size1="$(size)"
echo "== windows filled: executed $seq1, data directories $((size1 / 1024)) KiB in all"
load_until $((seq1 + rounds_after * window))
seq2="$(executed)"
size2="$(size)"
echo "== $((seq2 - seq1)) seqs later: executed $seq2, data directories $((size2 / 1024)) KiB"
port=$(sed -n "/^\[replica 0\]/,/^\[/s/^http *= *[0-9.]*:\([0-9]*\).*/\1/p" "$dir/cluster.conf" | head -1)
for m in twinbft_history_window_seqs twinbft_history_events twinbft_outbox_window_seqs \
    twinbft_history_events_compacted_total twinbft_db_used_bytes; do
    echo "  replica 0 $m $(it_metric "$port" "$m" || echo '?')"
done
python3 - "$seq1" "$size1" "$seq2" "$size2" <<'PY'
import sys
seq1, size1, seq2, size2 = map(int, sys.argv[1:])
print("growth: %.0f bytes per seq (4 replicas) while the windows filled, %.0f after"
      % (size1 / seq1, (size2 - size1) / (seq2 - seq1)))
if size2 > size1 * 1.10 + 4 * 1024 * 1024:
    sys.exit("growth: FAIL: the data directories grew from %d to %d bytes after the windows "
             "filled" % (size1, size2))
print("growth: bounded")
PY
