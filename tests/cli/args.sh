#!/usr/bin/env bash
# Proves the CLI's contract without a cluster: bad arguments exit 2 and say what is wrong,
# every command answers --help with exit 0, `cluster identity` issues a CA-signed identity
# named as asked (and refuses to replace one), `verify` rejects garbage and a missing file
# with exit 1, and `down` does not signal a process that a stale pid file names.
#
#   tests/cli/args.sh PATH/TO/twinbft
set -euo pipefail

twinbft="$1"
tmp="$(mktemp -d)"
sleeper=""
cleanup() {
    if [[ -n "$sleeper" ]]; then kill "$sleeper" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
dir="$tmp/c"

fail() {
    echo "cli_args: FAIL: $*" >&2
    exit 1
}

# expect CODE PATTERN ARGS...: twinbft ARGS exits CODE and its stderr matches PATTERN.
expect() {
    local want="$1" pattern="$2" rc=0
    shift 2
    "$twinbft" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [[ $rc == "$want" ]] || fail "twinbft $* exited $rc, want $want; stderr: $(cat "$tmp/err")"
    grep -qE -- "$pattern" "$tmp/err" ||
        fail "twinbft $*: stderr does not match /$pattern/: $(cat "$tmp/err")"
}

"$twinbft" cluster init --dir "$dir" --replicas 4 --base-port 17500 --cluster-id args >/dev/null
export TWINBFT_CLUSTER="$dir/cluster.conf" TWINBFT_IDENTITY="$dir/admin"

echo "== bad arguments exit 2 with what is wrong"
expect 2 'unknown command "frobnicate"' frobnicate
expect 2 'no command given'
expect 2 'expected table or json' -w yaml status
expect 2 'expected table or json' status -w yaml
expect 2 'expected a duration' --timeout soon status
expect 2 'unknown or missing subcommand frob' config frob
expect 2 'unknown or missing subcommand' estop
expect 2 'missing arguments; expected: twinbft config put KEY VALUE' config put k
expect 2 'too many arguments' config get a b
expect 2 'unrecognized option' config get k --bogus
expect 2 'expected a whole number' config put k v --expect-version x
expect 2 '--expect-version given more than once' config put k v --expect-version 1 \
    --expect-version 2
expect 2 'either VALUE or --safe-state' actuate pump speed 5 --safe-state
expect 2 'either VALUE or --safe-state' actuate pump speed
expect 2 'VALUE "fast": expected a \(signed 64-bit\) integer' actuate pump speed fast
expect 2 '--tier TIER is required' node put n1 --site s
expect 2 '--tier "moon": expected one of any\|edge\|cloud' node put n1 --tier moon --site s
expect 2 'a site twin needs --site' twin create t --kind site
expect 2 'needs --parent' twin create t --kind line
expect 2 'STATE "sleeping": expected one of up\|draining\|down' node state n1 sleeping
expect 2 'SCOPE "plant": expected one of site\|twin' estop set plant p1
expect 2 'ROLES "king"' acl grant bob king
expect 2 '--min 5 is above --max 1' policy put pump speed --min 5 --max 1
expect 2 'expected "\[TWIN\] PROPERTY OP VALUE"' policy put pump speed --min 0 --max 9 \
    --interlock "pressure about 3"
expect 2 'nothing to change' shadow report pump
expect 2 'expected KEY=VALUE' shadow report pump --set novalue
expect 2 'REPLICAS "many"' scale t c many
expect 2 '--principal P is required' watch
expect 2 'no identity directory|there is no identity' watch --principal nobody
TWINBFT_CLUSTER="" expect 2 'no cluster file' status
unset TWINBFT_CLUSTER
expect 2 'no cluster file: give --cluster FILE or set TWINBFT_CLUSTER' status
export TWINBFT_CLUSTER="$dir/cluster.conf"
expect 2 '--replicas 3: 2 or 3 replicas tolerate no faulty replica .*use 1 replica for development, or 4 or more' \
    cluster init --dir "$tmp/d" --replicas 3
expect 2 '--replicas 2: 2 or 3 replicas' cluster init --dir "$tmp/d" --replicas 2
expect 2 '--replicas 0: a cluster has 1 replica \(development' cluster init --dir "$tmp/d" --replicas 0
expect 2 '--name "a/b"' cluster identity --dir "$dir" --name a/b
expect 2 '--roles "wizard"' cluster identity --dir "$dir" --name x --roles wizard
expect 2 '--log-level "loud"' up --dir "$dir" --log-level loud

echo "== every command has --help (exit 0)"
"$twinbft" --help >"$tmp/help"
grep -q "Exit codes" "$tmp/help" || fail "--help does not document exit codes"
for code in 0 1 2 3 4; do grep -qE "^  $code  " "$tmp/help" || fail "--help lacks exit code $code"; done
mapfile -t cmds < <(sed -n 's/^  \([a-z][a-z ]*[a-z]\)\( [A-Z[-].*\)\?$/\1/p' "$tmp/help" |
    grep -v '^[0-9]')
((${#cmds[@]} >= 30)) || fail "--help lists only ${#cmds[@]} commands"
for cmd in "${cmds[@]}"; do
    read -ra words <<<"$cmd"
    "$twinbft" "${words[@]}" --help >"$tmp/out" || fail "twinbft $cmd --help exited $?"
    grep -q "^usage: twinbft $cmd" "$tmp/out" || fail "twinbft $cmd --help: $(head -1 "$tmp/out")"
done
"$twinbft" config put --help | grep -q "compare-and-set conflict" ||
    fail "config put --help does not say a CAS conflict exits 1"
"$twinbft" config --help | grep -q "twinbft config get KEY" || fail "config --help"

echo "== cluster identity issues a CA-signed identity"
out="$("$twinbft" cluster identity --dir "$dir" --name pump-1)" || fail "identity exited $?"
grep -q "issued identity pump-1" <<<"$out" || fail "identity output: $out"
for f in key.pem cert.pem ca.pem; do [[ -s "$dir/pump-1/$f" ]] || fail "pump-1/$f missing"; done
[[ "$(stat -c %a "$dir/pump-1/key.pem")" == 600 ]] || fail "pump-1/key.pem is not 0600"
openssl verify -CAfile "$dir/ca.pem" "$dir/pump-1/cert.pem" >/dev/null || fail "not CA-signed"
subject="$(openssl x509 -in "$dir/pump-1/cert.pem" -noout -subject)"
[[ "$subject" == "subject=CN = pump-1" ]] || fail "pump-1 subject is \"$subject\""
[[ "$(openssl pkey -in "$dir/pump-1/key.pem" -pubout)" == \
    "$(openssl x509 -in "$dir/pump-1/cert.pem" -noout -pubkey)" ]] || fail "pump-1 key/cert differ"
before="$(sha256sum "$dir/pump-1/cert.pem")"
expect 1 'already exists' cluster identity --dir "$dir" --name pump-1
[[ "$(sha256sum "$dir/pump-1/cert.pem")" == "$before" ]] || fail "identity was replaced"
expect 1 'cannot read the CA' cluster identity --dir "$tmp" --name x

echo "== verify rejects what is not a certificate"
head -c 300 /dev/urandom >"$tmp/garbage"
expect 1 'invalid' verify "$tmp/garbage"
: >"$tmp/empty"
expect 1 'invalid' verify "$tmp/empty"
expect 1 'cannot open' verify "$tmp/missing"

echo "== down leaves alone a process a stale pid file names"
sleep 300 &
sleeper=$!
echo "$sleeper" >"$dir/replica-0/pid"
"$twinbft" down --dir "$dir" >"$tmp/out" || fail "down exited $?"
grep -q "replica 0: not running (stale pid file removed)" "$tmp/out" || fail "down: $(cat "$tmp/out")"
kill -0 "$sleeper" || fail "down signalled an unrelated process"
[[ ! -e "$dir/replica-0/pid" ]] || fail "down kept the stale pid file"
echo "cli_args: ok"
