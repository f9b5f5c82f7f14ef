#!/usr/bin/env bash
# Lint twinbft's C sources: formatting (clang-format), static analysis (cppcheck) and the
# include rules between layers from DESIGN.md. Runs all three, then fails if any failed.
#
#   scripts/lint.sh [BUILD_DIR]
#
# BUILD_DIR holds the generated proto/twinbft.pb-c.h; cppcheck reads it to follow includes
# but never scans or reports on it. ctest runs this as the test "lint" (label lint).
set -euo pipefail

build_dir=""
if (($# > 0)) && [[ -n "$1" ]]; then
    if [[ ! -d "$1" ]]; then
        echo "lint: build directory \"$1\" does not exist (run cmake first)" >&2
        exit 2
    fi
    build_dir="$(cd "$1" && pwd)"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dirs=()
for d in proto consensus statemachine replica client cmd tests; do
    if [[ -d "$d" ]]; then
        dirs+=("$d")
    fi
done

# The sources: tracked and untracked-but-not-ignored files when this is a git work tree,
# every file otherwise; never anything inside a build directory.
list_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- "${dirs[@]}"
    else
        find "${dirs[@]}" -type d -name 'build*' -prune -o -type f -print
    fi | grep -E '\.[ch]$' | grep -Ev '(^|/)build[^/]*/' | sort -u
}

files=()
if ((${#dirs[@]} > 0)); then
    while IFS= read -r f; do
        # git ls-files --cached still lists a tracked file deleted from the work tree.
        if [[ -f "$f" ]]; then
            files+=("$f")
        fi
    done < <(list_sources)
fi
if ((${#files[@]} == 0)); then
    echo "lint: no C sources found"
    exit 0
fi
echo "lint: ${#files[@]} files"

failed=()

echo "--- clang-format"
if ! clang-format --dry-run -Werror "${files[@]}" 2>&1; then
    failed+=(clang-format)
fi

echo "--- cppcheck"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cppcheck_args=(--error-exitcode=1 "--enable=warning,performance,portability" --std=c11
    --inline-suppr -q --suppress=missingIncludeSystem -j "$(nproc)" -I .)
if [[ -n "$build_dir" ]]; then
    # Reports are named by the include path they were found through, so the path given to
    # -I must be the same absolute path as the one in the suppression.
    cppcheck_args+=(-I "$build_dir" "--suppress=*:$build_dir/*" "--config-exclude=$build_dir")
fi
# The generated twinbft.pb-c.h stops with #error unless it sees protobuf-c's version macros,
# and cppcheck then silently skips every file that includes it. Give cppcheck protobuf-c's
# header alone (not all of the system's headers, which would be slow and noisy).
pbc_include="$(pkg-config --variable=includedir libprotobuf-c 2>/dev/null || true)"
if [[ -f "${pbc_include:-/usr/include}/protobuf-c/protobuf-c.h" ]]; then
    mkdir "$tmp/include"
    ln -s "${pbc_include:-/usr/include}/protobuf-c" "$tmp/include/protobuf-c"
    cppcheck_args+=(-I "$tmp/include" "--suppress=*:$tmp/include/*"
        "--config-exclude=$tmp/include")
else
    echo "lint: protobuf-c.h not found; files including twinbft.pb-c.h go unchecked" >&2
fi
if ! cppcheck "${cppcheck_args[@]}" "${files[@]}" 2>&1; then
    failed+=(cppcheck)
fi

echo "--- layering"
# check_layer DIR WHAT REGEX: fail for each #include in DIR/ whose target matches REGEX.
# REGEX is matched against the text after the opening < or ", so "consensus/" also catches
# "../consensus/x.h".
layering_ok=1
check_layer() {
    local dir="$1" what="$2" regex="$3" f hits line text
    for f in "${files[@]}"; do
        [[ "$f" == "$dir"/* ]] || continue
        hits="$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"](\.\./)*($regex)" \
            "$f" || true)"
        if [[ -n "$hits" ]]; then
            while IFS= read -r line; do
                text="${line#*:}"
                echo "$f:${line%%:*}: $dir/ must not include $what: ${text#"${text%%[![:space:]]*}"}"
            done <<<"$hits"
            layering_ok=0
        fi
    done
}
check_layer consensus "I/O, clock, thread or higher-layer headers (it is sans-I/O)" \
    'event2/|lmdb\.h|sys/socket\.h|netinet/|time\.h|sys/time\.h|unistd\.h|pthread\.h|replica/|statemachine/|client/'
check_layer statemachine "consensus/ or libevent" 'consensus/|event2/'
check_layer client "replica/, consensus/ or statemachine/ (it depends on proto/ only)" \
    'replica/|consensus/|statemachine/'
check_layer proto "higher layers, libevent or LMDB" \
    'consensus/|statemachine/|replica/|client/|event2/|lmdb\.h'
if ((layering_ok == 0)); then
    failed+=(layering)
fi

if ((${#failed[@]} > 0)); then
    echo "lint: FAILED: ${failed[*]}"
    exit 1
fi
echo "lint: ok"
