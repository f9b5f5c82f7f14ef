#!/usr/bin/env bash
# Proves `twinbft cluster init` lays out a usable cluster directory: every file is there,
# private keys are 0600, the CA really issued the replica and operator certificates, and a
# second init into the same directory refuses rather than replacing the CA.
#
#   tests/cli/cluster_init.sh PATH/TO/twinbft
set -euo pipefail

twinbft="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dir="$tmp/c"

fail() {
    echo "cluster_init: FAIL: $*" >&2
    exit 1
}

out="$("$twinbft" cluster init --dir "$dir" --replicas 4 --base-port 17000 --cluster-id t-1)" ||
    fail "init exited $?"
grep -qxF "  export TWINBFT_CLUSTER=$(cd "$dir" && pwd)/cluster.conf" <<<"$out" ||
    fail "no TWINBFT_CLUSTER export in: $out"
grep -qxF "  export TWINBFT_IDENTITY=$(cd "$dir" && pwd)/admin" <<<"$out" ||
    fail "no TWINBFT_IDENTITY export in: $out"

keys=(ca-key.pem admin/key.pem operator/key.pem)
certs=(ca.pem admin/cert.pem admin/ca.pem operator/cert.pem operator/ca.pem)
for i in 0 1 2 3; do
    keys+=("replica-$i/key.pem")
    certs+=("replica-$i/cert.pem")
done
for f in "${keys[@]}" "${certs[@]}" cluster.conf; do
    [[ -s "$dir/$f" ]] || fail "$f is missing or empty"
done
for f in "${keys[@]}"; do
    mode="$(stat -c %a "$dir/$f")"
    [[ "$mode" == 600 ]] || fail "$f has mode $mode, want 600"
done
[[ ! -e "$dir/replica-4" ]] || fail "replica-4 exists for a 4-replica cluster"

for f in replica-0/cert.pem replica-3/cert.pem admin/cert.pem operator/cert.pem; do
    openssl verify -CAfile "$dir/ca.pem" "$dir/$f" >/dev/null || fail "openssl verify $f"
done
subject="$(openssl x509 -in "$dir/replica-2/cert.pem" -noout -subject)"
[[ "$subject" == "subject=CN = replica-2" ]] || fail "replica-2 subject is \"$subject\""
# The key on disk is the key of the certificate.
[[ "$(openssl pkey -in "$dir/admin/key.pem" -pubout)" == \
    "$(openssl x509 -in "$dir/admin/cert.pem" -noout -pubkey)" ]] || fail "admin key/cert differ"
grep -qx "id = t-1" "$dir/cluster.conf" || fail "cluster id not in cluster.conf"
grep -qx "address = 127.0.0.1:17003" "$dir/cluster.conf" || fail "replica 3 address"
grep -qx "http = 127.0.0.1:17103" "$dir/cluster.conf" || fail "replica 3 http address"

# A second init must not replace the CA under a running cluster.
before="$(sha256sum "$dir/ca.pem")"
rc=0
"$twinbft" cluster init --dir "$dir" --replicas 4 2>"$tmp/err" || rc=$?
[[ $rc == 1 ]] || fail "second init exited $rc, want 1"
grep -q "already exists" "$tmp/err" || fail "second init message: $(cat "$tmp/err")"
[[ "$(sha256sum "$dir/ca.pem")" == "$before" ]] || fail "second init changed ca.pem"

# Bad arguments exit 2, an unknown command names the available ones.
rc=0
"$twinbft" cluster init --dir "$tmp/d" --replicas 3 2>/dev/null || rc=$?
[[ $rc == 2 ]] || fail "--replicas 3 exited $rc, want 2"
rc=0
"$twinbft" frobnicate 2>"$tmp/err" || rc=$?
[[ $rc == 2 ]] || fail "unknown command exited $rc, want 2"
grep -q "available commands: cluster init" "$tmp/err" || fail "unknown command message"
"$twinbft" --help | grep -q "Exit codes" || fail "--help does not document exit codes"
echo "cluster_init: ok"
