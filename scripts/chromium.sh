#!/usr/bin/env bash
# Debian's Chromium and its matching chromedriver, for the browser tests (identity's login
# page driven by selenium). Never downloads a browser build of its own.
#
#   scripts/chromium.sh install   apt-get install chromium chromium-driver when missing
#   scripts/chromium.sh status    exit 0 when both are installed, 3 otherwise
set -euo pipefail

say() { echo "chromium: $*"; }
die() { echo "chromium: error: $*" >&2; exit 1; }

installed() {
    command -v chromium >/dev/null && command -v chromedriver >/dev/null
}

install() {
    if installed; then
        say "already installed: $(chromium --version 2>/dev/null | sed -n 1p)"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "installing needs root (or install chromium chromium-driver)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium chromium-driver
    say "installed: $(chromium --version 2>/dev/null | sed -n 1p)"
}

case ${1:-} in
    install) install ;;
    status) installed || exit 3 ;;
    *) die "usage: $0 install|status" ;;
esac
