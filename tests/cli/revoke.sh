#!/usr/bin/env bash
# Proves identity revocation (issue 9, item 9) on a real 4-replica cluster through the CLI:
# an identity that works, is revoked by an ordered `identity revoke`, is then refused by every
# replica at the handshake (its commands get no answer), its open link (a live `watch`) is
# closed, and it can no longer be granted roles; revoking one certificate's key (--cert)
# refuses that certificate only; a --cert of another name is a usage error; an admin cannot
# revoke itself; and the admin keeps working throughout.
#
#   tests/cli/revoke.sh PATH/TO/twinbft      (twinbft-replica must be next to it)
set -euo pipefail

twinbft="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-revoke-XXXXXX")"
dir="$work/c"
watch_pid=""
cleanup() {
    [[ -n "$watch_pid" ]] && kill "$watch_pid" 2>/dev/null || true
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
    echo "cli_revoke: FAIL: $*" >&2
    for i in 0 1 2 3; do
        [[ -f "$dir/replica-$i/log" ]] && { echo "--- replica-$i/log" >&2; grep -v tls_link "$dir/replica-$i/log" | tail -4 >&2; }
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

# Below the ephemeral range, apart from the other CLI tests' ports.
tb_test_base 24000 400 || fail "no free ports"
run 0 cluster init --dir "$dir" --replicas 4 --base-port "$base" --cluster-id cli-revoke
run 0 up --dir "$dir" --timeout 60s --log-level info
as_admin=(--cluster "$dir/cluster.conf" --identity "$dir/admin")

echo "== bob and carol work"
run 0 cluster identity --dir "$dir" --name bob --roles operator "${as_admin[@]}"
run 0 cluster identity --dir "$dir" --name carol --roles operator "${as_admin[@]}"
run 0 config put k/bob 1 --cluster "$dir/cluster.conf" --identity "$dir/bob"
run 0 config put k/carol 1 --cluster "$dir/cluster.conf" --identity "$dir/carol"

echo "== bob watches; the admin revokes bob"
"$twinbft" watch --principal bob --cluster "$dir/cluster.conf" --identity "$dir/bob" \
    >"$work/watch.out" 2>&1 &
watch_pid=$!
sleep 1
run 0 identity revoke bob "${as_admin[@]}"
echo "$out" | grep -q "identity_revoke" || fail "revoke printed: $out"

echo "== every replica refuses bob and closed its open link"
run 3 config get k/bob --cluster "$dir/cluster.conf" --identity "$dir/bob" --timeout 3s
for i in 0 1 2 3; do
    grep -q "client bob refused: its identity is revoked" "$dir/replica-$i/log" ||
        fail "replica $i did not refuse bob"
done
closed=0
for i in 0 1 2 3; do
    grep -q "closing a link of bob: its identity was revoked" "$dir/replica-$i/log" &&
        closed=$((closed + 1))
done
((closed >= 3)) || fail "only $closed replicas closed bob's open link"

echo "== a revoked name gets no roles; an admin cannot revoke itself"
run 4 acl grant bob operator "${as_admin[@]}"
grep -q "REVOKED" <<<"$out$(cat "$work/err")" || fail "grant of a revoked name: $out"
run 4 identity revoke admin "${as_admin[@]}"

echo "== revoking carol's certificate key refuses that certificate"
run 2 identity revoke carol --cert "$dir/bob/cert.pem" "${as_admin[@]}"
run 0 identity revoke carol --cert "$dir/carol/cert.pem" "${as_admin[@]}"
run 3 config get k/carol --cluster "$dir/cluster.conf" --identity "$dir/carol" --timeout 3s

echo "== the admin still works"
run 0 config put k/admin 2 "${as_admin[@]}"
run 0 config get k/bob "${as_admin[@]}"
echo "cli_revoke: ok"
