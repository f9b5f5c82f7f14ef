# Port blocks for tests that start clusters on loopback (sourced, bash).
#
# tb_test_base FIRST SLOTS: sets `base` to a port FIRST + 10 k (k from this process's id
# modulo SLOTS, then upwards, wrapping) such that no other test using it holds either block a
# cluster there uses (base..base+9 for the replicas, base+100.. for their status pages) and
# nothing listens on base..base+3 or base+100..base+103; returns 1 when there is none. Blocks
# are held as directories under $TMPDIR/twinbft-test-ports (mkdir is atomic) naming their
# holder's process id; one whose holder is gone is taken over. ctest runs tests in parallel:
# without this, two of them with nearby process ids started clusters on the same ports now
# and then.
#
# tb_test_ports_release: gives back what tb_test_base took (call it on exit).
tb_test_port_locks=()

tb_test_base() {
    local first="$1" slots="$2" root="${TMPDIR:-/tmp}/twinbft-test-ports" i b blk ok lock holder
    mkdir -p "$root"
    for ((i = 0; i < slots; i++)); do
        b=$((first + 10 * (($$ + i) % slots)))
        ok=1
        local taken=()
        for blk in $((b / 10)) $((b / 10 + 10)); do
            lock="$root/$blk"
            if ! mkdir "$lock" 2>/dev/null; then
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
            # shellcheck disable=SC2034 # base is the caller's
            base="$b"
            tb_test_port_locks+=("${taken[@]}")
            return 0
        fi
        for lock in "${taken[@]}"; do
            rm -rf "$lock"
        done
    done
    return 1
}

tb_test_ports_release() {
    local lock
    for lock in "${tb_test_port_locks[@]}"; do
        rm -rf "$lock"
    done
    tb_test_port_locks=()
}
