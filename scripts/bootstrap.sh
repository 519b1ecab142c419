#!/usr/bin/env bash
# Sourced by scripts/main-job and scripts/test: makes .venv with every extra installed and the Debian
# packages the simulation and the tests need. A second run does nothing when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# every extra: pi-gpio is lgpio, the Pi's pin factory, which the GPIO tests import for real (off a Pi it cannot
# open a chip, but it loads)
EXTRAS="kiosk,central,sim,test,bench,pi-gpio"
# libatomic1: Playwright's bundled node driver needs it, and a fresh Debian 12 without gcc lacks it; e2fsprogs:
# mkfs.ext4 for the disk-full tests, not in a minimal Debian 13; nginx: examples/nginx-central.conf checked in front
# of the real central (tests/test_nginx_front.py runs its own nginx on free ports; on a machine booted with
# systemd, Debian's package also starts its default site: `systemctl disable --now nginx` if unwanted)
DEBIAN_PACKAGES=(xvfb xauth socat fonts-noto-cjk espeak-ng alsa-utils sox libgl1 libegl1 libgl1-mesa-dri libmtdev1 sqlite3 chromium
    postgresql libatomic1 e2fsprogs nginx)

say() { printf '[bootstrap] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else say "need root to run: $*"; return 1; fi
}

install_debian_packages() {
    command -v dpkg-query >/dev/null 2>&1 || { say "not Debian: install by hand: ${DEBIAN_PACKAGES[*]}"; return 0; }
    local missing=()
    for p in "${DEBIAN_PACKAGES[@]}" "$@"; do
        # Debian 13 renamed some libraries for 64-bit time (libmtdev1 -> libmtdev1t64); apt takes the old name
        { dpkg-query -W -f='${Status}\n' "$p" "${p}t64" 2>/dev/null || true; } | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
    for py in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$py" ] || continue
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$py"; return 0
        fi
    done
    say "Python >= 3.11 not found (set PYTHON=...)"; return 1
}

make_venv() {
    local py stamp want
    py="$(pick_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV with $py"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            install_debian_packages python3-venv
            "$py" -m venv "$VENV"
        fi
    fi
    stamp="$VENV/.changbai-installed"
    want="$(echo "$EXTRAS" | cat - "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing changbai-nodes[$EXTRAS] into $VENV (first run takes a minute)"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
        echo "$want" > "$stamp"
    fi
}

install_debian_packages
make_venv
export PATH="$VENV/bin:$PATH"
