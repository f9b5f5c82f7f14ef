#!/usr/bin/env bash
# `cmake --install` of a build tree into a temporary prefix, then a small program
# compiled against the installed header and linked through `pkg-config twinbft`: once
# with the static archive (`--static`, proving one -ltwinbft plus the dependencies'
# flags is enough), once with the shared library. Both must run and print their line.
#
#   install.sh BUILD_DIR SOURCE_DIR C_COMPILER [EXTRA_CFLAGS...]
set -euo pipefail

build="$1" src="$2" cc="$3"
shift 3
prefix="$(mktemp -d "${TMPDIR:-/tmp}/twinbft-install.XXXXXX")"
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/twinbft/twinbft.h include/twinbft/tb_err.h bin/twinbft bin/twinbft-replica \
    share/twinbft/twinbft.proto share/twinbft/sm.proto; do
    if [[ ! -e "$prefix/$f" ]]; then
        echo "install: $f is missing from the installed tree" >&2
        exit 1
    fi
done
pc="$(find "$prefix" -name twinbft.pc -path '*/pkgconfig/*' | head -n 1)"
if [[ -z "$pc" ]]; then
    echo "install: no pkgconfig/twinbft.pc installed" >&2
    exit 1
fi
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
libdir="$(pkg-config --variable=libdir twinbft)"

# Static: the archive by its path in place of -ltwinbft, so the linker cannot pick the
# shared library; everything else exactly as pkg-config --static says.
read -r -a cflags <<<"$(pkg-config --cflags twinbft)"
read -r -a static_libs <<<"$(pkg-config --libs --static twinbft)"
for i in "${!static_libs[@]}"; do
    if [[ "${static_libs[$i]}" == -ltwinbft ]]; then
        static_libs[$i]="$libdir/libtwinbft.a"
    fi
done
"$cc" -std=c11 -Wall -Wextra -Werror "$@" "${cflags[@]}" "$src/tests/install/consumer.c" \
    -o "$prefix/consumer-static" "${static_libs[@]}"
"$prefix/consumer-static"

read -r -a shared_libs <<<"$(pkg-config --libs twinbft)"
"$cc" -std=c11 -Wall -Wextra -Werror "$@" "${cflags[@]}" "$src/tests/install/consumer.c" \
    -o "$prefix/consumer-shared" "${shared_libs[@]}"
LD_LIBRARY_PATH="$libdir" "$prefix/consumer-shared"
echo "install: ok ($prefix)"
