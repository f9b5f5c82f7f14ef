#!/usr/bin/env bash
# Show twinbft at work: a local four-replica cluster on loopback (f = 1) steering a plant.
#
# It installs any missing Debian packages, builds, creates a cluster in a temporary
# directory, starts it, and then: registers a site, two edge and two cloud nodes and 50
# machine twins with components; places them (the node agents receive the placements as
# certified commands); approves and denies actuations, with the reasons; latches an
# emergency stop and shows actuations refused until an operator resets it; kills the
# primary with SIGKILL mid-run and shows progress resume in a new view; restarts it and
# shows it caught up (same state digest as the others); verifies a certified command and
# shows a tampered copy rejected; stops everything and prints a summary.
#
# Environment: TWINBFT_DEMO_PORT  base TCP port (default 27000; replica i uses base + i
#                                 and base + 100 + i for its status page)
#              TWINBFT_DEMO_KEEP  set to keep the cluster directory afterwards
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TB_ROOT"

build_dir=build
port="${TWINBFT_DEMO_PORT:-27000}"
machines=50

tb_phase "[1/8] packages"
tb_install_missing "${TB_PACKAGES[@]}"

tb_phase "[2/8] build ($build_dir)"
cmake -S . -B "$build_dir" -DTWINBFT_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j "$(nproc)" >/dev/null
tb="$TB_ROOT/$build_dir/bin/twinbft"

work="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-demo-XXXXXX")"
dir="$work/cluster"
watchers=()
cleanup() {
    local rc=$?
    for p in "${watchers[@]}"; do kill "$p" 2>/dev/null || true; done
    "$tb" down --dir "$dir" >/dev/null 2>&1 || true
    if [[ -n "${TWINBFT_DEMO_KEEP:-}" ]]; then
        echo "(cluster directory kept: $dir)"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT

say() { printf '  %s\n' "$*"; }
# as WHO WANT ARGS...: run the CLI as identity WHO, echoing the command and its output, and
# insist on exit status WANT (0 done, 4 denied by the cluster).
as() {
    local who="$1" want="$2" rc=0 out
    shift 2
    if [[ "$who" == admin ]]; then
        printf '  $ twinbft %s\n' "$*"
    else
        printf '  $ twinbft --identity %s %s\n' "$who" "$*"
    fi
    out="$("$tb" --timeout 30s --identity "$dir/$who" "$@" 2>&1)" || rc=$?
    [[ -z "$out" ]] || sed 's/^/    /' <<<"$out"
    if ((rc != want)); then
        echo "expected exit $want from that command, got $rc" >&2
        exit 1
    fi
}
adm() { as admin 0 "$@"; }
op() { as operator 0 "$@"; }
op_denied() { as operator 4 "$@"; }
quiet() { "$tb" --timeout 30s "$@" >/dev/null; }
# Field of replica $2's row in `status -w json` (numbers and booleans only).
status_field() {
    "$tb" -w json status 2>/dev/null | tr '{' '\n' | grep "\"id\":$2," |
        sed -E "s/.*\"$1\":(\"?)([^,\"]*).*/\2/"
}
# The primary most answering replicas agree on, counting only those not in a view change
# (one that is behind may name an older primary, one changing views a future one).
primary_id() {
    "$tb" -w json status 2>/dev/null | tr '{' '\n' | grep '"answered":true' |
        grep '"in_view_change":false' |
        sed -E 's/.*"view":([0-9]+).*"primary_id":([0-9]+).*/\1 \2/' | sort | uniq -c |
        sort -rn | head -n 1 | awk '{print $3}'
}

tb_phase "[3/8] a four-replica cluster on 127.0.0.1:$port-$((port + 3))"
"$tb" cluster init --dir "$dir" --replicas 4 --base-port "$port" | sed 's/^/  /'
export TWINBFT_CLUSTER="$dir/cluster.conf" TWINBFT_IDENTITY="$dir/admin"
for who in agent-edge-1 agent-edge-2 agent-cloud-1 agent-cloud-2 plc-line-1; do
    quiet cluster identity --dir "$dir" --name "$who"
done
say "identities: admin, operator, four node agents, and plc-line-1 (the line's actuator)"
"$tb" up --dir "$dir" | sed 's/^/  /'
"$tb" status | sed 's/^/  /'

tb_phase "[4/8] registry: a plant, 4 nodes, $machines machine twins with components, placed"
quiet acl grant admin admin,operator
quiet acl grant operator operator
for a in agent-edge-1 agent-edge-2 agent-cloud-1 agent-cloud-2; do
    quiet acl grant "$a" node-agent
done
# The node agents listen for their placements before any are made.
for a in agent-edge-1 agent-cloud-1; do
    "$tb" --identity "$dir/$a" watch --principal "$a" >"$work/watch-$a" 2>&1 &
    watchers+=($!)
done
adm site put plant-a --name "Plant A"
adm site put cloud-eu --name "Cloud EU"
adm node put edge-1 --tier edge --site plant-a --zone plant-a --cpu 16000 --memory 32768 \
    --agent agent-edge-1
quiet node put edge-2 --tier edge --site plant-a --zone plant-a --cpu 16000 --memory 32768 \
    --agent agent-edge-2
adm node put cloud-1 --tier cloud --site cloud-eu --zone plant-a --cpu 64000 --memory 262144 \
    --latency plant-a=18 --agent agent-cloud-1
quiet node put cloud-2 --tier cloud --site cloud-eu --zone plant-a --cpu 64000 --memory 262144 \
    --latency plant-a=22 --agent agent-cloud-2
say "(edge-2 and cloud-2 likewise)"
quiet twin create plant-a --kind site --site plant-a --owner operator
quiet twin create line-1 --kind line --parent plant-a --owner operator
say "twins plant-a (site) > line-1 (line) > m-01 .. m-$machines (machines), each with an"
say "edge 'ingest' component (5 ms latency budget) and a cloud 'predict' component"
for i in $(seq -w 1 "$machines"); do
    m="m-$i"
    quiet twin create "$m" --kind machine --parent line-1 --owner operator
    quiet twin component put "$m" ingest --cpu 250 --memory 256 --tier edge --max-latency 5 \
        --min 1 --max 2
    quiet twin component put "$m" predict --cpu 1000 --memory 2048 --tier cloud \
        --max-latency 50 --min 1 --max 2
    if [[ "$i" == "01" ]]; then
        adm place "$m" --cert-out "$work/place-m-01.cert"
    else
        quiet place "$m"
    fi
done
say "placed every machine; the nodes now carry:"
"$tb" -w json node list | sed 's/},{/}\n{/g' | grep '"cpu_used"' |
    sed -E 's/.*"id":"([^"]*)".*"tier":"([A-Z]*)".*"cpu_used":([0-9]+).*"replicas":([0-9]+).*/\1 \2 \4 \3/' |
    while read -r id tier replicas cpu; do
        printf '    %-8s %-5s %3d component replicas, %6d millicores\n' "$id" "$tier" "$replicas" "$cpu"
    done

tb_phase "[5/8] actuation: policy, approvals and denials, with reasons"
"$tb" --identity "$dir/plc-line-1" watch --principal plc-line-1 >"$work/watch-plc" 2>&1 &
watchers+=($!)
op policy put m-01 speed --min 0 --max 1500 --max-step 400 --role operator \
    --principal plc-line-1 --safe-value 0
op actuate m-01 speed 300 --cert-out "$work/approved.cert"
op actuate m-01 speed 600
op_denied actuate m-01 speed 1400
op_denied actuate m-01 speed 2000
as agent-edge-1 4 actuate m-01 speed 700

tb_phase "[6/8] emergency stop: latched, actuations refused, reset by an operator"
op estop set site plant-a --reason "guard door open on line 1"
op_denied actuate m-01 speed 700
op actuate m-01 speed --safe-state
as agent-edge-1 4 estop reset site plant-a
op estop reset site plant-a
op actuate m-01 speed 400

tb_phase "[7/8] faults: kill -9 the primary mid-run, then restart it"
primary="$(primary_id)"
view_before="$(status_field view "$primary")"
pid="$(cat "$dir/replica-$primary/pid")"
say "replica $primary is the primary of view $view_before; a writer starts 40 configuration"
say "writes, and after the 10th the primary is killed (kill -9 $pid)"
: >"$work/writes"
(
    for i in $(seq 1 40); do
        # A write caught by the kill waits out the view change: allow for a slow machine.
        "$tb" --timeout 60s config put "plant-a/recipe/step-$i" "temperature=$((180 + i))" \
            >/dev/null
        echo "$i" >>"$work/writes"
    done
) &
writer=$!
while [[ "$(wc -l <"$work/writes")" -lt 10 ]]; do sleep 0.05; done
kill -9 "$pid"
say "killed after write $(wc -l <"$work/writes")"
if ! wait "$writer"; then
    echo "a write failed after the primary was killed" >&2
    exit 1
fi
say "all 40 writes completed: the ones after the kill waited out the view change"
"$tb" status | sed 's/^/  /' || true
new_primary="$(primary_id)"
view_after="$(status_field view "$new_primary")"
if ((view_after <= view_before)) || ((new_primary == primary)); then
    echo "progress did not move to a new view (view $view_after, primary $new_primary)" >&2
    exit 1
fi
say "progress resumed in view $view_after with replica $new_primary as primary"
"$tb" up --dir "$dir" | sed 's/^/  /'
op config put plant-a/recipe/version 21
# The restarted replica learns the new view from the others' traffic and fetches what it
# missed; keep a trickle of writes going and compare (executed, digest) once it settles.
caught_up=""
for _ in $(seq 1 60); do
    rows="$("$tb" -w json status 2>/dev/null | tr '{' '\n' | grep '"answered":true' || true)"
    distinct="$(sed -E 's/.*"view":([0-9]+).*"executed":([0-9]+).*"app_digest":"([0-9a-f]+)".*/\1 \2 \3/' \
        <<<"$rows" | sort -u | wc -l)"
    if [[ "$(grep -c . <<<"$rows")" == 4 && "$distinct" == 1 ]]; then
        caught_up=yes
        break
    fi
    quiet config put plant-a/heartbeat "$(date +%s%N)" || true
    sleep 0.5
done
"$tb" status | sed 's/^/  /'
if [[ -z "$caught_up" ]]; then
    echo "replica $primary did not catch up" >&2
    exit 1
fi
say "replica $primary caught up: all four replicas executed the same sequence and agree on"
say "the state digest"

tb_phase "[8/8] certified commands"
say "what the actuator plc-line-1 received (certified, in order):"
sed 's/^/    /' "$work/watch-plc"
say "agent-edge-1 received $(wc -l <"$work/watch-agent-edge-1") certified placement commands," \
    "agent-cloud-1 $(wc -l <"$work/watch-agent-cloud-1")"
printf '  $ twinbft verify approved.cert\n'
"$tb" verify "$work/approved.cert" | sed 's/^/    /'
cp "$work/approved.cert" "$work/tampered.cert"
size="$(wc -c <"$work/approved.cert")"
offset=$((size / 3))
byte="$(od -An -tu1 -j "$offset" -N1 "$work/approved.cert" | tr -d ' ')"
printf "$(printf '\\%03o' $((byte ^ 1)))" |
    dd of="$work/tampered.cert" bs=1 seek="$offset" conv=notrunc status=none
printf '  $ twinbft verify tampered.cert   # one bit flipped at byte %d\n' "$offset"
rc=0
out="$("$tb" verify "$work/tampered.cert" 2>&1)" || rc=$?
sed 's/^/    /' <<<"$out"
if ((rc == 0)); then
    echo "a tampered certificate verified" >&2
    exit 1
fi
events="$("$tb" log | tail -n +2 | wc -l)"

tb_phase "summary"
"$tb" down --dir "$dir" | sed 's/^/  /'
say "4 replicas (f = 1), $events operations ordered and executed, $machines machine twins placed"
say "on 2 edge and 2 cloud nodes; actuations approved and denied by policy (STEP, RANGE,"
say "ROLE, ESTOP); the e-stop held until an operator reset it; the primary was killed"
say "(kill -9), a new view took over, and the restarted replica caught up to the same state"
say "digest; a certified command verified with the cluster's keys alone, a tampered copy did not."
