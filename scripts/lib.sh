# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/demo.sh. Source it; do not run it.

# shellcheck disable=SC2034 # TB_PACKAGES and TB_ROOT are used by the scripts sourcing this.

# Debian packages needed to build, test and lint twinbft (see DESIGN.md, "Build notes");
# python3 only reads JSON and flips bytes in the CLI tests.
TB_PACKAGES=(cmake gcc pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
    libssl-dev liblmdb-dev check libinih-dev libjson-c-dev clang-format cppcheck
    python3)

# The repository root: the parent of the folder holding this file.
TB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Print a one-line header for the next phase of a script.
tb_phase() {
    printf '\n==> %s\n' "$*"
}

# Succeed if the Debian package named $1 is installed.
tb_pkg_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
    [[ "$status" == "install ok installed" ]]
}

# Install whichever of the Debian packages named in the arguments are missing, with apt-get
# (through sudo when not root). Does nothing, and needs no privileges, when all are installed.
tb_install_missing() {
    local pkgs=("$@") missing=() pkg
    for pkg in "${pkgs[@]}"; do
        if ! tb_pkg_installed "$pkg"; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        echo "all ${#pkgs[@]} required packages are installed"
        return 0
    fi

    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: missing packages: ${missing[*]}" >&2
            echo "error: not root and sudo is not available; install them and rerun" >&2
            return 1
        fi
    fi
    echo "installing missing packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}
